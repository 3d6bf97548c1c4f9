/**
 * An index of a folder's images for search by text or by image: each image's CLIP embedding,
 * kept on disk in a folder of two files:
 *
 *   manifest.json   which model made it, and per image its path within the folder, size,
 *                   modification time and row
 *   vectors-N.f32   the unit vectors, row after row, little-endian float32
 *
 * Building is resumable. Vectors are appended a batch at a time and synced, then the manifest
 * is replaced (written whole, renamed into place) to count them: a run killed at any moment
 * leaves a manifest that describes what it says, and at most some rows past its count, which
 * the next run cuts off. A rerun embeds only the images that are new or whose size or time
 * changed; when rows fall out (changed or removed images), the vectors are first copied without
 * them into the next vectors-N file, which the manifest then names, so the old file stays valid
 * until the new one is complete.
 *
 * An index belongs to its model: embeddings of two models are not comparable, so a rerun with
 * another model (told apart by a fingerprint of its config and weight files) is refused.
 */
import { createHash } from "node:crypto";
import { mkdir, open, readdir, readFile, stat, truncate, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { writeAll, writeFileSafely } from "../files/write.js";
import { findImages, type FoundImage } from "../image/find.js";
import type { PixelValues } from "../image/preprocess.js";
import type { Clip } from "./clip.js";
import { GpuVectors, type Hit } from "./vector_search.js";

const FORMAT = "wgsl-vlm-image-index";
const VERSION = 1;
const MANIFEST = "manifest.json";

export interface IndexEntry {
  /** The image's path within the indexed folder, forward slashes. */
  key: string;
  size: number;
  mtimeMs: number;
  row: number;
}

export interface IndexManifest {
  format: typeof FORMAT;
  version: typeof VERSION;
  model: { path: string; fingerprint: string; dimensions: number };
  /** The folder the images are in (absolute). */
  images: string;
  /** The vectors file, in the index folder. */
  vectors: string;
  rows: number;
  entries: IndexEntry[];
}

export class IndexError extends Error {
  override name = "IndexError";
}

export interface BuildProgress {
  /** Images embedded in this run so far, of `todo`. */
  done: number;
  todo: number;
  failed: number;
}

export interface BuildReport {
  /** Images in the index now. */
  images: number;
  /** Embedded in this run. */
  embedded: number;
  /** Kept from an earlier run unchanged. */
  reused: number;
  /** Dropped: removed from the folder, or changed (and embedded again). */
  dropped: number;
  /** Images that could not be read, with why; a rerun tries them again. */
  failed: { path: string; error: string }[];
}

/** What identifies a model's weights: its config and the names and sizes of its weight files. */
export async function modelFingerprint(folder: string): Promise<string> {
  const hash = createHash("sha256");
  hash.update(await readFile(join(folder, "config.json")));
  for (const name of (await readdir(folder)).filter((n) => n.endsWith(".safetensors")).sort()) {
    hash.update(`\0${name}\0${(await stat(join(folder, name))).size}`);
  }
  return hash.digest("hex").slice(0, 16);
}

export async function readManifest(indexDir: string): Promise<IndexManifest> {
  const path = join(indexDir, MANIFEST);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new IndexError(`${path}: ${code === "ENOENT" ? "no such file (not an index made by wgsl-vlm index)" : `not valid JSON (${(error as Error).message})`}`);
  }
  const m = json as Partial<IndexManifest>;
  if (m.format !== FORMAT || m.version !== VERSION) throw new IndexError(`${path}: not a ${FORMAT} version ${VERSION} manifest`);
  const fine =
    typeof m.model?.path === "string" &&
    typeof m.model.fingerprint === "string" &&
    Number.isInteger(m.model.dimensions) &&
    m.model.dimensions > 0 &&
    typeof m.images === "string" &&
    typeof m.vectors === "string" &&
    /^vectors-\d+\.f32$/.test(m.vectors) &&
    Number.isInteger(m.rows) &&
    Array.isArray(m.entries) &&
    m.entries.length === m.rows &&
    m.entries.every((e, i) => typeof e?.key === "string" && e.row === i && Number.isFinite(e.size) && Number.isFinite(e.mtimeMs));
  if (!fine) throw new IndexError(`${path}: a field is missing or malformed (model, images, vectors, rows, entries with rows 0..rows-1)`);
  const vectorsPath = join(indexDir, m.vectors!);
  const bytes = (await stat(vectorsPath).catch(() => undefined))?.size;
  const needed = m.rows! * m.model!.dimensions * 4;
  if (bytes === undefined || bytes < needed) throw new IndexError(`${vectorsPath}: holds ${bytes ?? 0} bytes, the manifest counts ${m.rows} vectors (${needed} bytes)`);
  return m as IndexManifest;
}

export interface BuildOptions {
  onProgress?: (progress: BuildProgress) => void;
}

/** Embeds the images of `imagesFolder` into the index at `indexDir` (made, or brought up to date). */
export async function buildIndex(clip: Clip, modelFolder: string, imagesFolder: string, indexDir: string, options: BuildOptions = {}): Promise<BuildReport> {
  const fingerprint = await modelFingerprint(modelFolder);
  const dims = clip.dimensions;
  const images = resolve(imagesFolder);
  await mkdir(indexDir, { recursive: true });
  const existing = (await stat(join(indexDir, MANIFEST)).catch(() => undefined)) ? await readManifest(indexDir) : undefined;
  if (existing && existing.model.fingerprint !== fingerprint) {
    throw new IndexError(`${indexDir}: was made with the model ${existing.model.path}, not ${modelFolder} (embeddings of two models cannot be mixed); give another --out`);
  }
  if (existing && existing.images !== images) throw new IndexError(`${indexDir}: indexes ${existing.images}, not ${images}; give another --out`);

  const found = await findImages(imagesFolder);
  const current = new Map(found.map((f) => [f.key, f]));
  const old = existing?.entries ?? [];
  const kept = old.filter((e) => {
    const f = current.get(e.key);
    return f !== undefined && f.size === e.size && f.mtimeMs === e.mtimeMs;
  });
  const keptKeys = new Set(kept.map((e) => e.key));
  const todo = found.filter((f) => !keptKeys.has(f.key));

  let manifest: IndexManifest = existing ?? { format: FORMAT, version: VERSION, model: { path: resolve(modelFolder), fingerprint, dimensions: dims }, images, vectors: "vectors-0.f32", rows: 0, entries: [] };
  // Rows past the manifest's count are a killed run's: cut off.
  await prepareVectors(join(indexDir, manifest.vectors), manifest.rows * dims * 4);
  if (kept.length < old.length) manifest = await compact(indexDir, manifest, kept);

  const failed: BuildReport["failed"] = [];
  let done = 0;
  const per = clip.imagesPerPass;
  const prepare = (batch: FoundImage[]) =>
    Promise.all(batch.map((f) => clip.pixels(f.path).then((pixels): [FoundImage, PixelValues] => [f, pixels], (error: Error) => (failed.push({ path: f.path, error: error.message }), null))));
  let next = todo.length > 0 ? prepare(todo.slice(0, per)) : null;
  for (let at = 0; next; at += per) {
    const ready = (await next).filter((x): x is [FoundImage, PixelValues] => x !== null);
    next = at + per < todo.length ? prepare(todo.slice(at + per, at + 2 * per)) : null;
    const vectors = await clip.embedPixels(ready.map(([, pixels]) => pixels));
    await appendVectors(join(indexDir, manifest.vectors), vectors);
    const entries = ready.map(([f], i) => ({ key: f.key, size: f.size, mtimeMs: f.mtimeMs, row: manifest.rows + i }));
    manifest = { ...manifest, rows: manifest.rows + entries.length, entries: [...manifest.entries, ...entries] };
    await writeManifest(indexDir, manifest);
    done += Math.min(per, todo.length - at);
    options.onProgress?.({ done, todo: todo.length, failed: failed.length });
  }
  if (!existing || todo.length === 0) await writeManifest(indexDir, manifest);
  return { images: manifest.rows, embedded: todo.length - failed.length, reused: kept.length, dropped: old.length - kept.length, failed };
}

/** Makes the vectors file exist and hold exactly `bytes` bytes (cutting a killed run's extra rows). */
async function prepareVectors(path: string, bytes: number): Promise<void> {
  const size = (await stat(path).catch(() => undefined))?.size;
  if (size === undefined) {
    await (await open(path, "wx")).close();
  } else if (size > bytes) {
    await truncate(path, bytes);
  }
}

async function appendVectors(path: string, vectors: readonly Float32Array[]): Promise<void> {
  const handle = await open(path, "a");
  try {
    for (const v of vectors) await writeAll(handle, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeManifest(indexDir: string, manifest: IndexManifest): Promise<void> {
  await writeFileSafely(join(indexDir, MANIFEST), `${JSON.stringify(manifest)}\n`, { force: true });
}

/** Copies the kept rows into the next vectors file, then points the manifest at it and removes the old one. */
async function compact(indexDir: string, manifest: IndexManifest, kept: IndexEntry[]): Promise<IndexManifest> {
  const dims = manifest.model.dimensions;
  const generation = Number(/^vectors-(\d+)\.f32$/.exec(manifest.vectors)![1]) + 1;
  const vectors = `vectors-${generation}.f32`;
  const source = await open(join(indexDir, manifest.vectors), "r");
  const row = new Uint8Array(dims * 4);
  try {
    await writeFileSafely(
      join(indexDir, vectors),
      async (target) => {
        for (const e of kept) {
          await source.read(row, 0, row.length, e.row * row.length);
          await writeAll(target, row);
        }
      },
      { force: true },
    );
  } finally {
    await source.close();
  }
  const compacted = { ...manifest, vectors, rows: kept.length, entries: kept.map((e, row) => ({ ...e, row })) };
  await writeManifest(indexDir, compacted);
  await unlink(join(indexDir, manifest.vectors)).catch(() => undefined);
  return compacted;
}

/** An index loaded for searching: its vectors on the GPU. */
export class LoadedIndex {
  private constructor(
    readonly manifest: IndexManifest,
    private readonly vectors: GpuVectors | null,
  ) {}

  /** The index at `indexDir`, searched with `clip` (loaded from `modelFolder`, which must be the index's model). */
  static async open(clip: Clip, modelFolder: string, indexDir: string): Promise<LoadedIndex> {
    const manifest = await readManifest(indexDir);
    if ((await modelFingerprint(modelFolder)) !== manifest.model.fingerprint) {
      throw new IndexError(`${indexDir}: was made with the model ${manifest.model.path}, not ${modelFolder}; its embeddings are not comparable with this model's`);
    }
    if (manifest.rows === 0) return new LoadedIndex(manifest, null);
    const dims = manifest.model.dimensions;
    const file = await open(join(indexDir, manifest.vectors), "r");
    try {
      const vectors = await GpuVectors.upload(clip.model.gpu, manifest.rows, dims, async (start, end) => {
        const data = new Float32Array((end - start) * dims);
        await file.read(new Uint8Array(data.buffer), 0, data.byteLength, start * dims * 4);
        return data;
      });
      return new LoadedIndex(manifest, vectors);
    } finally {
      await file.close();
    }
  }

  /** The `top` images nearest `query` (a unit vector), best first. */
  async search(query: Float32Array, top: number): Promise<(Hit & { key: string; path: string })[]> {
    if (!this.vectors) return [];
    const hits = await this.vectors.search(query, Math.min(top, this.manifest.rows));
    return hits.map((h) => ({ ...h, key: this.manifest.entries[h.row].key, path: join(this.manifest.images, this.manifest.entries[h.row].key) }));
  }

  dispose(): void {
    this.vectors?.dispose();
  }
}

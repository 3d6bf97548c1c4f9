/**
 * CLIP's tools: the resumable image index and exact search over it (GPU matrix product), and
 * the embed / classify / index / search commands, on the tiny clip-a checkpoint.
 */
import { appendFile, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import classify from "../src/cli/classify.js";
import embed from "../src/cli/embed.js";
import indexCommand from "../src/cli/index_images.js";
import search from "../src/cli/search.js";
import { loadClip, type Clip } from "../src/embed/clip.js";
import { buildIndex, LoadedIndex, readManifest } from "../src/embed/image_index.js";
import { GpuVectors, topK } from "../src/embed/vector_search.js";
import { findImages } from "../src/image/find.js";
import { runCommand, testGpu } from "./helpers.js";

const MODEL = join(import.meta.dirname, "fixtures", "golden", "clip-a", "model");

async function png(path: string, r: number, g: number, b: number, size = 40): Promise<void> {
  // A gradient, so that images of different colours are also different in structure.
  const data = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) data.set([(r + 3 * x) % 256, (g + 2 * y) % 256, (b + x * y) % 256], 3 * (y * size + x));
  await sharp(data, { raw: { width: size, height: size, channels: 3 } }).png().toFile(path);
}

describe("image index and search", async () => {
  const gpu = await testGpu();
  let clip: Clip;
  let root: string;
  let images: string;

  beforeAll(async () => {
    clip = await loadClip(MODEL, { gpu, dtype: "f32" });
    root = await mkdtemp(join(tmpdir(), "clip-index-"));
    images = join(root, "images");
    await mkdir(join(images, "sub"), { recursive: true });
    await png(join(images, "red.png"), 220, 20, 20);
    await png(join(images, "green.png"), 20, 200, 40);
    await png(join(images, "sub", "blue.png"), 30, 40, 230);
    await sharp(join(images, "red.png")).jpeg().toFile(join(images, "sub", "red-copy.data")); // a JPEG, whatever its name says
    await writeFile(join(images, "notes.png"), "not an image at all"); // named .png, but its bytes say otherwise: not an image
    await writeFile(join(images, "broken.png"), Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(40)])); // a PNG's signature, then nothing valid
  });
  afterAll(async () => {
    clip.dispose();
    await rm(root, { recursive: true, force: true });
  });

  it("finds images by their first bytes, recursively, in a stable order", async () => {
    expect((await findImages(images)).map((f) => f.key)).toEqual(["broken.png", "green.png", "red.png", "sub/blue.png", "sub/red-copy.data"]);
    await expect(findImages(join(root, "missing"))).rejects.toThrow(/no such folder/);
  });

  it("embeds every readable image once, records the unreadable, and searches exactly", async () => {
    const out = join(root, "index");
    const progress: number[] = [];
    const report = await buildIndex(clip, MODEL, images, out, { onProgress: (p) => progress.push(p.done) });
    expect(report).toMatchObject({ images: 4, embedded: 4, reused: 0, dropped: 0 });
    expect(report.failed.map((f) => f.path)).toEqual([join(images, "broken.png")]);
    expect(progress.at(-1)).toBe(5);
    const manifest = await readManifest(out);
    expect(manifest.entries.map((e) => e.key)).toEqual(["green.png", "red.png", "sub/blue.png", "sub/red-copy.data"]);
    // The stored vectors are embedImages' own.
    const vectors = new Float32Array((await readFile(join(out, manifest.vectors))).buffer.slice(0));
    const direct = await clip.embedImages(manifest.entries.map((e) => join(images, e.key)));
    direct.forEach((v, row) => v.forEach((x, d) => expect(vectors[row * 16 + d]).toBe(x)));
    // Searching by an image finds it first, with cosine 1; the scores are the cosines, best first.
    const index = await LoadedIndex.open(clip, MODEL, out);
    try {
      const hits = await index.search(direct[2], 10);
      expect(hits).toHaveLength(4);
      expect(hits[0]).toMatchObject({ key: "sub/blue.png", path: join(images, "sub", "blue.png") });
      expect(hits[0].score).toBeCloseTo(1, 5);
      for (const h of hits) expect(h.score).toBeCloseTo(direct[h.row].reduce((n, x, d) => n + x * direct[2][d], 0), 5);
      for (let i = 1; i < hits.length; i++) expect(hits[i - 1].score).toBeGreaterThanOrEqual(hits[i].score);
      expect(await index.search(direct[0], 2)).toHaveLength(2);
    } finally {
      index.dispose();
    }
  });

  it("resumes: unchanged images are kept, changed and new ones embedded, removed ones dropped, a killed run's extra rows cut", async () => {
    const out = join(root, "resume");
    await buildIndex(clip, MODEL, images, out);
    const again = await buildIndex(clip, MODEL, images, out);
    expect(again).toMatchObject({ images: 4, embedded: 0, reused: 4, dropped: 0 });
    // A run killed after appending a batch but before its manifest: rows past the count.
    const before = await readManifest(out);
    await appendFile(join(out, before.vectors), Buffer.alloc(16 * 4 * 3, 7));
    // One image changes, one goes, one comes.
    await png(join(images, "green.png"), 250, 250, 0);
    await utimes(join(images, "green.png"), new Date(), new Date(Date.now() + 5000));
    await rm(join(images, "sub", "red-copy.data"));
    await png(join(images, "sub", "purple.png"), 150, 40, 200);
    const updated = await buildIndex(clip, MODEL, images, out);
    expect(updated).toMatchObject({ images: 4, embedded: 2, reused: 2, dropped: 2 });
    const after = await readManifest(out);
    expect(after.vectors).not.toBe(before.vectors); // compacted into the next file; the old one removed
    expect((await readdir(out)).filter((n) => n.startsWith("vectors-"))).toEqual([after.vectors]);
    expect((await stat(join(out, after.vectors))).size).toBe(4 * 16 * 4);
    expect(after.entries.map((e) => e.key).sort()).toEqual(["green.png", "red.png", "sub/blue.png", "sub/purple.png"]);
    const vectors = new Float32Array((await readFile(join(out, after.vectors))).buffer.slice(0));
    const direct = await clip.embedImages(after.entries.map((e) => join(images, e.key)));
    direct.forEach((v, row) => v.forEach((x, d) => expect(vectors[row * 16 + d]).toBe(x)));
  });

  it("refuses another model's index, another folder's, and a damaged manifest", async () => {
    const out = join(root, "guarded");
    await buildIndex(clip, MODEL, images, out);
    const other = join(root, "other-model");
    await cp(MODEL, other, { recursive: true });
    const config = JSON.parse(await readFile(join(other, "config.json"), "utf8"));
    await writeFile(join(other, "config.json"), JSON.stringify({ ...config, initializer_factor: 2 }));
    await expect(buildIndex(clip, other, images, out)).rejects.toThrow(/was made with the model .*clip-a.*embeddings of two models cannot be mixed/);
    await expect(LoadedIndex.open(clip, other, out)).rejects.toThrow(/not comparable with this model's/);
    await expect(buildIndex(clip, MODEL, join(images, "sub"), out)).rejects.toThrow(/indexes .*images, not .*sub; give another --out/);
    const manifest = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    await writeFile(join(out, "manifest.json"), JSON.stringify({ ...manifest, rows: manifest.rows + 1 }));
    await expect(readManifest(out)).rejects.toThrow(/manifest.json: a field is missing or malformed/);
    await expect(readManifest(join(root, "nothing"))).rejects.toThrow(/no such file \(not an index made by wgsl-vlm index\)/);
  });

  it("topK keeps the k best, best first, the lower row on ties, NaN never", async () => {
    expect(topK([0.1, 0.9, NaN, 0.9, 0.5, -1], 3)).toEqual([
      { row: 1, score: 0.9 },
      { row: 3, score: 0.9 },
      { row: 4, score: 0.5 },
    ]);
    expect(topK([], 3)).toEqual([]);
    const vectors = await GpuVectors.upload(gpu, 3, 2, async () => new Float32Array([1, 0, 0, 1, 0.6, 0.8]));
    try {
      expect((await vectors.search(new Float32Array([0, 1]), 2)).map((h) => h.row)).toEqual([1, 2]);
      await expect(vectors.search(new Float32Array([1, 0, 0]), 1)).rejects.toThrow(/the query has 3 dimensions, the vectors 2/);
    } finally {
      vectors.dispose();
    }
  });

  it("the commands: embed, classify, index and search", async () => {
    const red = join(images, "red.png");
    const embedded = await runCommand(embed, ["--model", MODEL, "--dtype", "f32", "--quiet", "--text", "a red square", "--text", "a cat", "--json"]);
    expect(embedded.code).toBe(0);
    const rows = JSON.parse(embedded.stdout);
    const texts = await clip.embedTexts(["a red square", "a cat"]);
    expect(rows.map((r: { input: string }) => r.input)).toEqual(["a red square", "a cat"]);
    rows.forEach((r: { embedding: number[] }, i: number) => r.embedding.forEach((x, d) => expect(x).toBeCloseTo(texts[i][d], 6)));
    const plain = await runCommand(embed, ["--model", MODEL, "--dtype", "f32", "--quiet", "--image", red]);
    expect(plain.stdout.split("\t")[0]).toBe(red);
    expect(plain.stdout.trim().split("\t")[1].split(" ")).toHaveLength(16);
    await expect(runCommand(embed, ["--model", MODEL, "--text", "a", "--image", red])).rejects.toThrow(/not both and not neither/);

    const classified = await runCommand(classify, ["--model", MODEL, "--dtype", "f32", "--quiet", "--image", red, "--labels", "a cat, a dog ,a red square", "--json"]);
    expect(classified.code).toBe(0);
    const [{ scores }] = JSON.parse(classified.stdout);
    expect(scores.map((s: { label: string }) => s.label).sort()).toEqual(["a cat", "a dog", "a red square"]);
    expect(scores.reduce((n: number, s: { score: number }) => n + s.score, 0)).toBeCloseTo(1, 6);
    await expect(runCommand(classify, ["--model", MODEL, "--image", red, "--labels", "one"])).rejects.toThrow(/at least two/);
    await expect(runCommand(classify, ["--model", MODEL, "--image", red, "--labels", "a,b", "--template", "x"])).rejects.toThrow(/has no \{\}/);

    const out = join(root, "cli-index");
    const indexed = await runCommand(indexCommand, ["--model", MODEL, "--dtype", "f32", "--images", images, "--out", out]);
    expect(indexed.code).toBe(1); // broken.png could not be read
    expect(indexed.stderr).toMatch(/could not embed .*broken\.png/);
    expect(indexed.stdout).toMatch(/4 images \(4 embedded now, 0 kept, 0 dropped, 1 failed\)/);
    const found = await runCommand(search, ["--index", out, "--image", red, "--top", "2", "--dtype", "f32", "--quiet", "--json"]);
    expect(found.code).toBe(0);
    const hits = JSON.parse(found.stdout);
    expect(hits).toHaveLength(2);
    expect(hits[0].path).toBe(red);
    expect(hits[0].score).toBeCloseTo(1, 5);
    const byText = await runCommand(search, ["--index", out, "--text", "a red square", "--dtype", "f32", "--quiet"]);
    expect(byText.stdout.trim().split("\n")).toHaveLength(4);
    await expect(runCommand(search, ["--index", out])).rejects.toThrow(/give --text TEXT or --image FILE/);
  });
});

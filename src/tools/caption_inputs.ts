/**
 * The images `wgsl-vlm caption` captions, from four kinds of input, told apart by what they are:
 *
 * - a folder: every image file in it and its subfolders, by its first bytes (image/find.ts);
 *   id = the path within the folder (forward slashes);
 * - a `.jsonl` file: one row `{"id", "image", "prompt"?}` a line (blank lines skipped); image is a
 *   path relative to the file's folder; id is required and unique; prompt, when given, is that
 *   image's prompt;
 * - a `.tar` file: a WebDataset shard (img2dataset's format): files KEY.jpg / KEY.png / KEY.webp
 *   (or .jpeg, .gif, .tif, .tiff) with optional KEY.txt / KEY.json beside them, grouped by key
 *   (the name up to the first dot of its last part, the folders kept), the files of one key
 *   next to each other as WebDataset writes them; id = the shard's name without `.tar`, "/", the
 *   key. It is read streaming (tar-stream), one sample at a time, never extracted to disk; the
 *   .txt / .json files (the source's alt text and metadata) are read past, not used;
 * - any other file: a list of image paths, one a line (blank lines skipped), relative to the
 *   list's folder; id = the path as written.
 *
 * Folders, lists and JSONL files are read and checked whole before the run starts (a missing
 * field, a duplicate id: an InputError naming the file and line); shards are only opened then.
 */
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { extract } from "tar-stream";
import { findImages } from "../image/find.js";

/** A bad input (a JSONL row without an id, a duplicate id, a missing file), found before or while reading it. */
export class InputError extends Error {
  override name = "InputError";
}

export interface CaptionItem {
  /** Unique over all the inputs of a run: what the output and a resumed run key the image by. */
  id: string;
  /** Where the image is: a file path, or `SHARD.tar:NAME` for a shard's member. */
  image: string;
  /** Its own prompt (a JSONL row's), else undefined: the run's prompt. */
  prompt?: string;
  /** The image's bytes (a shard's are read already; a file is read when this is called). */
  read(): Promise<Uint8Array>;
}

export interface CaptionInputs {
  /** Every image of the folders, lists and JSONL files (known before the run). */
  known: CaptionItem[];
  /** The shards, read when the run gets to them. */
  shards: string[];
  /** Whether every image brings its own prompt (all inputs are JSONL files whose rows each have one). */
  allPrompted: boolean;
  /** The images, in the order the inputs were given: the known ones, then each shard's, streamed. */
  items(): AsyncGenerator<CaptionItem>;
}

/** Image file extensions in a WebDataset sample (lower case). */
const SHARD_IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "webp", "gif", "tif", "tiff"];

export type InputKind = "folder" | "jsonl" | "tar" | "list";

export async function inputKind(path: string): Promise<InputKind> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new InputError(`${path}: no such file or folder`);
  if (info.isDirectory()) return "folder";
  const lower = path.toLowerCase();
  if (lower.endsWith(".jsonl")) return "jsonl";
  if (lower.endsWith(".tar")) return "tar";
  return "list";
}

/** Reads and checks the inputs (all but the shards' contents). */
export async function openInputs(paths: readonly string[]): Promise<CaptionInputs> {
  if (paths.length === 0) throw new InputError("no inputs");
  const known: CaptionItem[] = [];
  const shards: string[] = [];
  const where = new Map<string, string>(); // id → where it came from, for the duplicate message
  let allPrompted = true;
  const add = (item: CaptionItem, from: string) => {
    const before = where.get(item.id);
    if (before !== undefined) throw new InputError(`${from}: id '${item.id}' is already the id of ${before}`);
    where.set(item.id, from);
    known.push(item);
  };
  const shardNames = new Map<string, string>();
  for (const path of paths) {
    const kind = await inputKind(path);
    if (kind !== "jsonl") allPrompted = false;
    if (kind === "folder") {
      for (const found of await findImages(path)) add(fileItem(found.key, found.path), `${path} (${found.key})`);
    } else if (kind === "tar") {
      const name = shardName(path);
      const other = shardNames.get(name);
      if (other !== undefined) throw new InputError(`${path}: its ids would start '${name}/' as ${other}'s do (shards need different names)`);
      shardNames.set(name, path);
      shards.push(path);
    } else {
      const text = await readFile(path, "utf8").catch((e: Error) => {
        throw new InputError(`${path}: ${e.message}`);
      });
      const lines = text.split("\n");
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i].replace(/\r$/, "");
        if (line.trim() === "") continue;
        const at = `${path}:${i + 1}`;
        if (kind === "list") {
          add(fileItem(line, relativeTo(path, line)), at);
          continue;
        }
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch {
          throw new InputError(`${at}: not a JSON line`);
        }
        if (typeof row !== "object" || row === null || Array.isArray(row)) throw new InputError(`${at}: a row must be an object {"id", "image", "prompt"?}`);
        const { id, image, prompt } = row as Record<string, unknown>;
        if (typeof id !== "string" || id === "") throw new InputError(`${at}: "id" (a non-empty string) is missing`);
        if (typeof image !== "string" || image === "") throw new InputError(`${at}: "image" (a path) is missing`);
        if (prompt !== undefined && typeof prompt !== "string") throw new InputError(`${at}: "prompt" must be a string`);
        if (prompt === undefined) allPrompted = false;
        add({ ...fileItem(id, relativeTo(path, image)), prompt }, at);
      }
    }
  }
  return {
    known,
    shards,
    allPrompted,
    async *items() {
      yield* known;
      for (const shard of shards) yield* shardItems(shard);
    },
  };
}

function relativeTo(listFile: string, path: string): string {
  return isAbsolute(path) ? path : join(dirname(listFile), path);
}

function fileItem(id: string, path: string): CaptionItem {
  return { id, image: path, read: async () => new Uint8Array(await readFile(path)) };
}

/** The shard's name in its ids: its file name without `.tar`. */
export function shardName(path: string): string {
  return basename(path).replace(/\.tar$/i, "");
}

/** A member's key and extension: `00001/000010005.jpg` → [`00001/000010005`, `jpg`]. */
function splitKey(name: string): [string, string] {
  const slash = name.lastIndexOf("/");
  const dot = name.indexOf(".", slash + 1);
  return dot < 0 ? [name, ""] : [name.slice(0, dot), name.slice(dot + 1).toLowerCase()];
}

/**
 * One shard's samples, streaming: each key's members are gathered until the next key starts,
 * then its image is yielded (a sample without one is skipped). Ending early (a `break` in the
 * caller's loop) closes the file.
 */
export async function* shardItems(path: string): AsyncGenerator<CaptionItem> {
  const name = shardName(path);
  const file = createReadStream(resolve(path));
  const tar = extract();
  file.on("error", (error) => tar.destroy(new InputError(`${path}: ${error.message}`)));
  file.pipe(tar);
  const seen = new Set<string>();
  let key: string | undefined;
  let files = new Map<string, { member: string; bytes: Uint8Array }>();
  const sample = (): CaptionItem | undefined => {
    if (key === undefined) return undefined;
    const ext = SHARD_IMAGE_EXTENSIONS.find((e) => files.has(e));
    if (ext === undefined) return undefined;
    const { member, bytes } = files.get(ext)!;
    return { id: `${name}/${key}`, image: `${path}:${member}`, read: async () => bytes };
  };
  try {
    for await (const entry of tar) {
      const header = entry.header;
      if (header.type !== "file" && header.type !== "contiguous-file") {
        for await (const _ of entry); // a folder, a link: nothing to caption
        continue;
      }
      const [entryKey, ext] = splitKey(header.name.replace(/^\.\//, ""));
      if (entryKey !== key) {
        const done = sample();
        if (done) yield done;
        if (seen.has(entryKey)) throw new InputError(`${path}: the files of key '${entryKey}' are not next to each other (${header.name})`);
        seen.add(entryKey);
        key = entryKey;
        files = new Map();
      }
      if (SHARD_IMAGE_EXTENSIONS.includes(ext)) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        files.set(ext, { member: header.name, bytes: new Uint8Array(Buffer.concat(chunks)) });
      } else {
        for await (const _ of entry); // .txt, .json and anything else: read past
      }
    }
    const last = sample();
    if (last) yield last;
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw new InputError(`${path}: ${(error as Error).message}`);
  } finally {
    file.destroy();
    tar.destroy();
  }
}

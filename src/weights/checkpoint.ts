/**
 * A checkpoint: every tensor of a Hugging Face model folder behind one lookup.
 *
 * A folder holds either one `model.safetensors` or, for big models, shards
 * (`model-00001-of-00003.safetensors`, ...) and `model.safetensors.index.json`, whose
 * `weight_map` says which shard holds each tensor. Like transformers, a folder with both uses
 * the single file. A path to a .safetensors file or to an index file works too.
 *
 * The index and the shards must agree exactly: every tensor the index names is in the shard it
 * names, every tensor of every shard is in the index, and no tensor is in two shards. A
 * disagreement means a broken download or a hand-edited folder, so it is an error naming the
 * index, the shard and the tensor rather than a guess. (The index's `metadata.total_size` is
 * informational and not checked: writers disagree on what it counts.)
 *
 * Loading a model starts with checkModelFolder, so that passing one of the folder's files or a
 * folder without config.json gets a message saying what to pass instead, rather than whatever
 * the first file read makes of it.
 */
import { readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { JSON_CONFIG_FILE } from "../files/limits.js";
import { readTextFileWithin } from "../files/read.js";
import { MODEL_CONFIG_FILE } from "./config.js";
import { JsonError, parseJson } from "./json.js";
import { SafetensorsFile, type TensorEntry } from "./safetensors.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/** A tensor of the checkpoint and the file that holds it. */
export interface CheckpointTensor extends TensorEntry {
  file: SafetensorsFile;
}

export class Checkpoint {
  private constructor(
    /** What was opened: a folder, a .safetensors file or an index file. */
    readonly path: string,
    /** The index file when the checkpoint is sharded. */
    readonly index: string | undefined,
    /** The safetensors files, in the order their tensors are listed. */
    readonly files: SafetensorsFile[],
    /** Every tensor, file by file in file order. */
    readonly tensors: Map<string, CheckpointTensor>,
  ) {}

  /** Opens a model folder, a .safetensors file, or a model.safetensors.index.json. */
  static async open(path: string): Promise<Checkpoint> {
    const kind = await pathKind(path);
    if (kind === "missing") throw new CheckpointError(`${path}: no such file or folder`);
    if (kind === "folder") {
      if ((await pathKind(join(path, SINGLE_FILE))) === "file") return Checkpoint.fromFiles(path, [join(path, SINGLE_FILE)]);
      if ((await pathKind(join(path, INDEX_FILE))) === "file") return Checkpoint.fromIndex(path, join(path, INDEX_FILE));
      throw new CheckpointError(await noWeightsMessage(path));
    }
    if (path.endsWith(".json")) return Checkpoint.fromIndex(path, path);
    return Checkpoint.fromFiles(path, [path]);
  }

  private static async fromFiles(path: string, paths: string[], index?: string): Promise<Checkpoint> {
    const files: SafetensorsFile[] = [];
    try {
      for (const p of paths) files.push(await SafetensorsFile.open(p));
      const tensors = new Map<string, CheckpointTensor>();
      for (const file of files) {
        for (const entry of file.tensors.values()) {
          const other = tensors.get(entry.name);
          if (other) {
            throw new CheckpointError(`${index ?? path}: tensor '${entry.name}' is in two shards, ${basename(other.file.path)} and ${basename(file.path)}`);
          }
          tensors.set(entry.name, { ...entry, file });
        }
      }
      return new Checkpoint(path, index, files, tensors);
    } catch (error) {
      await Promise.all(files.map((f) => f.close()));
      throw error;
    }
  }

  private static async fromIndex(path: string, indexPath: string): Promise<Checkpoint> {
    const weightMap = await readWeightMap(indexPath);
    const folder = dirname(indexPath);
    const shards = [...new Set(weightMap.values())].sort();
    for (const shard of shards) {
      const kind = await pathKind(join(folder, shard));
      if (kind !== "file") {
        const example = [...weightMap].find(([, s]) => s === shard)![0];
        throw new CheckpointError(`${indexPath}: shard ${shard} (holding '${example}', among others) is ${kind === "missing" ? "missing" : "not a file"}`);
      }
    }
    const checkpoint = await Checkpoint.fromFiles(path, shards.map((s) => join(folder, s)), indexPath);
    try {
      for (const [name, shard] of weightMap) {
        const found = checkpoint.tensors.get(name);
        if (!found) throw new CheckpointError(`${indexPath}: tensor '${name}' is mapped to ${shard}, which does not hold it`);
        if (basename(found.file.path) !== shard) {
          throw new CheckpointError(`${indexPath}: tensor '${name}' is mapped to ${shard} but is in ${basename(found.file.path)}`);
        }
      }
      for (const [name, t] of checkpoint.tensors) {
        if (!weightMap.has(name)) throw new CheckpointError(`${indexPath}: tensor '${name}' of ${basename(t.file.path)} is not in the weight_map`);
      }
    } catch (error) {
      await checkpoint.close();
      throw error;
    }
    return checkpoint;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  entry(name: string): CheckpointTensor {
    const tensor = this.tensors.get(name);
    if (!tensor) throw new CheckpointError(`${this.path}: no tensor named '${name}'`);
    return tensor;
  }

  /** Reads `target.byteLength` bytes of tensor `name`, from `offset` bytes into its data. */
  readInto(name: string, offset: number, target: Uint8Array): Promise<void> {
    return this.entry(name).file.readInto(name, offset, target);
  }

  readBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    return this.entry(name).file.readBytes(name, into);
  }

  readFloat32(name: string): Promise<{ shape: number[]; data: Float32Array }> {
    return this.entry(name).file.readFloat32(name);
  }

  /** The safetensors metadata of the first file (`{ format: "pt" }` for transformers' checkpoints). */
  get metadata(): Record<string, string> {
    return this.files[0]?.metadata ?? {};
  }

  /** Bytes of all tensors together. */
  get totalBytes(): number {
    let total = 0;
    for (const t of this.tensors.values()) total += t.end - t.begin;
    return total;
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

/**
 * Checks that `path` is a model folder before anything is read from it: it exists, is a folder
 * (not one of its files), and holds config.json. Each mistake is its own error, saying what to
 * pass instead. (A folder without weights is Checkpoint.open's to report.)
 */
export async function checkModelFolder(path: string): Promise<void> {
  const kind = await pathKind(path);
  if (kind === "missing") throw new CheckpointError(`${path}: no such folder (expected a model folder holding ${MODEL_CONFIG_FILE} and ${SINGLE_FILE})`);
  if (kind !== "folder") {
    const what = kind === "file" ? "a file" : "something that is neither a file nor a folder";
    throw new CheckpointError(`${path}: expected a model folder, got ${what}${await folderHint(path)}`);
  }
  if ((await pathKind(join(path, MODEL_CONFIG_FILE))) !== "file") {
    throw new CheckpointError(`${path}: not a model folder: it has no ${MODEL_CONFIG_FILE}${await subfolderHint(path)}`);
  }
}

/** What to pass instead of a file: the folder holding it when that is a model folder. */
async function folderHint(file: string): Promise<string> {
  const folder = dirname(file);
  if ((await pathKind(join(folder, MODEL_CONFIG_FILE))) === "file") return ` (pass the folder that holds ${MODEL_CONFIG_FILE}: ${folder})`;
  return ` (pass the folder that holds ${MODEL_CONFIG_FILE})`;
}

/** Subfolders that are model folders (the folder above the model was passed), as a hint. */
async function subfolderHint(folder: string): Promise<string> {
  const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
  const models: string[] = [];
  // A few dozen entries at most are looked into: the hint must stay cheap in a huge folder.
  for (const entry of entries.filter((e) => e.isDirectory()).slice(0, 50)) {
    if ((await pathKind(join(folder, entry.name, MODEL_CONFIG_FILE))) === "file") models.push(join(folder, entry.name));
  }
  if (models.length === 0) return "";
  return ` (${models.length === 1 ? "its subfolder" : "these subfolders are model folders:"} ${models.slice(0, 3).join(", ")}${models.length === 1 ? " is a model folder" : ""})`;
}

/** A folder without safetensors weights; weights in formats this runtime does not read are named. */
async function noWeightsMessage(folder: string): Promise<string> {
  const names = await readdir(folder).catch(() => [] as string[]);
  const notes: string[] = [];
  if (names.some((n) => n.endsWith(".bin") || n.endsWith(".pt") || n.endsWith(".pth"))) notes.push("PyTorch pickles (.bin, .pt) are not read: convert them to safetensors");
  const gguf = names.find((n) => n.toLowerCase().endsWith(".gguf"));
  if (gguf) notes.push(`to load its GGUF files, pass the .gguf file itself (e.g. ${join(folder, gguf)})`);
  return `${folder}: a model folder needs ${SINGLE_FILE} or ${INDEX_FILE}, and has neither${notes.length ? ` (${notes.join("; ")})` : ""}`;
}

async function pathKind(path: string): Promise<"file" | "folder" | "other" | "missing"> {
  try {
    const s = await stat(path);
    return s.isFile() ? "file" : s.isDirectory() ? "folder" : "other";
  } catch {
    return "missing";
  }
}

/** The index's weight_map, checked: tensor name → shard file name (a plain name in the index's folder). */
async function readWeightMap(indexPath: string): Promise<Map<string, string>> {
  const fail = (message: string): never => {
    throw new CheckpointError(`${indexPath}: ${message}`);
  };
  const text = await readTextFileWithin(indexPath, JSON_CONFIG_FILE, { as: CheckpointError });
  let index: unknown;
  try {
    index = parseJson(text);
  } catch (error) {
    if (!(error instanceof JsonError)) throw error;
    fail(`not valid JSON (${error.message})`);
  }
  if (typeof index !== "object" || index === null || Array.isArray(index)) return fail("not a JSON object");
  const weightMap = (index as Record<string, unknown>).weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) return fail("has no weight_map object");
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard === "" || shard === "." || shard === ".." || /[/\\]/.test(shard)) {
      fail(`weight_map maps '${name}' to ${JSON.stringify(shard)}, not a file name in the same folder`);
    }
    out.set(name, shard as string);
  }
  if (out.size === 0) fail("weight_map is empty");
  return out;
}

/**
 * llama.cpp's LLaVA pair as one checkpoint: the text model's GGUF and, optionally, the mmproj
 * GGUF holding the vision tower and projector, behind the lookup a Hugging Face Checkpoint
 * offers (tensors by name, their dtype and shape, positioned reads), and the model's config
 * from their metadata (gguf_config.ts).
 *
 * Two things are undone on the way, so that the tensors mean what transformers' do:
 *
 * - **RoPE's row order.** transformers rotates each head's dimension i with i + D/2 (its
 *   rotate_half); llama.cpp rotates neighbours 2i and 2i+1 (Meta's original layout), so its
 *   converters reorder the rows of attn_q and attn_k (and their biases) within each head:
 *   GGUF row h·D + 2i + j holds transformers' row h·D + j·D/2 + i (j = 0, 1; heads counted
 *   with the key/value heads for attn_k). Reads give the rows back in transformers' order,
 *   so the runtime's rotary kernel (half-split, as transformers) applies unchanged. Whole
 *   rows move, so quantized rows (a row is whole blocks) move just as well.
 * - **The vision MLP's names**, swapped by the older mmproj converter (gguf_names.ts):
 *   recognized by shape, as llama.cpp does, and exchanged.
 *
 * Both files stay open until close(); nothing but the headers is read when opening.
 */
import { basename } from "node:path";
import { GgufError, GgufFile, type GgufTensorInfo } from "./gguf.js";
import { configFromGguf } from "./gguf_config.js";
import { isVisionTensor } from "./gguf_names.js";
import { hasDecoder, type ModelConfig } from "./config.js";

export interface GgufCheckpointTensor {
  name: string;
  /** The ggml type's name: F32, F16, BF16, or a quantized one (Q8_0, Q4_K, ...). */
  dtype: string;
  /** Outermost first, as transformers' ([rows, columns] for a matrix). */
  shape: number[];
  file: GgufFile;
  /** Byte range inside the file (absolute). */
  begin: number;
  end: number;
  /** The name the file gives it, when that differs (the swapped vision MLP). */
  storedAs?: string;
  /** Rows are stored in llama.cpp's RoPE order over this many heads, and read back in transformers'. */
  ropeHeads?: number;
}

/** The tensor types a model can be loaded from: floats, and the quantized types the kernels read. */
export const GGUF_FLOAT_TYPES = ["F32", "F16", "BF16"] as const;

export class GgufCheckpoint {
  private constructor(
    /** The text model's path (and the mmproj's, for messages). */
    readonly path: string,
    readonly files: GgufFile[],
    readonly tensors: Map<string, GgufCheckpointTensor>,
    readonly config: ModelConfig,
    /** What loading survives but a user should hear (e.g. the swapped MLP names). */
    readonly notes: string[],
  ) {}

  get text(): GgufFile {
    return this.files[0];
  }

  get mmproj(): GgufFile | undefined {
    return this.files[1];
  }

  static async open(textPath: string, mmprojPath?: string): Promise<GgufCheckpoint> {
    const files: GgufFile[] = [];
    try {
      files.push(await GgufFile.open(textPath));
      if (mmprojPath !== undefined) files.push(await GgufFile.open(mmprojPath));
      const [text, mmproj] = files;
      const arch = text.metadata.get("general.architecture");
      if (arch?.type === "STRING" && arch.value === "clip") {
        throw new GgufError(
          `${text.path}: this is an mmproj file (general.architecture "clip": a vision tower and projector)` +
            (mmproj ? `, given as the text model: were --model and --mmproj given the other way round?` : `: pass it as --mmproj, and the text model as --model`),
        );
      }
      const notes: string[] = [];
      const tensors = new Map<string, GgufCheckpointTensor>();
      for (const file of files) {
        for (const info of file.tensors.values()) {
          const wrongFile = file === text ? isVisionTensor(info.name) : !isVisionTensor(info.name);
          if (wrongFile && mmproj) {
            throw new GgufError(`${file.path}: tensor '${info.name}' belongs in the ${file === text ? "mmproj" : "text model"} file: were --model and --mmproj given the other way round?`);
          }
          tensors.set(info.name, entryOf(file, info));
        }
      }
      const config = configFromGguf(text, mmproj, {
        vocabSize: tensors.get("token_embd.weight")?.shape[0] ?? failMissing(text, "token_embd.weight"),
        hasOutput: tensors.has("output.weight"),
        hasAttentionBias: tensors.has("blk.0.attn_q.bias"),
        hasProjectorBias: tensors.has("mm.0.bias"),
      });
      if (hasDecoder(config)) markRopeRows(tensors, config.text.numAttentionHeads, config.text.numKeyValueHeads);
      if (config.kind === "llava") swapLegacyMlpNames(tensors, config.vision.hiddenSize, mmproj!, notes);
      const path = mmproj ? `${textPath} (with ${basename(mmproj.path)})` : textPath;
      return new GgufCheckpoint(path, files, tensors, config, notes);
    } catch (error) {
      await Promise.all(files.map((f) => f.close()));
      throw error;
    }
  }

  entry(name: string): GgufCheckpointTensor {
    const entry = this.tensors.get(name);
    if (!entry) throw new GgufError(`${this.path}: no tensor named '${name}'`);
    return entry;
  }

  /** Reads `target.byteLength` bytes of tensor `name` from `offset` on, in transformers' row order. */
  async readInto(name: string, offset: number, target: Uint8Array): Promise<void> {
    const entry = this.entry(name);
    const stored = entry.storedAs ?? name;
    if (entry.ropeHeads === undefined) return entry.file.readInto(stored, offset, target);
    const bytes = entry.end - entry.begin;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + target.byteLength > bytes) {
      throw new GgufError(`${this.path}: tensor '${name}': cannot read bytes [${offset}, ${offset + target.byteLength}) of its ${bytes}`);
    }
    // Read the whole heads the range touches, then pick each row from where llama.cpp put it.
    const rows = entry.shape[0];
    const rowBytes = bytes / rows;
    const headRows = rows / entry.ropeHeads;
    const half = headRows / 2;
    const firstRow = Math.floor(offset / rowBytes);
    const lastRow = Math.floor((offset + target.byteLength - 1) / rowBytes);
    const firstHead = Math.floor(firstRow / headRows);
    const heads = Math.floor(lastRow / headRows) - firstHead + 1;
    const span = new Uint8Array(heads * headRows * rowBytes);
    await entry.file.readInto(stored, firstHead * headRows * rowBytes, span);
    for (let row = firstRow; row <= lastRow; row++) {
      const inHead = row % headRows;
      const source = (Math.floor(row / headRows) - firstHead) * headRows + 2 * (inHead % half) + Math.floor(inHead / half);
      const from = Math.max(offset, row * rowBytes);
      const to = Math.min(offset + target.byteLength, (row + 1) * rowBytes);
      const start = source * rowBytes + (from - row * rowBytes);
      target.set(span.subarray(start, start + (to - from)), from - offset);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

function entryOf(file: GgufFile, info: GgufTensorInfo): GgufCheckpointTensor {
  return { name: info.name, dtype: info.type.name, shape: info.shape, file, begin: info.begin, end: info.end };
}

function failMissing(file: GgufFile, name: string): never {
  throw new GgufError(`${file.path}: no tensor '${name}': a llama.cpp text model stores its token embeddings there`);
}

/** attn_q (over the query heads) and attn_k (over the key/value heads) are stored in llama.cpp's RoPE order. */
function markRopeRows(tensors: Map<string, GgufCheckpointTensor>, heads: number, kvHeads: number): void {
  for (const entry of tensors.values()) {
    const match = /^blk\.\d+\.attn_([qk])\.(weight|bias)$/.exec(entry.name);
    if (!match) continue;
    const count = match[1] === "q" ? heads : kvHeads;
    const rows = entry.shape[0];
    if (rows % (2 * count) !== 0) {
      throw new GgufError(`${entry.file.path}: tensor '${entry.name}' has ${rows} rows, not whole heads of even size for ${count} heads`);
    }
    entry.ropeHeads = count;
  }
}

/** The older mmproj converter's fc1 → ffn_down, fc2 → ffn_up, told by shape (clip.cpp's test): ffn_down's rows as long as the hidden size. */
function swapLegacyMlpNames(tensors: Map<string, GgufCheckpointTensor>, hidden: number, mmproj: GgufFile, notes: string[]): void {
  let swapped = 0;
  for (const down of [...tensors.values()]) {
    const match = /^v\.blk\.(\d+)\.ffn_down\.weight$/.exec(down.name);
    const up = match && tensors.get(`v.blk.${match[1]}.ffn_up.weight`);
    if (!up || down.shape.length !== 2 || down.shape[1] !== hidden || up.shape[1] === hidden) continue;
    for (const suffix of ["weight", "bias"]) {
      const [a, b] = [tensors.get(`v.blk.${match[1]}.ffn_up.${suffix}`), tensors.get(`v.blk.${match[1]}.ffn_down.${suffix}`)];
      if (a) tensors.set(`v.blk.${match[1]}.ffn_down.${suffix}`, { ...a, name: `v.blk.${match[1]}.ffn_down.${suffix}`, storedAs: a.name });
      else tensors.delete(`v.blk.${match[1]}.ffn_down.${suffix}`);
      if (b) tensors.set(`v.blk.${match[1]}.ffn_up.${suffix}`, { ...b, name: `v.blk.${match[1]}.ffn_up.${suffix}`, storedAs: b.name });
      else tensors.delete(`v.blk.${match[1]}.ffn_up.${suffix}`);
    }
    swapped++;
  }
  if (swapped > 0) {
    notes.push(`${mmproj.path}: the vision MLP's ffn_up and ffn_down are named the other way round (the older convert_image_encoder_to_gguf.py); read by shape, as llama.cpp does`);
  }
}

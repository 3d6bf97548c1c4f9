/**
 * Verification against transformers: runs a folder in the format of shared/golden (a model,
 * its inputs, and the reference tensors transformers produced for them) through our kernels and
 * compares every reference tensor that is present:
 *
 *   vision_embeddings, vision_hidden_states, vision_selected_features, projector_output
 *   packed_image_features                               (LLaVA-NeXT: the tiles' features as the decoder gets them)
 *   text_hidden_states, logits                          (one pass over the prompt)
 *   generate_step_logits                                (teacher-forced on the reference tokens)
 *   generated_ids                                       (our own greedy decoding, KV-cache)
 *
 * Each comparison is max |ours - reference| relative to the reference's largest |value|, within
 * the tolerance of the storage dtype (compare.ts: 1e-4 in f32, 1e-2 in f16). In f16, greedy ids
 * are reported but not required to match: near-ties in the reference (a gap of 0.002 between
 * the top two logits) may flip at this precision.
 *
 * A CLIP dual encoder's folder (clip-a) is verified by verify_clip.ts.
 */
import { join } from "node:path";
import { argmax } from "../kernels/argmax.js";
import { takeRows } from "../tensor/copy.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import { loadLlava, type LlavaModel } from "../models/llava.js";
import type { Trace } from "../models/llama.js";
import { anyresLayout } from "../models/anyres.js";
import { compare, concat, TOLERANCES, TraceStore, type Comparison, type VerifyReport } from "./compare.js";
import { verifyClipFolder } from "./verify_clip.js";
import { pathExists } from "../files/read.js";
import { loadConfig, MODEL_CONFIG_FILE } from "../weights/config.js";

export type { Comparison, VerifyReport } from "./compare.js";

export interface VerifyOptions {
  dtype?: "f32" | "f16";
  gpu?: Gpu;
  adapter?: string;
}

export async function verifyFolder(folder: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  if (await isClipFolder(join(folder, "model"))) return verifyClipFolder(folder, options);
  const inputs = await SafetensorsFile.open(join(folder, "inputs.safetensors"));
  let golden: SafetensorsFile | null = null;
  let model: LlavaModel | null = null;
  try {
    golden = await SafetensorsFile.open(join(folder, "golden.safetensors"));
    model = await loadLlava(join(folder, "model"), { dtype: options.dtype ?? "f32", gpu: options.gpu, adapter: options.adapter });
    return await verifyLoaded(folder, inputs, golden, model);
  } finally {
    model?.dispose();
    await golden?.close();
    await inputs.close();
  }
}

/** Whether a golden folder's model is a CLIP dual encoder (a GGUF model/ has no config.json, and is not). */
async function isClipFolder(model: string): Promise<boolean> {
  if (!(await pathExists(join(model, MODEL_CONFIG_FILE)))) return false;
  return (await loadConfig(model)).kind === "clip";
}

/** verifyFolder once its files are open and its model loaded (the caller closes them). */
async function verifyLoaded(folder: string, inputs: SafetensorsFile, golden: SafetensorsFile, model: LlavaModel): Promise<VerifyReport> {
  const traces = new TraceStore();
  try {
    const { data: idRows, shape: idShape } = await inputs.readIntegers("input_ids");
    if (idShape.length !== 2 || idShape[0] !== 1) throw new Error(`${inputs.path}: input_ids must be [1, length], not [${idShape}]`);
    const ids = idRows;
    const pixels = inputs.tensors.has("pixel_values") ? await readImages(inputs) : null;
    const tolerance = TOLERANCES[model.dtype === "f16" ? "f16" : "f32"];
    const comparisons: Comparison[] = [];

    // One pass over the prompt, tracing every intermediate the reference has.
    const gpu = model.gpu;
    const logits = gpu.scope(() => {
      const embeddings = model.embedPrompt(ids, imageFeatures(model, pixels, traces.trace));
      model.cache.length = 0;
      const hidden = model.decoder.forward(embeddings, model.cache, traces.trace);
      return model.decoder.logits(hidden);
    });
    comparisons.push(...(await compareTraces(golden, traces, tolerance)));
    if (golden.tensors.has("logits")) {
      const reference = await golden.readFloat32("logits");
      comparisons.push(compare("logits", await logits.read(), reference.data, reference.shape, tolerance));
    }
    logits.dispose();

    // Teacher-forced steps and free-running greedy decoding need the reference tokens.
    let tokens: VerifyReport["tokens"] = { expected: [], got: [], agreeing: 0, required: model.dtype === "f32" };
    if (golden.tensors.has("generated_ids")) {
      const expected = (await golden.readIntegers("generated_ids")).data;
      if (golden.tensors.has("generate_step_logits")) {
        const reference = await golden.readFloat32("generate_step_logits");
        const steps = await stepLogits(model, ids, pixels, expected);
        comparisons.push(compare("generate_step_logits", steps, reference.data, reference.shape, tolerance, "teacher-forced on the reference tokens"));
      }
      const got = await greedy(model, ids, pixels, expected.length);
      const agreeing = got.findIndex((id, i) => id !== expected[i]);
      tokens = { expected, got, agreeing: agreeing < 0 ? got.length : agreeing, required: model.dtype === "f32" };
    }
    const tokensOk = !tokens.required || tokens.agreeing === tokens.expected.length;
    return {
      folder,
      dtype: model.dtype,
      comparisons,
      tokens,
      ok: tokensOk && comparisons.every((c) => c.ok || c.note?.startsWith("not computed")),
    };
  } finally {
    traces.dispose();
  }
}

/** Compares each traced name with the reference tensor of the same name, entry by entry. */
async function compareTraces(golden: SafetensorsFile, traces: TraceStore, tolerance: number): Promise<Comparison[]> {
  const out: Comparison[] = [];
  for (const name of ["vision_embeddings", "vision_hidden_states", "vision_selected_features", "projector_output", "text_hidden_states"]) {
    if (!golden.tensors.has(name)) continue;
    const reference = await golden.readFloat32(name);
    const byIndex = traces.tensors.get(name) ?? new Map<string, Tensor>();
    // Reference layouts: [images, ...] or [layers + 1, images or batch, ...].
    const indexRank = name.endsWith("hidden_states") ? 2 : 1;
    const leading = reference.shape.slice(0, indexRank);
    const entrySize = reference.shape.slice(indexRank).reduce((n, d) => n * d, 1);
    const ours: ArrayLike<number>[] = [];
    const computed: number[] = [];
    const missing: string[] = [];
    for (let flat = 0; flat < leading.reduce((n, d) => n * d, 1); flat++) {
      const index = indexRank === 2 ? [Math.floor(flat / leading[1]), flat % leading[1]] : [flat];
      // text_hidden_states' second index is the batch (always 0 here), traced without it.
      const key = name === "text_hidden_states" ? String(index[0]) : index.join(",");
      const t = byIndex.get(key);
      if (t) {
        ours.push(await t.read());
        computed.push(flat);
      } else {
        missing.push(key);
      }
    }
    if (computed.length === 0) {
      out.push({ name, shape: reference.shape, maxAbsDiff: NaN, maxAbsReference: NaN, relative: NaN, tolerance, ok: false, note: "not computed" });
      continue;
    }
    const referenceParts = concat(computed.map((flat) => reference.data.subarray(flat * entrySize, (flat + 1) * entrySize)));
    const note = missing.length
      ? `entries [${missing.join("], [")}] not computed (vision layers after vision_feature_layer are not run)`
      : undefined;
    out.push(compare(name, concat(ours), referenceParts, reference.shape, tolerance, note));
  }
  if (golden.tensors.has("packed_image_features")) {
    // LLaVA-NeXT: [all images' features, hidden], image after image.
    const reference = await golden.readFloat32("packed_image_features");
    const byImage = traces.tensors.get("packed_image_features");
    const ours = byImage ? await Promise.all([...byImage.keys()].sort((a, b) => Number(a) - Number(b)).map((key) => byImage.get(key)!.read())) : [];
    out.push(compare("packed_image_features", concat(ours), reference.data, reference.shape, tolerance, ours.length ? undefined : "not computed"));
  }
  return out;
}

/**
 * The inputs' images: `pixel_values` [images, 3, H, W], or LLaVA-NeXT's tiles [images, tiles,
 * 3, H, W] (zero tiles pad an image to the batch's most) with `image_sizes` [images, 2] (height, width).
 */
interface InputImages {
  pixels: { shape: number[]; data: Float32Array };
  sizes: { height: number; width: number }[] | null;
}

async function readImages(inputs: SafetensorsFile): Promise<InputImages> {
  const pixels = await inputs.readFloat32("pixel_values");
  if (pixels.shape.length === 4) return { pixels, sizes: null };
  if (pixels.shape.length !== 5 || !inputs.tensors.has("image_sizes")) {
    throw new Error(`${inputs.path}: pixel_values [${pixels.shape}] must be [images, 3, H, W], or [images, tiles, 3, H, W] with image_sizes`);
  }
  const { data, shape } = await inputs.readIntegers("image_sizes");
  if (shape.length !== 2 || shape[0] !== pixels.shape[0] || shape[1] !== 2) throw new Error(`${inputs.path}: image_sizes [${shape}] must be [${pixels.shape[0]}, 2]`);
  return { pixels, sizes: Array.from({ length: shape[0] }, (_, i) => ({ height: data[2 * i], width: data[2 * i + 1] })) };
}

/** Features for every image of the inputs (in the current scope). */
function imageFeatures(model: LlavaModel, images: InputImages | null, trace?: Trace): Tensor[] {
  if (!images) return [];
  const { pixels, sizes } = images;
  const gpu = model.gpu;
  if (!sizes) {
    const [n, c, h, w] = pixels.shape;
    const size = c * h * w;
    return Array.from({ length: n }, (_, i) => model.encodeImage(gpu.tensor(pixels.data.subarray(i * size, (i + 1) * size), [c, h, w]), { trace, firstTile: i, image: i }));
  }
  const [, most, c, h, w] = pixels.shape;
  const tileSize = c * h * w;
  let firstTile = 0;
  return sizes.map((imageSize, i) => {
    // The real tiles of image i; the rest of its row is batch padding.
    const tiles = anyresTiles(model, imageSize);
    if (tiles > most) throw new Error(`image ${i} (${imageSize.width}x${imageSize.height}) has ${tiles} tiles, but pixel_values holds ${most} per image`);
    const start = i * most * tileSize;
    const features = model.encodeImage(gpu.tensor(pixels.data.subarray(start, start + tiles * tileSize), [tiles, c, h, w]), { trace, firstTile, image: i, imageSize });
    firstTile += tiles;
    return features;
  });
}

function anyresTiles(model: LlavaModel, imageSize: { height: number; width: number }): number {
  const vision = model.vision!;
  return anyresLayout(imageSize, vision.anyres!.config, vision.tower.config).tiles;
}

/** Logits of the prompt's last position, then of each reference token fed in turn: [steps, vocab]. */
async function stepLogits(model: LlavaModel, ids: number[], pixels: InputImages | null, reference: number[]): Promise<Float32Array> {
  const gpu = model.gpu;
  model.cache.length = 0;
  const rows: ArrayLike<number>[] = [];
  let next = gpu.scope(() => {
    const hidden = model.decoder.forward(model.embedPrompt(ids, imageFeatures(model, pixels)), model.cache);
    return model.decoder.logits(takeRows(hidden, hidden.dim(0) - 1, 1));
  });
  for (let step = 0; step < reference.length; step++) {
    rows.push(await next.read());
    next.dispose();
    if (step + 1 === reference.length) break;
    const token = reference[step];
    next = gpu.scope(() => model.decoder.logits(model.decoder.forward(model.decoder.embed(gpu.tensor([token], [1], "i32")), model.cache)));
  }
  return concat(rows);
}

/** Our own greedy decoding with the KV-cache: argmax on the GPU, one id read back per step. */
async function greedy(model: LlavaModel, ids: number[], pixels: InputImages | null, steps: number): Promise<number[]> {
  const gpu = model.gpu;
  model.cache.length = 0;
  const out: number[] = [];
  let next = gpu.scope(() => {
    const hidden = model.decoder.forward(model.embedPrompt(ids, imageFeatures(model, pixels)), model.cache);
    return argmax(model.decoder.logits(takeRows(hidden, hidden.dim(0) - 1, 1)));
  });
  while (out.length < steps) {
    out.push((await next.read())[0]);
    if (out.length === steps) break;
    const previous = next;
    next = gpu.scope(() => argmax(model.decoder.logits(model.decoder.forward(model.decoder.embed(previous), model.cache))));
    previous.dispose();
  }
  next.dispose();
  return out;
}

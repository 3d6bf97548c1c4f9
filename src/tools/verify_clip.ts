/**
 * Verification of a CLIP dual encoder against transformers (a folder like shared/golden's
 * clip-a): the texts of inputs.safetensors (input_ids and attention_mask, padded) and its images
 * (pixel_values) through both towers, every reference tensor compared as verify.ts does:
 *
 *   text_hidden_states, text_last_hidden_state, text_pooled_index, text_pooled_output,
 *   text_features, text_embeds                       (the text tower, per layer, then the head)
 *   vision_embeddings, vision_hidden_states, vision_pooled_output, image_features, image_embeds
 *   logits_per_image, logits_per_text                (exp(logit_scale) · cosines)
 *
 * The pooled positions are compared exactly (an integer each). Padded positions are compared
 * too: transformers computes them, each attending to the real tokens before it.
 */
import { join } from "node:path";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import { loadClipModel, unitRows, type ClipModel } from "../models/clip_model.js";
import { poolingPosition, type TokenBatch } from "../models/clip_text.js";
import { compare, concat, TOLERANCES, TraceStore, type Comparison, type VerifyReport } from "./compare.js";

export interface VerifyClipOptions {
  dtype?: "f32" | "f16";
  gpu?: Gpu;
  adapter?: string;
}

export async function verifyClipFolder(folder: string, options: VerifyClipOptions = {}): Promise<VerifyReport> {
  const inputs = await SafetensorsFile.open(join(folder, "inputs.safetensors"));
  let golden: SafetensorsFile | null = null;
  let model: ClipModel | null = null;
  try {
    golden = await SafetensorsFile.open(join(folder, "golden.safetensors"));
    model = await loadClipModel(join(folder, "model"), { dtype: options.dtype ?? "f32", gpu: options.gpu, adapter: options.adapter });
    const comparisons = await compareAll(inputs, golden, model);
    return {
      folder,
      dtype: model.dtype,
      comparisons,
      tokens: { expected: [], got: [], agreeing: 0, required: false },
      ok: comparisons.every((c) => c.ok),
    };
  } finally {
    model?.dispose();
    await golden?.close();
    await inputs.close();
  }
}

/** input_ids and attention_mask [B, S]: rows of ids, each with its real tokens first. */
async function readTexts(inputs: SafetensorsFile): Promise<TokenBatch> {
  const ids = await inputs.readIntegers("input_ids");
  const mask = await inputs.readIntegers("attention_mask");
  const [B, S] = ids.shape;
  if (ids.shape.length !== 2 || mask.shape.join() !== ids.shape.join()) {
    throw new Error(`${inputs.path}: input_ids [${ids.shape}] and attention_mask [${mask.shape}] must both be [texts, length]`);
  }
  const rows = Array.from({ length: B }, (_, b) => ids.data.slice(b * S, (b + 1) * S));
  const lengths = Array.from({ length: B }, (_, b) => {
    const m = mask.data.slice(b * S, (b + 1) * S);
    const real = m.indexOf(0) < 0 ? S : m.indexOf(0);
    if (real === 0 || m.slice(real).some((x) => x !== 0) || m.slice(0, real).some((x) => x !== 1)) {
      throw new Error(`${inputs.path}: attention_mask row ${b} is not ones then zeros (only right padding is supported)`);
    }
    return real;
  });
  return { ids: rows, lengths };
}

async function compareAll(inputs: SafetensorsFile, golden: SafetensorsFile, model: ClipModel): Promise<Comparison[]> {
  const tolerance = TOLERANCES[model.dtype === "f16" ? "f16" : "f32"];
  const texts = await readTexts(inputs);
  const pixels = await inputs.readFloat32("pixel_values");
  const gpu = model.gpu;
  const traces = new TraceStore();
  const out: Comparison[] = [];
  const against = async (name: string, ours: ArrayLike<number>, note?: string) => {
    if (!golden.tensors.has(name)) return;
    const reference = await golden.readFloat32(name);
    out.push(compare(name, ours, reference.data, reference.shape, tolerance, note));
  };
  const traced = async (name: string, keys: string[]): Promise<Float32Array> => {
    const byKey = traces.tensors.get(name);
    return concat(await Promise.all(keys.map((key) => readTraced(byKey?.get(key), name, key))));
  };
  try {
    const [textFeatures, imageFeatures] = gpu.scope(() => [
      gpu.keep(model.textFeatures(texts, traces.trace)),
      gpu.keep(model.imageFeatures(gpu.tensor(pixels.data, pixels.shape), traces.trace)),
    ]);
    const dim = model.config.projectionDim;
    const layers = (n: number) => Array.from({ length: n + 1 }, (_, i) => String(i));
    const images = pixels.shape[0];
    await against("text_hidden_states", await traced("text_hidden_states", layers(model.config.text.numHiddenLayers)));
    await against("text_last_hidden_state", await traced("text_last_hidden_state", [""]));
    await against("text_pooled_output", await traced("text_pooled_output", [""]));
    if (golden.tensors.has("text_pooled_index")) {
      const expected = Array.from((await golden.readIntegers("text_pooled_index")).data);
      const got = texts.ids.map((ids) => poolingPosition(ids, model.config.text.eosTokenId));
      const wrong = got.filter((p, i) => p !== expected[i]).length;
      out.push({ name: "text_pooled_index", shape: [got.length], maxAbsDiff: wrong, maxAbsReference: 0, relative: wrong, tolerance: 0, ok: wrong === 0, note: `[${got}] (exact)` });
    }
    const text = await textFeatures.read();
    const image = await imageFeatures.read();
    textFeatures.dispose();
    imageFeatures.dispose();
    const textEmbeds = unitRows(text, dim);
    const imageEmbeds = unitRows(image, dim);
    await against("text_features", text);
    await against("text_embeds", textEmbeds);
    const perImage = Array.from({ length: images }, (_, i) => String(i));
    await against("vision_embeddings", await traced("vision_embeddings", perImage));
    const visionKeys = layers(model.config.vision.numHiddenLayers).flatMap((layer) => perImage.map((i) => `${layer},${i}`));
    await against("vision_hidden_states", await traced("vision_hidden_states", visionKeys));
    await against("vision_pooled_output", await traced("vision_pooled_output", [""]));
    await against("image_features", image);
    await against("image_embeds", imageEmbeds);
    const scale = Math.exp(model.logitScale);
    const B = texts.ids.length;
    const perImageLogits = new Float32Array(images * B);
    for (let i = 0; i < images; i++) {
      for (let t = 0; t < B; t++) {
        let dot = 0;
        for (let d = 0; d < dim; d++) dot += imageEmbeds[i * dim + d] * textEmbeds[t * dim + d];
        perImageLogits[i * B + t] = scale * dot;
      }
    }
    await against("logits_per_image", perImageLogits);
    await against("logits_per_text", Float32Array.from({ length: B * images }, (_, k) => perImageLogits[(k % images) * B + Math.floor(k / images)]));
    return out;
  } finally {
    traces.dispose();
  }
}

async function readTraced(t: Tensor | undefined, name: string, key: string): Promise<Float32Array> {
  if (!t) throw new Error(`verify: ${name} [${key}] was not traced`);
  return Float32Array.from(await t.read());
}

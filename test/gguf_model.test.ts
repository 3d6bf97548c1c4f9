/**
 * llama.cpp's LLaVA pair as a model: the golden checkpoints converted to GGUF (tools/convert.ts)
 * and loaded back (weights/gguf_checkpoint.ts), against transformers' reference outputs.
 *
 * - f32 GGUF: the same numbers as the Hugging Face folder, so `verify` holds at the f32
 *   tolerance (1e-4 of the largest value) with identical greedy ids: what the conversion does
 *   to names, RoPE row order, layers kept and metadata is undone exactly on loading.
 * - quantized GGUF (q8_0, q4_0, q5_1): the weights differ from the original, so the reference
 *   is the f32 model on those weights dequantized (in float64, blocks.ts) into a Hugging Face
 *   folder: the quantized kernels must compute the same function to the f32 tolerance.
 * - The RoPE reordering is checked against the rotation itself: llama.cpp rotates neighbours
 *   (2i, 2i+1) of its rows, transformers i and i + D/2 of its own; both must give the same
 *   rotated queries, reordered.
 */
import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { dequantize, type QuantizedType } from "../src/kernels/quant/blocks.js";
import sharp from "sharp";
import { loadModel } from "../src/generate/model.js";
import { loadLlava, type LlavaModel } from "../src/models/llava.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { convertToGguf, toLlamaCppRopeOrder, type ConvertDType } from "../src/tools/convert.js";
import { verifyFolder } from "../src/tools/verify.js";
import { checkpointNameFor, expectedTensors } from "../src/weights/names.js";
import { f16ToF32 } from "../src/weights/convert.js";
import { GgufFile } from "../src/weights/gguf.js";
import type { GgufValue } from "../src/weights/gguf_types.js";
import { encodeGguf, type GgufTensorToWrite } from "../src/weights/gguf_writer.js";
import { GgufCheckpoint } from "../src/weights/gguf_checkpoint.js";
import { ggufTensorName } from "../src/weights/gguf_names.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../src/weights/safetensors_writer.js";
import { rng, testGpu } from "./helpers.js";
import { randomLlavaFolder, writeRandomCheckpoint } from "./random_checkpoint.js";

const GOLDEN = join(import.meta.dirname, "fixtures", "golden");

/**
 * A copy of golden folder `name` whose model/ holds the GGUF conversion instead of the Hugging
 * Face files. The golden models have no tokenizer, so their GGUF has no vocabulary and no
 * `<image>` token: an image goes where the id one past the vocabulary stands
 * (weights/gguf_config.ts), and the prompt's image token is rewritten to it.
 */
async function ggufGolden(name: string, dtype: ConvertDType, visionDtype?: ConvertDType): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), `gguf-${name}-`));
  for (const file of ["golden.safetensors", "golden.json"]) await cp(join(GOLDEN, name, file), join(root, file));
  const config = JSON.parse(await readFile(join(GOLDEN, name, "model", "config.json"), "utf8"));
  const inputs = await SafetensorsFile.open(join(GOLDEN, name, "inputs.safetensors"));
  try {
    const ids = await inputs.readIntegers("input_ids");
    const rewritten = ids.data.map((id) => (id === config.image_token_index ? config.text_config.vocab_size : id));
    const tensors: Record<string, TensorToWrite> = { input_ids: { dtype: "I64", shape: ids.shape, data: BigInt64Array.from(rewritten, BigInt) } };
    if (inputs.tensors.has("pixel_values")) {
      const pixels = await inputs.readFloat32("pixel_values");
      tensors.pixel_values = { dtype: "F32", shape: pixels.shape, data: pixels.data };
    }
    await writeSafetensors(join(root, "inputs.safetensors"), tensors);
  } finally {
    await inputs.close();
  }
  await mkdir(join(root, "model"));
  await convertToGguf(join(GOLDEN, name, "model"), {
    dtype,
    out: join(root, "model", `model-${dtype}.gguf`),
    mmprojOut: join(root, "model", `mmproj-${visionDtype ?? "f16"}.gguf`),
    visionDtype,
  });
  return root;
}

/** The weights of a GGUF pair dequantized into a Hugging Face folder with `configFrom`'s config.json. */
async function dequantizedFolder(gguf: string, configFrom: string): Promise<string> {
  const out = await mkdtemp(join(tmpdir(), "dequantized-"));
  await cp(join(configFrom, "config.json"), join(out, "config.json"));
  const names = await readdir(gguf);
  const text = join(gguf, names.find((n) => n.startsWith("model-"))!);
  const mmproj = names.find((n) => n.startsWith("mmproj"));
  const checkpoint = await GgufCheckpoint.open(text, mmproj && join(gguf, mmproj));
  try {
    const tensors: Record<string, TensorToWrite> = {};
    for (const t of expectedTensors(checkpoint.config)) {
      const entry = checkpoint.tensors.get(ggufTensorName(t.name)!);
      if (!entry) continue; // a tied LM head
      const bytes = new Uint8Array(entry.end - entry.begin);
      await checkpoint.readInto(entry.name, 0, bytes);
      const count = t.shape.reduce((n, d) => n * d, 1);
      let values: Float32Array;
      if (entry.dtype === "F32") values = new Float32Array(bytes.buffer);
      else if (entry.dtype === "F16") f16ToF32(new Uint16Array(bytes.buffer), (values = new Float32Array(count)));
      else values = Float32Array.from(dequantize(entry.dtype as QuantizedType, bytes, count));
      tensors[checkpointNameFor(checkpoint.config, t.name)] = { dtype: "F32", shape: t.shape, data: values };
    }
    await writeSafetensors(join(out, "model.safetensors"), tensors);
  } finally {
    await checkpoint.close();
  }
  return out;
}

/**
 * Logits of a golden folder's inputs (prompt and image) through `model`, then of `steps`
 * greedy decoding steps (one position each, through the KV-cache): the prompt's last row and
 * each step's, with the ids chosen.
 */
async function greedyLogits(model: LlavaModel, golden: string, steps: number): Promise<{ logits: number[][]; ids: number[] }> {
  const inputs = await SafetensorsFile.open(join(golden, "inputs.safetensors"));
  const features: Tensor[] = [];
  try {
    const prompt = (await inputs.readIntegers("input_ids")).data;
    if (inputs.tensors.has("pixel_values")) {
      const { data, shape } = await inputs.readFloat32("pixel_values");
      const size = shape.slice(1).reduce((n, d) => n * d, 1);
      for (let i = 0; i < shape[0]; i++) features.push(model.encodeImage(model.gpu.tensor(data.subarray(i * size, (i + 1) * size), shape.slice(1))));
    }
    model.cache.length = 0;
    const vocab = model.textConfig.vocabSize;
    const out: { logits: number[][]; ids: number[] } = { logits: [], ids: [] };
    let embeddings = model.embedPrompt(prompt, features);
    for (let step = 0; step <= steps; step++) {
      const input = embeddings;
      const logits = model.gpu.scope(() => model.decoder.logits(model.decoder.forward(input, model.cache)));
      input.dispose();
      const all = await logits.read();
      logits.dispose();
      const last = Array.from(all.subarray(all.length - vocab));
      const id = last.indexOf(Math.max(...last));
      out.logits.push(last);
      out.ids.push(id);
      embeddings = model.decoder.embed(model.gpu.tensor([id], [1], "i32"));
    }
    embeddings.dispose();
    return out;
  } finally {
    for (const f of features) f.dispose();
    await inputs.close();
  }
}

/** The same greedy ids, and every step's logits within the f32 tolerance (1e-4 of the largest). */
function expectSameGreedy(want: { logits: number[][]; ids: number[] }, got: { logits: number[][]; ids: number[] }): void {
  expect(got.ids).toEqual(want.ids);
  want.logits.forEach((row, step) => {
    const largest = Math.max(...row.map(Math.abs));
    const worst = Math.max(...row.map((w, i) => Math.abs(w - got.logits[step][i])));
    expect(worst / largest, `step ${step}: largest |logit| ${largest}`).toBeLessThan(1e-4);
  });
}

describe("GGUF pairs converted from the golden checkpoints", async () => {
  const gpu = await testGpu();

  for (const name of ["tiny-llava-a", "text-only-c"]) {
    it(`${name} as f32 GGUF: every reference tensor within the f32 tolerance, greedy ids identical`, async () => {
      const report = await verifyFolder(await ggufGolden(name, "f32"), { dtype: "f32", gpu });
      for (const c of report.comparisons) expect(c.ok || c.note?.startsWith("not computed"), `${c.name}: relative ${c.relative} > ${c.tolerance}`).toBe(true);
      expect(report.comparisons.map((c) => c.name)).toEqual(expect.arrayContaining(["logits", "generate_step_logits", "text_hidden_states"]));
      expect(report.tokens.got).toEqual(report.tokens.expected);
      expect(report.ok).toBe(true);
    });
  }

  for (const dtype of ["q8_0", "q4_0", "q5_1"] as const) {
    it(`tiny-llava-a as ${dtype}: the quantized kernels compute the f32 model of the dequantized weights`, async () => {
      const root = await ggufGolden("tiny-llava-a", dtype);
      const reference = await loadLlava(await dequantizedFolder(join(root, "model"), join(GOLDEN, "tiny-llava-a", "model")), { dtype: "f32", gpu });
      const quantized = await loadLlava(join(root, "model"), { dtype: "f32", gpu });
      try {
        const text = await GgufFile.open(join(root, "model", `model-${dtype}.gguf`));
        expect(text.entry("blk.0.attn_q.weight").type.name).toBe(dtype.toUpperCase());
        expect(text.entry("token_embd.weight").type.name).toBe(dtype.toUpperCase());
        await text.close();
        // Prefill runs the tiled quantized matmul, each decoding step the matvec.
        expectSameGreedy(await greedyLogits(reference, join(GOLDEN, "tiny-llava-a"), 6), await greedyLogits(quantized, root, 6));
      } finally {
        quantized.dispose();
        reference.dispose();
      }
    });
  }
});

describe("llama.cpp's RoPE row order", () => {
  it("rotating neighbours of the reordered rows gives transformers' rotation of its own rows, reordered", () => {
    const random = rng();
    const [heads, D, K] = [3, 8, 5];
    const rows = heads * D;
    const w = Float32Array.from({ length: rows * K }, () => random() * 2 - 1);
    const x = Array.from({ length: K }, () => random() * 2 - 1);
    const project = (m: Float32Array) => Array.from({ length: rows }, (_, r) => x.reduce((s, v, k) => s + v * m[r * K + k], 0));
    const angle = (i: number) => 7 * Math.pow(10000, (-2 * i) / D); // position 7
    const hf = project(w);
    const gg = project(toLlamaCppRopeOrder(w, rows, heads));
    const hfRotated = new Float64Array(rows);
    const ggRotated = new Float64Array(rows);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < D / 2; i++) {
        const [c, s] = [Math.cos(angle(i)), Math.sin(angle(i))];
        const [a, b] = [hf[h * D + i], hf[h * D + i + D / 2]]; // rotate_half
        hfRotated[h * D + i] = a * c - b * s;
        hfRotated[h * D + i + D / 2] = b * c + a * s;
        const [p, q] = [gg[h * D + 2 * i], gg[h * D + 2 * i + 1]]; // neighbours
        ggRotated[h * D + 2 * i] = p * c - q * s;
        ggRotated[h * D + 2 * i + 1] = q * c + p * s;
      }
    }
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < D / 2; i++) {
        expect(ggRotated[h * D + 2 * i]).toBeCloseTo(hfRotated[h * D + i], 5);
        expect(ggRotated[h * D + 2 * i + 1]).toBeCloseTo(hfRotated[h * D + i + D / 2], 5);
      }
    }
  });
});

/** A GGUF file's metadata and tensors, to write again changed. */
async function readGguf(path: string): Promise<{ metadata: Record<string, GgufValue>; tensors: Record<string, GgufTensorToWrite> }> {
  const file = await GgufFile.open(path);
  try {
    const tensors: Record<string, GgufTensorToWrite> = {};
    for (const info of file.tensors.values()) {
      const data = new Uint8Array(info.bytes);
      await file.readInto(info.name, 0, data);
      tensors[info.name] = { type: info.type.name, dims: info.dims, data };
    }
    return { metadata: Object.fromEntries(file.metadata), tensors };
  } finally {
    await file.close();
  }
}

describe("a GGUF pair this runtime cannot run, or was given wrongly", async () => {
  const gpu = await testGpu();
  const root = await ggufGolden("tiny-llava-a", "f32");
  const text = join(root, "model", "model-f32.gguf");
  const mmproj = join(root, "model", "mmproj-f16.gguf");
  const original = { text: await readGguf(text), mmproj: await readGguf(mmproj) };
  const dir = await mkdtemp(join(tmpdir(), "gguf-bad-"));
  let count = 0;
  /** Writes a changed copy of the text model (or the mmproj) and returns its path. */
  async function changed(which: "text" | "mmproj", change: (file: { metadata: Record<string, GgufValue>; tensors: Record<string, GgufTensorToWrite> }) => void): Promise<string> {
    const copy = { metadata: { ...original[which].metadata }, tensors: { ...original[which].tensors } };
    change(copy);
    const path = join(dir, `${which}-${count++}.gguf`);
    await writeFile(path, encodeGguf(copy));
    return path;
  }
  const loadError = (model: string, mmprojPath?: string) => loadLlava(model, { gpu, dtype: "f32", mmproj: mmprojPath }).then(
    (m) => {
      m.dispose();
      throw new Error("loaded");
    },
    (e: Error) => e.message,
  );

  it("names the metadata key that says what is not supported", async () => {
    const badText = (change: Parameters<typeof changed>[1]) => changed("text", change).then((t): [string, string] => [t, mmproj]);
    const badMmproj = (change: Parameters<typeof changed>[1]) => changed("mmproj", change).then((m): [string, string] => [text, m]);
    const cases: [[string, string], string][] = [
      [await badText((f) => (f.metadata["general.architecture"] = { type: "STRING", value: "qwen2" })), `metadata 'general.architecture' is "qwen2"; only llama`],
      [await badText((f) => (f.metadata["llama.rope.scaling.type"] = { type: "STRING", value: "yarn" })), `metadata 'llama.rope.scaling.type' "yarn": RoPE scaling is not supported`],
      [await badText((f) => delete f.metadata["llama.block_count"]), `metadata 'llama.block_count' is missing`],
      [await badText((f) => (f.metadata["llama.attention.head_count"] = { type: "STRING", value: "4" })), `metadata 'llama.attention.head_count' must be a non-negative integer`],
      [await badText((f) => (f.metadata["llama.attention.head_count_kv"] = { type: "UINT32", value: 3 })), `metadata 'llama.attention.head_count_kv' `],
      [await badMmproj((f) => (f.metadata["clip.projector_type"] = { type: "STRING", value: "ldp" })), `metadata 'clip.projector_type' is "ldp"; only LLaVA's MLP projector`],
      [await badMmproj((f) => (f.metadata["clip.vision.image_grid_pinpoints"] = { type: "ARRAY", value: { itemType: "INT32", values: [336, 672] } })), "LLaVA-NeXT's image tiling"],
      [await badMmproj((f) => (f.metadata["clip.vision.feature_layer"] = { type: "ARRAY", value: { itemType: "INT32", values: [1, 2] } })), "features from several layers are not supported"],
      [await badMmproj((f) => (f.metadata["clip.vision.image_mean"] = { type: "ARRAY", value: { itemType: "FLOAT32", values: [0.5] } })), "metadata 'clip.vision.image_mean' must hold 3 values"],
    ];
    for (const [[model, projector], message] of cases) {
      const got = await loadError(model, projector);
      expect(got, `${model} with ${projector}`).toContain(message);
      expect(got).toContain(model === text ? projector : model); // the file that holds the key is named
    }
    // The mmproj given as the model, and the two swapped.
    expect(await loadError(mmproj)).toContain("this is an mmproj file");
    expect(await loadError(mmproj, text)).toContain("were --model and --mmproj given the other way round?");
  });

  it("refuses a tensor type it has no kernel for, listing those it has", async () => {
    // Q2_K rows of 256: blk.0.ffn_down [64, 128] becomes a [32, 256] Q2_K matrix of 84-byte blocks.
    const path = await changed("text", (f) => (f.tensors["blk.0.ffn_down.weight"] = { type: "Q2_K", dims: [256, 32], data: new Uint8Array(84 * 32) }));
    const message = await loadError(path, mmproj);
    expect(message).toContain("blk.0.ffn_down.weight");
  });

  it("reads the older converter's vision MLP names (ffn_up and ffn_down swapped) by shape, and says so", async () => {
    const swapped = await changed("mmproj", (f) => {
      for (const name of Object.keys(f.tensors)) {
        const m = /^v\.blk\.(\d+)\.ffn_(up|down)\.(weight|bias)$/.exec(name);
        if (m && m[2] === "up") {
          const other = `v.blk.${m[1]}.ffn_down.${m[3]}`;
          [f.tensors[name], f.tensors[other]] = [f.tensors[other], f.tensors[name]];
        }
      }
    });
    const folder = await mkdtemp(join(root, "swapped-"));
    await cp(join(root, "inputs.safetensors"), join(folder, "inputs.safetensors"));
    await cp(join(root, "golden.safetensors"), join(folder, "golden.safetensors"));
    await mkdir(join(folder, "model"));
    await cp(text, join(folder, "model", "model.gguf"));
    await cp(swapped, join(folder, "model", "mmproj.gguf"));
    const report = await verifyFolder(folder, { dtype: "f32", gpu });
    expect(report.ok).toBe(true);
    const model = await loadLlava(join(folder, "model"), { gpu, dtype: "f32" });
    expect(model.loadReport.warnings.join("\n")).toContain("ffn_up and ffn_down are named the other way round");
    model.dispose();
  });

  it("finds the pair in a folder, and refuses a folder holding two text models", async () => {
    const folder = await mkdtemp(join(dir, "two-"));
    await cp(text, join(folder, "a.gguf"));
    await cp(text, join(folder, "b.gguf"));
    await cp(mmproj, join(folder, "mmproj.gguf"));
    expect(await loadError(folder)).toContain("holds 2 GGUF text models (a.gguf, b.gguf): pass the one to load");
  });
});

describe("an Ollama model", async () => {
  const gpu = await testGpu();

  it("loads by name through OLLAMA_MODELS, the blobs found by their media types", async () => {
    const root = await ggufGolden("tiny-llava-a", "q8_0");
    const models = await mkdtemp(join(tmpdir(), "ollama-"));
    await mkdir(join(models, "blobs"));
    const layers = [];
    for (const [file, mediaType] of [["model-q8_0.gguf", "application/vnd.ollama.image.model"], ["mmproj-f16.gguf", "application/vnd.ollama.image.projector"]]) {
      const bytes = await readFile(join(root, "model", file));
      const digest = createHash("sha256").update(bytes).digest("hex");
      await writeFile(join(models, "blobs", `sha256-${digest}`), bytes);
      layers.push({ mediaType, digest: `sha256:${digest}`, size: bytes.byteLength });
    }
    const manifest = { schemaVersion: 2, mediaType: "application/vnd.docker.distribution.manifest.v2+json", config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: `sha256:${"0".repeat(64)}`, size: 2 }, layers };
    const manifestDir = join(models, "manifests", "registry.ollama.ai", "library", "tiny-llava");
    await mkdir(manifestDir, { recursive: true });
    await writeFile(join(manifestDir, "latest"), JSON.stringify(manifest));
    const before = process.env.OLLAMA_MODELS;
    process.env.OLLAMA_MODELS = models;
    try {
      const byName = await loadLlava("ollama:tiny-llava", { gpu, dtype: "f32" });
      const byManifest = await loadLlava(join(manifestDir, "latest"), { gpu, dtype: "f32" });
      try {
        for (const model of [byName, byManifest]) {
          expect(model.vision).not.toBeNull();
          expect(model.loadReport.weightTypes.Q8_0).toBeGreaterThan(0);
        }
        const [a, b] = [await greedyLogits(byName, root, 2), await greedyLogits(byManifest, root, 2)];
        expect(a).toEqual(b);
      } finally {
        byName.dispose();
        byManifest.dispose();
      }
      await expect(loadLlava("ollama:tiny-llava:13b", { gpu })).rejects.toThrow(/ollama:tiny-llava:latest/);
    } finally {
      if (before === undefined) delete process.env.OLLAMA_MODELS;
      else process.env.OLLAMA_MODELS = before;
    }
  });
});

describe("a converted model, through loadModel", async () => {
  const gpu = await testGpu();

  it("tokenizes as llama.cpp, preprocesses as its Hugging Face folder, and generates the same ids", async () => {
    const hf = await mkdtemp(join(tmpdir(), "random-llava-"));
    await randomLlavaFolder(hf);
    const out = await mkdtemp(join(tmpdir(), "random-llava-gguf-"));
    const report = await convertToGguf(hf, { dtype: "f32", out: join(out, "model.gguf"), mmprojOut: join(out, "mmproj.gguf") });
    expect(report.notes).toEqual([]);
    const image = join(out, "photo.png");
    await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toFile(image);
    const [fromHf, fromGguf] = [await loadModel(hf, { gpu, dtype: "f32" }), await loadModel(join(out, "model.gguf"), { gpu, dtype: "f32" })];
    try {
      const tokenizer = fromGguf.tokenizer!;
      expect(tokenizer.description).toContain("GGUF");
      expect([tokenizer.idOf("<image>"), tokenizer.idOf("<pad>"), tokenizer.bosId, tokenizer.eosId]).toEqual([32000, 32001, 1, 2]);
      // llama.cpp puts a space after each special token, as transformers' legacy=true does (llava-1.5-hf is legacy=false).
      expect(tokenizer.encode("USER: <image>\nWhat is this? ASSISTANT:")).toEqual(fromHf.tokenizer!.encode("USER: <image>\nWhat is this? ASSISTANT:").toSpliced(6, 0, 29871));
      // (The mmproj holds the mean and std as FLOAT32, as llama.cpp's converter writes them.)
      const [h, g] = [fromHf.preprocessor!, fromGguf.preprocessor!];
      expect([g.imageMean, g.imageStd, g.cropSize, g.size]).toEqual([h.imageMean.map(Math.fround), h.imageStd.map(Math.fround), h.cropSize, h.size]);
      const promptIds = fromHf.tokenizer!.encode("USER: <image>\nWhat is this? ASSISTANT:");
      const request = { promptIds, images: [image], maxNewTokens: 8 };
      const [a, b] = [await fromHf.complete(request), await fromGguf.complete(request)];
      expect(b.tokens).toEqual(a.tokens);
      expect((await fromGguf.complete({ messages: [{ role: "user", content: "What is this?", images: [image] }], maxNewTokens: 4 })).tokens).toHaveLength(4);
    } finally {
      fromGguf.dispose();
      fromHf.dispose();
    }
  });
});

describe("quantizing while loading", async () => {
  const gpu = await testGpu();

  it("packs the decoder's matrices whose rows are whole blocks, keeps the rest in floats, and refuses an unknown type", async () => {
    const folder = join(GOLDEN, "tiny-llava-a", "model");
    const model = await loadLlava(folder, { gpu, dtype: "f32", quantize: "Q4_1" });
    try {
      // Decoder: embed_tokens, lm_head, 2 layers × 7 matrices; everything else (norms, vision, projector) f32.
      expect(model.loadReport.weightTypes.Q4_1).toBe(16);
      expect(model.loadReport.weightTypes.f32).toBeGreaterThan(16);
    } finally {
      model.dispose();
    }
    await expect(loadLlava(folder, { gpu, quantize: "Q3_K" as never })).rejects.toThrow(/quantize must be one of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, not "Q3_K"/);
    await expect(loadLlava(folder, { gpu, quantizeVision: "IQ4_NL" as never })).rejects.toThrow(/quantizeVision must be one of Q8_0, .*, not "IQ4_NL"/);
  });

  it("packs the vision tower's and projector's matrices too when asked (a quantized mmproj): image features within Q8_0's rounding", async () => {
    const folder = join(GOLDEN, "tiny-llava-a");
    const model = await loadLlava(join(folder, "model"), { gpu, dtype: "f32", quantizeVision: "Q8_0" });
    const golden = await SafetensorsFile.open(join(folder, "golden.safetensors"));
    const inputs = await SafetensorsFile.open(join(folder, "inputs.safetensors"));
    try {
      // The one layer the projector's layer -2 needs (of 2): 6 matrices, and the projector's 2; the
      // patch and position embeddings, norms and the decoder stay f32.
      expect(model.loadReport.weightTypes.Q8_0).toBe(6 + 2);
      const pixels = await inputs.readFloat32("pixel_values");
      const size = pixels.shape.slice(1).reduce((n, d) => n * d, 1);
      const reference = (await golden.readFloat32("projector_output")).data;
      const ours: number[] = [];
      for (let i = 0; i < pixels.shape[0]; i++) {
        const features = model.encodeImage(gpu.tensor(pixels.data.subarray(i * size, (i + 1) * size), pixels.shape.slice(1)));
        ours.push(...(await features.read()));
        features.dispose();
      }
      // Q8_0 rounds each weight to within half a step of its block's scale (max |w| / 127): for
      // Gaussian weights in blocks of 32 an RMS error of about 0.6% of a weight's, so each product
      // moves by about 0.6% of its size. After a layer and the projector's two products the
      // features stay within 3% of their largest value (measured 1.6%), not within f32's 1e-4.
      const largest = Math.max(...reference.map(Math.abs));
      const worst = Math.max(...ours.map((v, i) => Math.abs(v - reference[i])));
      expect(ours.length).toBe(reference.length);
      expect(worst / largest).toBeLessThan(3e-2);
      expect(worst / largest).toBeGreaterThan(1e-6); // the weights really were rounded
    } finally {
      model.dispose();
      await golden.close();
      await inputs.close();
    }
  });
});

describe("a quantized mmproj", async () => {
  const gpu = await testGpu();

  it("convert --vision-dtype q8_0 writes the tower's matrices in Q8_0 (not its embeddings), and they load as quantizing on load makes them", async () => {
    const root = await ggufGolden("tiny-llava-a", "q8_0", "q8_0");
    const mmproj = await GgufFile.open(join(root, "model", "mmproj-q8_0.gguf"));
    try {
      expect(mmproj.entry("v.blk.0.attn_q.weight").type.name).toBe("Q8_0");
      expect(mmproj.entry("mm.0.weight").type.name).toBe("Q8_0");
      expect(mmproj.entry("v.patch_embd.weight").type.name).toBe("F16");
      expect(mmproj.entry("v.position_embd.weight").type.name).toBe("F16");
      expect(mmproj.entry("v.blk.0.ln1.weight").type.name).toBe("F32");
    } finally {
      await mmproj.close();
    }
    // The vision tower's quantized kernels compute the f32 model of the dequantized weights.
    const converted = await loadLlava(join(root, "model"), { dtype: "f32", gpu });
    const reference = await loadLlava(await dequantizedFolder(join(root, "model"), join(GOLDEN, "tiny-llava-a", "model")), { dtype: "f32", gpu });
    try {
      // As quantizing while loading picks them: the decoder's 16 matrices and the tower's 8.
      const onLoad = await loadLlava(join(GOLDEN, "tiny-llava-a", "model"), { dtype: "f32", gpu, quantize: "Q8_0", quantizeVision: "Q8_0" });
      expect(converted.loadReport.weightTypes.Q8_0).toBe(onLoad.loadReport.weightTypes.Q8_0);
      expect(converted.loadReport.weightTypes.Q8_0).toBe(16 + 8);
      onLoad.dispose();
      expectSameGreedy(await greedyLogits(reference, join(GOLDEN, "tiny-llava-a"), 4), await greedyLogits(converted, root, 4));
    } finally {
      converted.dispose();
      reference.dispose();
    }
  });
});

describe("K-quants of a model whose rows are whole 256-element blocks", async () => {
  const gpu = await testGpu();
  const config = {
    model_type: "llava",
    image_token_index: 299,
    text_config: { model_type: "llama", vocab_size: 300, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 },
    vision_config: { model_type: "clip_vision_model", image_size: 16, patch_size: 8, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2 },
  };
  const hf = await mkdtemp(join(tmpdir(), "kquant-hf-"));
  await writeRandomCheckpoint(hf, config, { seed: 3, scale: 0.5 });
  /** Inputs for greedyLogits: a prompt with the image token `image` at position 3, and an image. */
  async function inputs(image: number): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "kquant-inputs-"));
    const ids = [1, 17, 42, image, 7, 99, 250, 13, 5, 61];
    const random = rng(11);
    await writeSafetensors(join(dir, "inputs.safetensors"), {
      input_ids: { dtype: "I64", shape: [1, ids.length], data: BigInt64Array.from(ids, BigInt) },
      pixel_values: { dtype: "F32", shape: [1, 3, 16, 16], data: Float32Array.from({ length: 3 * 16 * 16 }, () => random() * 2 - 1) },
    });
    return dir;
  }
  const [hfInputs, ggufInputs] = [await inputs(299), await inputs(300)];

  for (const dtype of ["q4_k", "q5_k", "q6_k"] as const) {
    it(`${dtype}: the quantized kernels compute the f32 model of the dequantized weights`, async () => {
      const out = await mkdtemp(join(tmpdir(), `kquant-${dtype}-`));
      await convertToGguf(hf, { dtype, out: join(out, `model-${dtype}.gguf`), mmprojOut: join(out, "mmproj-f16.gguf") });
      const text = await GgufFile.open(join(out, `model-${dtype}.gguf`));
      for (const name of ["token_embd.weight", "blk.0.attn_k.weight", "blk.1.ffn_down.weight", "output.weight"]) expect(text.entry(name).type.name, name).toBe(dtype.toUpperCase());
      await text.close();
      const reference = await loadLlava(await dequantizedFolder(out, hf), { dtype: "f32", gpu });
      const quantized = await loadLlava(out, { dtype: "f32", gpu });
      try {
        expectSameGreedy(await greedyLogits(reference, hfInputs, 4), await greedyLogits(quantized, ggufInputs, 4));
      } finally {
        quantized.dispose();
        reference.dispose();
      }
    });
  }
});

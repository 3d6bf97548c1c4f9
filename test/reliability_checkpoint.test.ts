/**
 * Checkpoints that disagree with their config, hold non-finite weights, or are not model
 * folders at all: each is refused, or warned about, by name, before it can answer garbage.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { loadModelFrom } from "../src/cli/model_options.js";
import { loadLlava } from "../src/models/llava.js";
import { NonFiniteWeightError } from "../src/models/load.js";
import { CheckpointError } from "../src/weights/checkpoint.js";
import { GgufError } from "../src/weights/gguf.js";
import { WeightNameError } from "../src/weights/names.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../src/weights/safetensors_writer.js";
import { testGpu } from "./helpers.js";
import { TINY_LLAVA, withText, withVision, writeRandomCheckpoint } from "./random_checkpoint.js";

const root = await mkdtemp(join(tmpdir(), "wgsl-vlm-reliability-checkpoint-"));
afterAll(() => rm(root, { recursive: true, force: true }));


let folders = 0;
/**
 * A random checkpoint of `config` in a fresh folder, with the whole vision tower as a real one
 * stores it (writeRandomCheckpoint leaves out what LLaVA does not read: the last vision layer,
 * post_layernorm); `edit` may change its tensors (by checkpoint name) before they are written.
 */
async function checkpoint(config: Record<string, unknown>, edit?: (tensors: Record<string, TensorToWrite>) => void): Promise<string> {
  const dir = join(root, `model-${folders++}`);
  await writeRandomCheckpoint(dir, config);
  const file = await SafetensorsFile.open(join(dir, "model.safetensors"));
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of file.tensors.keys()) tensors[name] = { dtype: "F32", ...(await file.readFloat32(name)) };
  await file.close();
  const vision = "vision_tower.vision_model.";
  for (const [name, t] of Object.entries(tensors)) {
    if (name.startsWith(`${vision}encoder.layers.0.`)) tensors[name.replace("layers.0.", "layers.1.")] ??= t;
  }
  for (const p of ["weight", "bias"]) tensors[`${vision}post_layernorm.${p}`] ??= { dtype: "F32", shape: [16], data: new Float32Array(16).fill(1) };
  edit?.(tensors);
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  return dir;
}

/** Writes `config` as config.json over the folder's (the checkpoint was made for another config). */
async function rewriteConfig(dir: string, config: object): Promise<void> {
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
}

/** The error loading `dir` fails with. */
async function loadError(dir: string, options = {}): Promise<Error> {
  const gpu = await testGpu();
  const model = await loadLlava(dir, { gpu, dtype: "f32", ...options }).catch((e: Error) => e);
  if (!(model instanceof Error)) {
    model.dispose();
    throw new Error(`${dir} loaded, but should not have`);
  }
  return model;
}

describe("a config and its checkpoint disagreeing", async () => {
  const gpu = await testGpu();

  it("loads a matching checkpoint without a warning (the vision layer after vision_feature_layer -2 is not one)", async () => {
    const model = await loadLlava(await checkpoint(TINY_LLAVA), { gpu, dtype: "f32" });
    try {
      expect(model.loadReport.warnings).toEqual([]);
      expect(model.loadReport.unusedTensors.map((u) => u.checkpointName)).toContain("vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight");
    } finally {
      model.dispose();
    }
  });

  it("refuses a config that runs fewer decoder or vision layers than the checkpoint stores", async () => {
    const decoder = await checkpoint(TINY_LLAVA);
    await rewriteConfig(decoder, withText({ num_hidden_layers: 1 }));
    const e = await loadError(decoder);
    expect(e).toBeInstanceOf(WeightNameError);
    expect(e.message).toContain(`${decoder}: the checkpoint holds 2 decoder layers, but the config's text_config.num_hidden_layers is 1`);

    const vision = await checkpoint(TINY_LLAVA);
    await rewriteConfig(vision, withVision({ num_hidden_layers: 1 }));
    expect((await loadError(vision)).message).toContain("the checkpoint holds 2 vision layers, but the config's vision_config.num_hidden_layers is 1");
  });

  it("says so when a config asks for more layers than the checkpoint stores", async () => {
    const dir = await checkpoint(TINY_LLAVA);
    await rewriteConfig(dir, withText({ num_hidden_layers: 5 }));
    const e = await loadError(dir);
    expect(e.message).toMatch(/27 tensors missing or misshapen/);
    expect(e.message).toContain("the checkpoint holds 2 decoder layers, but the config's text_config.num_hidden_layers is 5");
  });

  it("warns about a separate lm_head stored although the config ties it, and about tensors that are not part of the model", async () => {
    const dir = await checkpoint(TINY_LLAVA, (tensors) => {
      tensors["language_model.model.layers.0.self_attn.q_proj.bias"] = { dtype: "F32", shape: [32], data: new Float32Array(32) };
      tensors["image_newline"] = { dtype: "F32", shape: [32], data: new Float32Array(32) };
    });
    await rewriteConfig(dir, withText({ tie_word_embeddings: true }));
    const model = await loadLlava(dir, { gpu, dtype: "f32" });
    try {
      const [tied, strangers] = model.loadReport.warnings;
      expect(model.loadReport.warnings).toHaveLength(2);
      expect(tied).toContain(`${dir}: the config says tie_word_embeddings: true, but the checkpoint stores a separate language_model.lm_head.weight`);
      expect(strangers).toContain("2 tensors are not part of this llava model and are ignored: ");
      expect(strangers).toContain("image_newline");
      expect(strangers).toContain("language_model.model.layers.0.self_attn.q_proj.bias");
    } finally {
      model.dispose();
    }
  });

  it("prints the warnings on stderr when the CLI loads the model, --quiet or not", async () => {
    const dir = await checkpoint(TINY_LLAVA, (tensors) => {
      tensors["extra.weight"] = { dtype: "F32", shape: [2], data: new Float32Array(2) };
    });
    let stderr = "";
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
    try {
      const model = await loadModelFrom({ model: dir, dtype: "f32", quiet: true });
      model.dispose();
    } finally {
      spy.mockRestore();
    }
    expect(stderr).toBe(`warning: ${dir}: 1 tensor is not part of this llava model and is ignored: extra.weight\n`);
  });

  it("hints at tie_word_embeddings when lm_head is missing", async () => {
    const dir = await checkpoint(withText({ tie_word_embeddings: true }));
    await rewriteConfig(dir, TINY_LLAVA);
    const e = await loadError(dir);
    expect(e.message).toContain("language_model.lm_head.weight: missing (expected shape [100, 32]); if the LM head is tied to embed_tokens, the config should say tie_word_embeddings: true");
  });
});

describe("non-finite weights", async () => {
  const gpu = await testGpu();

  it("are found at load, every offending tensor named with its count", async () => {
    const dir = await checkpoint(TINY_LLAVA, (tensors) => {
      (tensors["language_model.model.layers.1.mlp.down_proj.weight"].data as Float32Array)[17] = NaN;
      const fc1 = tensors["vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"].data as Float32Array;
      fc1[0] = Infinity;
      fc1[fc1.length - 1] = -Infinity;
      // A tensor the model does not use may hold anything.
      (tensors["vision_tower.vision_model.post_layernorm.weight"].data as Float32Array)[0] = NaN;
    });
    const before = gpu.memory().liveBytes;
    const e = await loadError(dir);
    expect(e).toBeInstanceOf(NonFiniteWeightError);
    expect(e.message).toContain(`${dir}: 2 weights hold NaN or infinite values as stored in f32`);
    expect(e.message).toMatch(/language_model\.model\.layers\.1\.mlp\.down_proj\.weight holds 1 NaN\/Inf value($|\n)/);
    expect(e.message).toContain("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight holds 2 NaN/Inf values");
    expect(e.message).not.toContain("post_layernorm");
    // The weights uploaded before the check are freed again.
    expect(gpu.memory().liveBytes).toBe(before);
  });

  it.runIf(gpu.hasF16)("names values that overflow f16 when stored as f16", async () => {
    const dir = await checkpoint(TINY_LLAVA, (tensors) => {
      (tensors["multi_modal_projector.linear_1.weight"].data as Float32Array)[3] = 1e5;
    });
    const model = await loadLlava(dir, { gpu, dtype: "f32" });
    model.dispose();
    const e = await loadError(dir, { dtype: "f16" });
    expect(e.message).toContain("multi_modal_projector.linear_1.weight holds 1 NaN/Inf value (F32 values beyond ±65504 become Inf in f16");
  });
});

describe("what --model points at", () => {
  it("names a path that is not a model folder, saying what to pass", async () => {
    const model = await checkpoint(TINY_LLAVA);
    const cases: [string, string][] = [
      [join(root, "nowhere"), `${join(root, "nowhere")}: no such folder (expected a model folder holding config.json and model.safetensors)`],
      [join(model, "config.json"), `${join(model, "config.json")}: expected a model folder, got a file (pass the folder that holds config.json: ${model})`],
      [join(model, "model.safetensors"), `${join(model, "model.safetensors")}: expected a model folder, got a file (pass the folder that holds config.json: ${model})`],
    ];

    // The folder above the model: no config.json of its own, but a subfolder is a model.
    const parent = join(root, "parent");
    await mkdir(parent);
    await writeRandomCheckpoint(join(parent, "llava"), TINY_LLAVA);
    cases.push([parent, `${parent}: not a model folder: it has no config.json (its subfolder ${join(parent, "llava")} is a model folder)`]);

    // config.json but PyTorch weights.
    const pickles = join(root, "pickles");
    await mkdir(pickles);
    await writeFile(join(pickles, "config.json"), JSON.stringify(TINY_LLAVA));
    await writeFile(join(pickles, "pytorch_model.bin"), "");
    cases.push([pickles, `${pickles}: a model folder needs model.safetensors or model.safetensors.index.json, and has neither (PyTorch pickles (.bin, .pt) are not read`]);

    for (const [path, message] of cases) {
      const e = await loadError(path);
      expect(e, path).toBeInstanceOf(CheckpointError);
      expect(e.message).toContain(message);
    }

    // A .gguf file is read as llama.cpp's: a damaged one is an error of the GGUF reader.
    const gguf = join(root, "llava.Q4_K_M.gguf");
    await writeFile(gguf, "GGUF");
    const e = await loadError(gguf);
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message.startsWith(`${gguf}: `), e.message).toBe(true);
  });
});

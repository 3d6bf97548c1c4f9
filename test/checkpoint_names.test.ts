import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseConfig, type ModelConfig } from "../src/weights/config.js";
import { expectedTensors, resolveWeights, visionLayersUsed, WeightNameError, type TensorIndex } from "../src/weights/names.js";

/** A golden checkpoint's tensor names and shapes (from its copied header) and its config. */
function golden(model: string): { config: ModelConfig; json: Record<string, unknown>; shapes: Map<string, { shape: number[] }> } {
  const read = (file: string) => JSON.parse(readFileSync(new URL(`./fixtures/weights/${model}/${file}`, import.meta.url), "utf8"));
  const header = read("header.json") as Record<string, { shape: number[] }>;
  const shapes = new Map(Object.entries(header).filter(([k]) => k !== "__metadata__").map(([k, v]) => [k, { shape: v.shape }]));
  const json = read("config.json");
  return { config: parseConfig(json, model), json, shapes };
}

/** The same tensors under other names: each [from, to] prefix pair renames, other tensors are dropped. */
function renamed(shapes: Map<string, { shape: number[] }>, prefixes: [string, string][]): Map<string, { shape: number[] }> {
  const out = new Map<string, { shape: number[] }>();
  for (const [name, entry] of shapes) {
    const rule = prefixes.find(([from]) => name.startsWith(from));
    if (rule) out.set(rule[1] + name.slice(rule[0].length), entry);
  }
  return out;
}

const index = (tensors: Map<string, { shape: number[] }>, path = "ckpt"): TensorIndex => ({ path, tensors });

describe("tensor names", () => {
  it("finds every tensor of the golden LLaVA checkpoints and says why the rest are unused", () => {
    const a = golden("tiny-llava-a");
    const resolved = resolveWeights(a.config, index(a.shapes));
    expect(resolved.scheme).toMatch(/^llava-hf/);
    expect(resolved.projector).toBe("mlp");
    expect([...resolved.tensors.keys()].sort()).toEqual(expectedTensors(a.config).map((t) => t.name).sort());
    expect(resolved.tensors.get("text.layers.1.self_attn.k_proj.weight")).toEqual({
      name: "text.layers.1.self_attn.k_proj.weight", shape: [32, 64], checkpointName: "language_model.model.layers.1.self_attn.k_proj.weight",
    });
    expect(resolved.tensors.get("lm_head.weight")!.checkpointName).toBe("language_model.lm_head.weight");
    expect(resolved.tensors.get("projector.linear_2.bias")!.checkpointName).toBe("multi_modal_projector.linear_2.bias");
    // vision_feature_layer -2 of 2 layers: layer 0 runs, layer 1 and post_layernorm are never read.
    expect(a.config.kind === "llava" && visionLayersUsed(a.config)).toBe(1);
    const unused = Object.fromEntries(resolved.unused.map((u) => [u.checkpointName, u.why]));
    expect(Object.keys(unused).sort()).toEqual([...a.shapes.keys()].filter((n) => /encoder\.layers\.1\.|post_layernorm/.test(n)).sort());
    expect(unused["vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"]).toBe("vision layer 1 comes after vision_feature_layer -2");
    expect(unused["vision_tower.vision_model.post_layernorm.bias"]).toMatch(/before post_layernorm/);
    // Every tensor of the checkpoint is either used or explained.
    expect(resolved.tensors.size + resolved.unused.length).toBe(a.shapes.size);

    const b = golden("tiny-llava-b"); // tied embeddings, feature layer -1 of 3
    const rb = resolveWeights(b.config, index(b.shapes));
    expect(rb.tensors.has("lm_head.weight")).toBe(false);
    expect(rb.tensors.has("vision.encoder.layers.2.mlp.fc2.bias")).toBe(true);
    expect(rb.unused.map((u) => u.checkpointName).sort()).toEqual(["vision_tower.vision_model.post_layernorm.bias", "vision_tower.vision_model.post_layernorm.weight"]);

    const c = golden("text-only-c");
    expect(resolveWeights(c.config, index(c.shapes)).tensors.size).toBe(expectedTensors(c.config).length);
  });

  it("reads the newer transformers scheme to the same canonical tensors", () => {
    const a = golden("tiny-llava-a");
    const newer = renamed(a.shapes, [
      ["language_model.model.", "model.language_model."],
      ["language_model.lm_head.", "lm_head."],
      ["vision_tower.", "model.vision_tower."],
      ["multi_modal_projector.", "model.multi_modal_projector."],
    ]);
    const old = resolveWeights(a.config, index(a.shapes));
    const resolved = resolveWeights(a.config, index(newer));
    expect(resolved.scheme).toMatch(/4\.52/);
    expect([...resolved.tensors.keys()]).toEqual([...old.tensors.keys()]);
    expect(resolved.tensors.get("text.embed_tokens.weight")!.checkpointName).toBe("model.language_model.embed_tokens.weight");
    expect(resolved.tensors.get("lm_head.weight")!.checkpointName).toBe("lm_head.weight");
    expect(resolved.tensors.get("vision.pre_layrnorm.bias")!.checkpointName).toBe("model.vision_tower.vision_model.pre_layrnorm.bias");
    expect(resolved.tensors.get("projector.linear_1.weight")!.checkpointName).toBe("model.multi_modal_projector.linear_1.weight");
    expect(resolved.unused).toHaveLength(old.unused.length);
  });

  it("reads a LlamaForCausalLM and a CLIPVisionModel checkpoint alone", () => {
    const a = golden("tiny-llava-a");
    const llama = parseConfig({ model_type: "llama", ...(a.json.text_config as object) }, "llama");
    const llamaShapes = renamed(a.shapes, [["language_model.model.", "model."], ["language_model.lm_head.", "lm_head."]]);
    llamaShapes.set("model.layers.0.self_attn.rotary_emb.inv_freq", { shape: [8] });
    const rl = resolveWeights(llama, index(llamaShapes));
    expect(rl.scheme).toMatch(/LlamaForCausalLM/);
    expect(rl.tensors.size).toBe(expectedTensors(llama).length);
    expect(rl.tensors.get("text.norm.weight")!.checkpointName).toBe("model.norm.weight");
    expect(rl.unused).toEqual([{ checkpointName: "model.layers.0.self_attn.rotary_emb.inv_freq", why: "rotary frequencies are recomputed from rope_theta" }]);

    const clip = parseConfig({ model_type: "clip_vision_model", ...(a.json.vision_config as object) }, "clip");
    const clipShapes = renamed(a.shapes, [["vision_tower.vision_model.", "vision_model."]]);
    clipShapes.set("vision_model.embeddings.position_ids", { shape: [1, 17] });
    clipShapes.set("text_model.embeddings.token_embedding.weight", { shape: [10, 4] });
    const rc = resolveWeights(clip, index(clipShapes));
    // A CLIPVisionModel runs every layer and post_layernorm (its pooled output).
    expect(rc.tensors.size).toBe(clipShapes.size - 2);
    expect(rc.tensors.has("vision.encoder.layers.1.mlp.fc2.weight") && rc.tensors.has("vision.post_layernorm.weight")).toBe(true);
    expect(rc.unused).toEqual([
      { checkpointName: "vision_model.embeddings.position_ids", why: "position indices are recomputed" },
      { checkpointName: "text_model.embeddings.token_embedding.weight", why: "not part of the model" },
    ]);
  });

  it("names every missing and misshapen tensor, expected against found", () => {
    const a = golden("tiny-llava-a");
    const broken = new Map(a.shapes);
    broken.delete("language_model.model.layers.1.mlp.up_proj.weight");
    broken.delete("vision_tower.vision_model.embeddings.class_embedding");
    broken.set("multi_modal_projector.linear_1.weight", { shape: [32, 64] });
    broken.set("language_model.model.norm.weight", { shape: [64, 1] });
    let error: unknown;
    try {
      resolveWeights(a.config, index(broken, "/models/tiny"));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(WeightNameError);
    const message = (error as Error).message;
    expect(message).toMatch(/^\/models\/tiny: 4 tensors missing or misshapen for this llava config \(names as in llava-hf/);
    expect(message).toContain("language_model.model.layers.1.mlp.up_proj.weight: missing (expected shape [128, 64])");
    expect(message).toContain("vision_tower.vision_model.embeddings.class_embedding: missing (expected shape [32])");
    expect(message).toContain("multi_modal_projector.linear_1.weight: expected shape [64, 32], found [32, 64]");
    expect(message).toContain("language_model.model.norm.weight: expected shape [64], found [64, 1]");

    // An unused tensor may be anything, or absent.
    const pruned = new Map([...a.shapes].filter(([k]) => !/encoder\.layers\.1\.|post_layernorm/.test(k)));
    pruned.set("extra", { shape: [1] });
    expect(resolveWeights(a.config, index(pruned)).unused).toEqual([{ checkpointName: "extra", why: "not part of the model" }]);
    // A checkpoint of another model entirely: everything is missing, under the scheme that found the most.
    // (With no linear_2 found, the projector is taken to be LLaVA-1's single linear.)
    const all = expectedTensors(a.config, "linear").length;
    expect(() => resolveWeights(a.config, index(new Map([["foo.weight", { shape: [1] }]])))).toThrow(new RegExp(`: ${all} tensors missing or misshapen`));
  });

  it("follows the config: attention biases, tied lm_head, single-linear projector, feature layer, projector bias", () => {
    const a = golden("tiny-llava-a");
    const withBias = parseConfig({ ...a.json, text_config: { ...(a.json.text_config as object), attention_bias: true } }, "x");
    expect(() => resolveWeights(withBias, index(a.shapes))).toThrow(/8 tensors missing[^]*language_model\.model\.layers\.0\.self_attn\.k_proj\.bias: missing \(expected shape \[32\]\)/);
    const biased = new Map(a.shapes);
    for (let i = 0; i < 2; i++) {
      for (const [proj, n] of [["q_proj", 64], ["k_proj", 32], ["v_proj", 32], ["o_proj", 64]] as const) {
        biased.set(`language_model.model.layers.${i}.self_attn.${proj}.bias`, { shape: [n] });
      }
    }
    expect(resolveWeights(withBias, index(biased)).tensors.has("text.layers.1.self_attn.o_proj.bias")).toBe(true);
    // Biases the config does not ask for are ignored, as transformers ignores them.
    expect(resolveWeights(a.config, index(biased)).unused.filter((u) => u.why === "not part of the model")).toHaveLength(8);

    const tied = parseConfig({ ...a.json, text_config: { ...(a.json.text_config as object), tie_word_embeddings: true } }, "x");
    const rt = resolveWeights(tied, index(a.shapes));
    expect(rt.tensors.has("lm_head.weight")).toBe(false);
    expect(rt.unused).toContainEqual({ checkpointName: "language_model.lm_head.weight", why: "lm_head is tied to embed_tokens (tie_word_embeddings)" });

    const single = new Map([...a.shapes].filter(([k]) => !k.startsWith("multi_modal_projector.linear_2")));
    const rs = resolveWeights(a.config, index(single));
    expect(rs.projector).toBe("linear");
    expect([...rs.tensors.keys()].filter((k) => k.startsWith("projector."))).toEqual(["projector.linear_1.weight", "projector.linear_1.bias"]);

    const layer0 = parseConfig({ ...a.json, vision_feature_layer: 0 }, "x"); // the embeddings alone
    const r0 = resolveWeights(layer0, index(a.shapes));
    expect([...r0.tensors.keys()].some((k) => k.startsWith("vision.encoder."))).toBe(false);
    expect(r0.tensors.has("vision.pre_layrnorm.weight")).toBe(true);

    const noBias = parseConfig({ ...a.json, multimodal_projector_bias: false }, "x");
    expect(resolveWeights(noBias, index(a.shapes)).unused.map((u) => u.checkpointName)).toContain("multi_modal_projector.linear_1.bias");
  });
});

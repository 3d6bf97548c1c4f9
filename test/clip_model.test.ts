/**
 * CLIP's dual encoder against transformers (fixtures/golden/clip-a: CLIPModel, tiny, random):
 * every tensor its README lists, in f32 and f16; the embedding API over the same checkpoint;
 * and what a batch must not change.
 */
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadClip } from "../src/embed/clip.js";
import { loadClipModel } from "../src/models/clip_model.js";
import { poolingPosition } from "../src/models/clip_text.js";
import { loadLlava } from "../src/models/llava.js";
import { verifyFolder } from "../src/tools/verify.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { testGpu } from "./helpers.js";

const CLIP_A = join(import.meta.dirname, "fixtures", "golden", "clip-a");
const TEXTS = ["a photo of a cat", "Two dogs playing in the snow.", "diagram", "A RED CAR, parked at 10:45!"];
const EVERY_TENSOR = [
  "text_hidden_states", "text_last_hidden_state", "text_pooled_output", "text_pooled_index", "text_features", "text_embeds",
  "vision_embeddings", "vision_hidden_states", "vision_pooled_output", "image_features", "image_embeds", "logits_per_image", "logits_per_text",
];

describe("CLIP dual encoder, against transformers", async () => {
  const gpu = await testGpu();

  for (const dtype of ["f32", "f16"] as const) {
    it.skipIf(dtype === "f16" && !gpu.hasF16)(`verify clip-a in ${dtype}: every reference tensor within ${dtype === "f32" ? "1e-4" : "1e-2"}`, async () => {
      const report = await verifyFolder(CLIP_A, { dtype, gpu });
      expect(report.comparisons.map((c) => c.name).sort()).toEqual([...EVERY_TENSOR].sort());
      for (const c of report.comparisons) expect(c.ok, `${c.name}: relative ${c.relative} > ${c.tolerance}`).toBe(true);
      // f32 reaches ~1e-6 (summation order only): far inside its tolerance.
      if (dtype === "f32") for (const c of report.comparisons) expect(c.relative).toBeLessThan(1e-5);
      expect(report.ok).toBe(true);
    });
  }

  it("embedTexts tokenizes, pads and pools as transformers: the golden text_embeds, and a text alone equals it in a batch", async () => {
    const clip = await loadClip(join(CLIP_A, "model"), { gpu, dtype: "f32" });
    const golden = await SafetensorsFile.open(join(CLIP_A, "golden.safetensors"));
    try {
      const reference = (await golden.readFloat32("text_embeds")).data;
      const embeddings = await clip.embedTexts(TEXTS);
      expect(embeddings.map((e) => e.length)).toEqual([16, 16, 16, 16]);
      embeddings.forEach((e, i) => e.forEach((v, d) => expect(Math.abs(v - reference[i * 16 + d])).toBeLessThan(1e-5)));
      for (const e of embeddings) expect(Math.hypot(...e)).toBeCloseTo(1, 5);
      // Padding and the other texts of a batch change nothing.
      const [alone] = await clip.embedTexts([TEXTS[2]]);
      expect(Math.max(...alone.map((v, d) => Math.abs(v - embeddings[2][d])))).toBeLessThan(1e-6);
      expect(clip.temperature).toBeCloseTo(14.2849, 3);
    } finally {
      await golden.close();
      clip.dispose();
    }
  });

  it("classify scores labels by softmax over exp(logit_scale) · cosine, best first", async () => {
    const clip = await loadClip(join(CLIP_A, "model"), { gpu, dtype: "f32" });
    try {
      const dir = await mkdtemp(join(tmpdir(), "clip-classify-"));
      const sharp = (await import("sharp")).default;
      const image = join(dir, "red.png");
      await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 20, b: 20 } } }).png().toFile(image);
      const labels = ["a cat", "a dog", "a red car"];
      const scores = await clip.classify(image, labels, "a photo of {}");
      expect(scores.map((s) => s.label).sort()).toEqual([...labels].sort());
      expect(scores.reduce((n, s) => n + s.score, 0)).toBeCloseTo(1, 6);
      for (let i = 1; i < scores.length; i++) expect(scores[i - 1].score).toBeGreaterThanOrEqual(scores[i].score);
      // The same numbers by hand: embeddings, cosines, temperature, softmax.
      const [img] = await clip.embedImages([image]);
      const texts = await clip.embedTexts(labels.map((l) => `a photo of ${l}`));
      const logits = texts.map((t) => clip.temperature * t.reduce((n, v, d) => n + v * img[d], 0));
      const sum = logits.reduce((n, l) => n + Math.exp(l), 0);
      for (const s of scores) expect(s.score).toBeCloseTo(Math.exp(logits[labels.indexOf(s.label)]) / sum, 5);
      await expect(clip.classify(image, labels, "no slot")).rejects.toThrow(/has no \{\} for the label/);
      await expect(clip.classify(image, [])).rejects.toThrow(/at least one label/);
      await expect(clip.embedImages([join(dir, "missing.png")])).rejects.toThrow(/missing\.png/);
    } finally {
      clip.dispose();
    }
  });

  it("pools at argmax(ids) for the legacy eos_token_id 2, else at the first end token", () => {
    expect(poolingPosition([1512, 320, 1513, 1513], 2)).toBe(2);
    expect(poolingPosition([49406, 320, 49407, 49407], 49407)).toBe(2);
    expect(() => poolingPosition([49406, 320, 321], 49407)).toThrow(/hold no end token \(49407\)/);
  });

  it("refuses what it cannot run, by name", async () => {
    const model = await loadClipModel(join(CLIP_A, "model"), { gpu, dtype: "f32" });
    try {
      expect(() => model.textFeatures({ ids: [[1512, 9999, 1513]], lengths: [3] })).toThrow(/token id 9999 \(row 0\) is outside the vocabulary of 1514/);
      expect(() => model.textFeatures({ ids: [Array(78).fill(1513)], lengths: [78] })).toThrow(/78 tokens a row; this model reads 1 to 77/);
      expect(() => model.textFeatures({ ids: [[1512, 1513], [1512]], lengths: [2, 1] })).toThrow(/row 1 has 1 ids, row 0 2/);
    } finally {
      model.dispose();
    }
    await expect(loadLlava(join(CLIP_A, "model"), { gpu })).rejects.toThrow(/a CLIPModel checkpoint \(load it with loadClip\) has no language model/);
    await expect(loadClipModel(join(CLIP_A, "..", "..", "golden", "tiny-llava-a", "model"), { gpu })).rejects.toThrow(/a llava model, not a CLIP dual encoder/);
    // A config that disagrees with its checkpoint.
    const dir = await mkdtemp(join(tmpdir(), "clip-vocab-"));
    await cp(join(CLIP_A, "model"), dir, { recursive: true });
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    config.text_config.vocab_size = 1000;
    await writeFile(join(dir, "config.json"), JSON.stringify(config));
    await expect(loadClip(dir, { gpu })).rejects.toThrow(/text_model\.embeddings\.token_embedding\.weight: expected shape \[1000, 32\], found \[1514, 32\]/);
  });
});

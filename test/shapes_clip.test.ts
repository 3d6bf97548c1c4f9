/**
 * The bundled shapes CLIP (weights/shapes-clip): the runtime computes what PyTorch computed for
 * it (fixtures/shapes/clip_reference.json, made by weights/train/clip/reference.py), and it
 * really sees the shapes world: zero-shot choices and retrieval on fresh scenes.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadClip } from "../src/embed/clip.js";
import { evaluateClip } from "../src/shapes/clip_eval.js";
import { exampleRandom, renderScene, renderScenePng, sampleScene } from "../src/shapes/world.js";
import { testGpu } from "./helpers.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-clip");
const REFERENCE = join(import.meta.dirname, "fixtures", "shapes", "clip_reference.json");

interface Reference {
  texts: { text: string; input_ids: number[]; pooled_index: number; text_embeds: number[] }[];
  images: { seed: number; index: number; byte_sum: number; image_embeds: number[] }[];
  logit_scale: number;
}

const worst = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i])));

describe("the bundled shapes CLIP", async () => {
  const gpu = await testGpu();
  const clip = await loadClip(MODEL, { gpu, dtype: "f32" });
  const reference: Reference = JSON.parse(await readFile(REFERENCE, "utf8"));

  it("tokenizes and embeds as PyTorch does, texts and images (f32, within 1e-5)", async () => {
    expect(clip.model.logitScale).toBeCloseTo(reference.logit_scale, 6);
    for (const t of reference.texts) expect(clip.tokenizer.encode(t.text), t.text).toEqual(t.input_ids);
    const texts = await clip.embedTexts(reference.texts.map((t) => t.text));
    reference.texts.forEach((t, i) => expect(worst(texts[i], t.text_embeds), t.text).toBeLessThan(1e-5));
    const scenes = reference.images.map((r) => sampleScene(exampleRandom(r.seed, r.index)));
    // The same pixels the reference rendered, then through the runtime's own preprocessing.
    for (const [i, scene] of scenes.entries()) expect((await renderScene(scene)).data.reduce((n, x) => n + x, 0)).toBe(reference.images[i].byte_sum);
    const images = await clip.embedImages(await Promise.all(scenes.map(renderScenePng)));
    reference.images.forEach((r, i) => expect(worst(images[i], r.image_embeds), `image ${r.index}`).toBeLessThan(1e-5));
  });

  it("sees fresh scenes: descriptions among 8, the colour of a lone shape, text-to-image retrieval", async () => {
    const report = await evaluateClip(clip, { n: 150, seed: 7 });
    // Measured on 500 scenes of seed 7: 99.8%, 98.3%, recall@1 86.8% and @5 100%.
    expect(report.description.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(report.colour.total).toBeGreaterThan(20);
    expect(report.colour.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(report.retrieval.recallAt1).toBeGreaterThanOrEqual(0.7);
    expect(report.retrieval.recallAt5).toBeGreaterThanOrEqual(0.95);
  });
});

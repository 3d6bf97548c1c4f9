/**
 * How well a CLIP sees the shapes world (weights/shapes-clip), on fresh scenes of a seeded set:
 *
 *   description   each image against its own full description and 7 other scenes' (all
 *                 different texts): right when its own scores highest
 *   colour        scenes of one shape, against "a red shape", "an orange shape", ... (6)
 *   retrieval     each image's description as a query over all n images: recall@1 and @5,
 *                 an image counting as found when its description is the query (two scenes
 *                 may share one, differing only by jitter, size and background)
 *
 * Everything goes through the runtime (loadClip's batched embedding), so the figures are the
 * runtime's, not the training script's.
 */
import { performance } from "node:perf_hooks";
import { dot, type Clip } from "../embed/clip.js";
import { sceneDescription } from "./clip_texts.js";
import { COLOUR_NAMES, exampleRandom, renderScenePng, sampleScene, type Scene } from "./world.js";

export const DESCRIPTION_CHOICES = 8;

export interface ClipEvalReport {
  n: number;
  seed: number;
  description: { correct: number; total: number; accuracy: number };
  colour: { correct: number; total: number; accuracy: number };
  retrieval: { queries: number; recallAt1: number; recallAt5: number };
  seconds: number;
}

export interface ClipEvalOptions {
  n: number;
  seed: number;
  onProgress?: (line: string) => void;
}

/** Scene `index` of set `seed`, as the other evaluations draw them. */
function scene(seed: number, index: number): Scene {
  return sampleScene(exampleRandom(seed, index));
}

const article = (word: string) => (/^[aeiou]/.test(word) ? "an" : "a");

export async function evaluateClip(clip: Clip, options: ClipEvalOptions): Promise<ClipEvalReport> {
  const { n, seed } = options;
  if (!Number.isSafeInteger(n) || n < DESCRIPTION_CHOICES) throw new RangeError(`eval-clip: n must be an integer of at least ${DESCRIPTION_CHOICES}, not ${n}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`eval-clip: seed must be a non-negative integer, not ${seed}`);
  const progress = options.onProgress ?? (() => {});
  const started = performance.now();
  const scenes = Array.from({ length: n }, (_, i) => scene(seed, i));
  const descriptions = scenes.map(sceneDescription);
  progress(`rendering and embedding ${n} scenes`);
  const images = await clip.embedImages(await Promise.all(scenes.map(renderScenePng)));
  const distinct = [...new Set(descriptions)];
  const textOf = new Map(distinct.map((d, i) => [d, i]));
  const texts = await clip.embedTexts(distinct);
  const score = (image: number, description: string) => dot(images[image], texts[textOf.get(description)!]);

  // Description among 8: the 7 others are the next scenes' descriptions that differ from it and from each other.
  let described = 0;
  for (let i = 0; i < n; i++) {
    const choices = [descriptions[i]];
    for (let j = (i + 1) % n; choices.length < DESCRIPTION_CHOICES && j !== i; j = (j + 1) % n) {
      if (!choices.includes(descriptions[j])) choices.push(descriptions[j]);
    }
    const best = choices.reduce((a, b) => (score(i, b) > score(i, a) ? b : a));
    if (best === descriptions[i]) described++;
  }

  // The colour of a lone shape.
  const colourTexts = await clip.embedTexts(COLOUR_NAMES.map((c) => `${article(c)} ${c} shape`));
  const lone = scenes.map((s, i) => [s, i] as const).filter(([s]) => s.shapes.length === 1);
  let coloured = 0;
  for (const [s, i] of lone) {
    const scores = colourTexts.map((t) => dot(images[i], t));
    if (COLOUR_NAMES[scores.indexOf(Math.max(...scores))] === s.shapes[0].colour) coloured++;
  }

  // Text-to-image retrieval over all n images.
  let at1 = 0;
  let at5 = 0;
  for (let q = 0; q < n; q++) {
    const ranked = images.map((_, i) => i).sort((a, b) => score(b, descriptions[q]) - score(a, descriptions[q]) || a - b);
    const rank = ranked.findIndex((i) => descriptions[i] === descriptions[q]);
    if (rank < 1) at1++;
    if (rank < 5) at5++;
  }
  return {
    n,
    seed,
    description: { correct: described, total: n, accuracy: described / n },
    colour: { correct: coloured, total: lone.length, accuracy: lone.length ? coloured / lone.length : 0 },
    retrieval: { queries: n, recallAt1: at1 / n, recallAt5: at5 / n },
    seconds: (performance.now() - started) / 1000,
  };
}

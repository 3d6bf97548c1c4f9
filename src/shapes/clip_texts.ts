/**
 * The text side of the shapes CLIP (weights/shapes-clip): what can be said of a scene, as the
 * dual encoder is trained and evaluated on it.
 *
 *   description   A red circle at the top left and a blue square in the centre.
 *                 (describeScene from questions.ts: every shape, in reading order)
 *   phrases       short texts that are true of the scene, one family at a time:
 *     count          "two shapes"                   exactly that many shapes
 *     kind           "a circle"                     at least one circle
 *     kind count     "two circles"                  exactly two circles (only said for two or more)
 *     colour         "a red shape"                  at least one red shape
 *     colour count   "two red shapes"               exactly two (only said for two or more)
 *     pair           "a red circle"                 a shape of that colour and kind
 *     position       "a shape at the top left"      a shape in that cell
 *     kind at        "a circle at the top left"
 *     colour at      "a red shape at the top left"
 *     pair at        "a red circle at the top left"
 *     two pairs      "a red circle and a blue square"   two different shapes, either order
 *     two kinds      "a circle and a square"            two different kinds, either order
 *     two colours    "a red shape and a blue shape"     two different colours, either order
 *
 * scenePhrases() lists every phrase of every family that is true of a scene, so that a phrase
 * is true of a scene exactly when it is in that scene's list: training uses the lists to tell
 * which in-batch negatives are in fact true (and leaves them out of the contrastive loss).
 * sampleClipText() draws one training text, seeded. CLIP_WORDS is every word these texts use,
 * lower-cased and split as CLIP's tokenizer splits them (clipWords): the shapes CLIP's
 * vocabulary gives each of them one token.
 */
import { describeScene, NUMBER_WORDS, positionPhrase } from "./questions.js";
import { COLOUR_NAMES, pick, POSITIONS, positionOf, SHAPE_KINDS, type Random, type Scene, type Shape } from "./world.js";

export const PHRASE_FAMILIES = [
  "count",
  "kind",
  "kind count",
  "colour",
  "colour count",
  "pair",
  "position",
  "kind at",
  "colour at",
  "pair at",
  "two pairs",
  "two kinds",
  "two colours",
] as const;
export type PhraseFamily = (typeof PHRASE_FAMILIES)[number];

export interface Phrase {
  family: PhraseFamily;
  text: string;
}

/** "a" or "an", as the word needs. */
function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

const withArticle = (words: string) => `${article(words)} ${words}`;
const plural = (kind: string) => `${kind}s`;

/** The full description of a scene, as questions.ts writes it (capitalised, with a full stop). */
export function sceneDescription(scene: Scene): string {
  return describeScene(scene);
}

/** Shapes in reading order (rows top to bottom, left to right). */
function readingOrder(scene: Scene): Shape[] {
  return [...scene.shapes].sort((a, b) => a.cell - b.cell);
}

/**
 * Every phrase of every family that is true of the scene, without repeats, in a fixed order
 * (family by family, shapes in reading order). Two-part phrases come in both orders.
 */
export function scenePhrases(scene: Scene): Phrase[] {
  const shapes = readingOrder(scene);
  const out: Phrase[] = [];
  const seen = new Set<string>();
  const add = (family: PhraseFamily, text: string) => {
    if (seen.has(text)) return;
    seen.add(text);
    out.push({ family, text });
  };
  const kinds = SHAPE_KINDS.filter((k) => shapes.some((s) => s.kind === k));
  const colours = COLOUR_NAMES.filter((c) => shapes.some((s) => s.colour === c));
  const countOf = (test: (s: Shape) => boolean) => shapes.filter(test).length;

  add("count", `${NUMBER_WORDS[shapes.length]} ${shapes.length === 1 ? "shape" : "shapes"}`);
  for (const kind of kinds) add("kind", withArticle(kind));
  for (const kind of kinds) {
    const n = countOf((s) => s.kind === kind);
    if (n >= 2) add("kind count", `${NUMBER_WORDS[n]} ${plural(kind)}`);
  }
  for (const colour of colours) add("colour", `${withArticle(colour)} shape`);
  for (const colour of colours) {
    const n = countOf((s) => s.colour === colour);
    if (n >= 2) add("colour count", `${NUMBER_WORDS[n]} ${colour} shapes`);
  }
  for (const s of shapes) add("pair", withArticle(`${s.colour} ${s.kind}`));
  for (const s of shapes) add("position", `a shape ${positionPhrase(positionOf(s))}`);
  for (const s of shapes) add("kind at", `${withArticle(s.kind)} ${positionPhrase(positionOf(s))}`);
  for (const s of shapes) add("colour at", `${withArticle(s.colour)} shape ${positionPhrase(positionOf(s))}`);
  for (const s of shapes) add("pair at", `${withArticle(`${s.colour} ${s.kind}`)} ${positionPhrase(positionOf(s))}`);
  for (const a of shapes) {
    for (const b of shapes) if (a !== b) add("two pairs", `${withArticle(`${a.colour} ${a.kind}`)} and ${withArticle(`${b.colour} ${b.kind}`)}`);
  }
  for (const a of kinds) for (const b of kinds) if (a !== b) add("two kinds", `${withArticle(a)} and ${withArticle(b)}`);
  for (const a of colours) for (const b of colours) if (a !== b) add("two colours", `${withArticle(a)} shape and ${withArticle(b)} shape`);
  return out;
}

/** Every text that is true of the scene: its description first, then its phrases. */
export function trueTexts(scene: Scene): string[] {
  return [sceneDescription(scene), ...scenePhrases(scene).map((p) => p.text)];
}

/** How often sampleClipText gives the full description rather than a phrase. */
export const DESCRIPTION_SHARE = 0.5;

/**
 * One training text for the scene: the description with probability `descriptionShare`, else
 * a phrase, its family drawn uniformly among the families that have one for this scene, then
 * a phrase of that family (so the many "at" phrases of three-shape scenes do not crowd out
 * counts and colours).
 */
export function sampleClipText(scene: Scene, random: Random, descriptionShare = DESCRIPTION_SHARE): string {
  if (random() < descriptionShare) return sceneDescription(scene);
  const phrases = scenePhrases(scene);
  const family = pick(random, [...new Set(phrases.map((p) => p.family))]);
  return pick(random, phrases.filter((p) => p.family === family)).text;
}

/** `n` training texts for the scene, each drawn by sampleClipText (repeats allowed). */
export function sampleClipTexts(scene: Scene, random: Random, n: number, descriptionShare = DESCRIPTION_SHARE): string[] {
  return Array.from({ length: n }, () => sampleClipText(scene, random, descriptionShare));
}

/**
 * A text's words as CLIP's tokenizer splits them, after lower-casing: the pattern
 * 's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (so "." and "," are words).
 */
export function clipWords(text: string): string[] {
  const cleaned = text.replace(/\s+/g, " ").trim().toLowerCase();
  return cleaned.match(/'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu) ?? [];
}

/** Every word the shapes CLIP texts use (lower-cased), in a fixed order: the vocabulary's words. */
export const CLIP_WORDS: readonly string[] = [
  "a",
  "an",
  "the",
  "and",
  "at",
  "on",
  "in",
  ",",
  ".",
  "shape",
  "shapes",
  ...NUMBER_WORDS.slice(1),
  ...SHAPE_KINDS,
  ...SHAPE_KINDS.map(plural),
  ...COLOUR_NAMES,
  ...[...new Set(POSITIONS.flatMap((p) => p.split(" ")))],
];

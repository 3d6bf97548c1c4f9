/** The shapes CLIP's texts: descriptions, the phrases true of a scene, seeded sampling, the word list. */
import { describe, expect, it } from "vitest";
import { CLIP_WORDS, clipWords, PHRASE_FAMILIES, sampleClipText, sampleClipTexts, sceneDescription, scenePhrases, trueTexts } from "../src/shapes/clip_texts.js";
import { describeScene } from "../src/shapes/questions.js";
import { exampleRandom, sampleScene, seededRandom, type Scene, type Shape } from "../src/shapes/world.js";

function shape(kind: Shape["kind"], colour: Shape["colour"], cell: number): Shape {
  return { kind, colour, cell, x: 0, y: 0, size: 12 };
}
const scene = (...shapes: Shape[]): Scene => ({ size: 72, background: [255, 255, 255], shapes });

describe("shapes CLIP texts", () => {
  it("describes a scene as questions.ts does", () => {
    const s = scene(shape("square", "blue", 4), shape("circle", "red", 0));
    expect(sceneDescription(s)).toBe("A red circle at the top left and a blue square in the centre.");
    for (let i = 0; i < 50; i++) {
      const drawn = sampleScene(exampleRandom(3, i));
      expect(sceneDescription(drawn)).toBe(describeScene(drawn));
    }
  });

  it("lists every phrase true of a two-shape scene, two-part phrases in both orders", () => {
    const s = scene(shape("square", "blue", 4), shape("circle", "red", 0));
    expect(scenePhrases(s).map((p) => p.text)).toEqual([
      "two shapes",
      "a circle",
      "a square",
      "a red shape",
      "a blue shape",
      "a red circle",
      "a blue square",
      "a shape at the top left",
      "a shape in the centre",
      "a circle at the top left",
      "a square in the centre",
      "a red shape at the top left",
      "a blue shape in the centre",
      "a red circle at the top left",
      "a blue square in the centre",
      "a red circle and a blue square",
      "a blue square and a red circle",
      "a circle and a square",
      "a square and a circle",
      "a red shape and a blue shape",
      "a blue shape and a red shape",
    ]);
  });

  it("counts kinds and colours that come more than once, and uses 'an' before vowels", () => {
    const s = scene(shape("circle", "orange", 3), shape("circle", "red", 5), shape("diamond", "orange", 8));
    const texts = scenePhrases(s).map((p) => p.text);
    expect(texts).toContain("three shapes");
    expect(texts).toContain("two circles");
    expect(texts).toContain("two orange shapes");
    expect(texts).toContain("an orange circle on the left");
    expect(texts).toContain("a red shape on the right");
    expect(texts).toContain("an orange diamond at the bottom right");
    expect(texts).not.toContain("a circle and a circle");
    expect(texts).not.toContain("two diamonds");
    expect(texts.filter((t) => t.startsWith("one"))).toEqual([]);
    expect(scenePhrases(scene(shape("triangle", "green", 1))).map((p) => p.text)).toEqual([
      "one shape",
      "a triangle",
      "a green shape",
      "a green triangle",
      "a shape at the top",
      "a triangle at the top",
      "a green shape at the top",
      "a green triangle at the top",
    ]);
  });

  it("lists only true phrases: each one's claim checked against the scene", () => {
    for (let i = 0; i < 300; i++) {
      const s = sampleScene(exampleRandom(5, i));
      const phrases = scenePhrases(s);
      expect(new Set(phrases.map((p) => p.text)).size).toBe(phrases.length);
      for (const { family, text } of phrases) {
        expect(PHRASE_FAMILIES).toContain(family);
        const words = text.split(" ");
        const kinds = s.shapes.map((x) => x.kind as string);
        const colours = s.shapes.map((x) => x.colour as string);
        if (family === "kind") expect(kinds).toContain(words[1]);
        if (family === "colour") expect(colours).toContain(words[1]);
        if (family === "pair") expect(s.shapes.some((x) => x.colour === words[1] && x.kind === words[2])).toBe(true);
      }
      expect(trueTexts(s)[0]).toBe(sceneDescription(s));
    }
  });

  it("samples texts from a seed, descriptions about half the time, every text true", () => {
    const s = sampleScene(exampleRandom(1, 0));
    const a = sampleClipTexts(s, seededRandom(9), 400);
    expect(sampleClipTexts(s, seededRandom(9), 400)).toEqual(a);
    const truths = new Set(trueTexts(s));
    for (const text of a) expect(truths.has(text)).toBe(true);
    const descriptions = a.filter((t) => t === sceneDescription(s)).length;
    expect(descriptions).toBeGreaterThan(150);
    expect(descriptions).toBeLessThan(250);
    expect(sampleClipText(s, seededRandom(1), 1)).toBe(sceneDescription(s));
    expect(sampleClipText(s, seededRandom(1), 0)).not.toBe(sceneDescription(s));
  });

  it("splits words as CLIP does, and every word of every text is in CLIP_WORDS", () => {
    expect(clipWords("A red circle at the top left, a blue  square in the centre.")).toEqual([
      "a", "red", "circle", "at", "the", "top", "left", ",", "a", "blue", "square", "in", "the", "centre", ".",
    ]);
    expect(clipWords("it's 10 o'clock!")).toEqual(["it", "'s", "1", "0", "o", "'", "clock", "!"]);
    expect(new Set(CLIP_WORDS).size).toBe(CLIP_WORDS.length);
    const used = new Set<string>();
    for (let i = 0; i < 500; i++) for (const text of trueTexts(sampleScene(exampleRandom(2, i)))) for (const w of clipWords(text)) used.add(w);
    expect([...used].sort()).toEqual([...CLIP_WORDS].sort());
  });

  it("keeps every text within the 32-token context (with start and end tokens)", () => {
    for (let i = 0; i < 500; i++) {
      for (const text of trueTexts(sampleScene(exampleRandom(4, i)))) expect(clipWords(text).length + 2).toBeLessThanOrEqual(32);
    }
  });
});

/**
 * The shapes world: seeded scenes, their pictures, and questions whose answers are right by
 * construction. Answers are checked against an independent reading: the description sentence
 * is parsed back into (colour, kind, position) triples, every question is answered again from
 * those triples alone, and the pictures are checked to hold what the scene says.
 */
import { describe, expect, it } from "vitest";
import { evalExample, trainingImage } from "../src/shapes/examples.js";
import { describeScene, NUMBER_WORDS, QUESTION_TYPES, type QuestionAnswer } from "../src/shapes/questions.js";
import {
  BACKGROUNDS,
  cellCentre,
  COLOUR_NAMES,
  COLOURS,
  IMAGE_SIZE,
  MAX_JITTER,
  MAX_SHAPE_SIZE,
  MIN_SHAPE_SIZE,
  POSITIONS,
  renderScene,
  SHAPE_KINDS,
  type Scene,
} from "../src/shapes/world.js";

interface Triple {
  colour: string;
  kind: string;
  position: string;
}

/** The description sentence back into triples, by a grammar of its own. */
function parseDescription(sentence: string): Triple[] {
  expect(sentence).toMatch(/^[A-Z].*\.$/);
  const body = sentence.slice(0, -1).replace(/^A/, "a");
  const parts = body.split(/, | and /);
  const phrase = /^an? (\w+) (\w+) (?:at the (top left|top right|bottom left|bottom right|top|bottom)|on the (left|right)|in the (centre))$/;
  return parts.map((part) => {
    const m = phrase.exec(part);
    if (!m) throw new Error(`cannot parse '${part}' in '${sentence}'`);
    return { colour: m[1], kind: m[2], position: m[3] ?? m[4] ?? m[5] };
  });
}

/** The grid cell a triple's position names (positions are listed in cell order). */
const cellOf = (t: Triple) => (POSITIONS as readonly string[]).indexOf(t.position);

/** The answer to a question and the cells of the shapes it is about, worked out from the triples alone. */
function answerFrom(triples: Triple[], question: string): { answer: string; cells: number[] } {
  const about = (answer: string, found: Triple[]) => ({ answer, cells: found.map(cellOf) });
  const count = (found: Triple[]) => about(NUMBER_WORDS[found.length], found);
  const where = (phrase: string): string => {
    const m = /^(?:at the (.+)|on the (.+)|in the (centre))$/.exec(phrase);
    if (!m) throw new Error(`not a position phrase: ${phrase}`);
    return m[1] ?? m[2] ?? m[3];
  };
  let m: RegExpExecArray | null;
  if ((m = /^What colour is the (\w+)(?: (.+))?\?$/.exec(question))) {
    const [, kind, at] = m;
    const found = triples.filter((t) => t.kind === kind && (at === undefined || t.position === where(at)));
    expect(found).toHaveLength(1);
    return about(found[0].colour, found);
  }
  if ((m = /^Where is the (?:(\w+) )?(\w+)\?$/.exec(question))) {
    const [, colour, kind] = m;
    const found = triples.filter((t) => t.kind === kind && (colour === undefined || t.colour === colour));
    expect(found).toHaveLength(1);
    return about(found[0].position, found);
  }
  if (question === "How many shapes are there?") return count(triples);
  if ((m = /^How many (\w+) shapes are there\?$/.exec(question))) return count(triples.filter((t) => t.colour === m![1]));
  if ((m = /^How many (\w+)s are there\?$/.exec(question))) return count(triples.filter((t) => t.kind === m![1]));
  if ((m = /^Is there an? (?:(\w+) )?(\w+)\?$/.exec(question))) {
    const [, colour, kind] = m;
    const found = triples.filter((t) => t.kind === kind && (colour === undefined || t.colour === colour));
    return about(found.length > 0 ? "yes" : "no", found);
  }
  throw new Error(`unknown question: ${question}`);
}

function triplesOf(scene: Scene): Triple[] {
  return [...scene.shapes].sort((a, b) => a.cell - b.cell).map((s) => ({ colour: s.colour, kind: s.kind, position: POSITIONS[s.cell] }));
}

describe("shapes world", () => {
  it("is the same for the same seed and index, and different otherwise", () => {
    expect(evalExample(7, 3)).toEqual(evalExample(7, 3));
    expect(trainingImage(1, 5)).toEqual(trainingImage(1, 5));
    expect(evalExample(7, 3)).not.toEqual(evalExample(8, 3));
    expect(evalExample(7, 3).scene).not.toEqual(evalExample(7, 4).scene);
    // A pinned example, so that a change to the generator (which would silently change every
    // evaluation set and the training data) shows up here.
    const pinned = evalExample(7, 0);
    expect([pinned.question, pinned.answer, describeScene(pinned.scene)]).toEqual(["What colour is the circle?", "orange", "An orange circle in the centre."]);
  });

  it("makes scenes of 1 to 3 distinct shapes, in distinct cells, inside the image", () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 2000; i++) {
      const { scene } = evalExample(3, i);
      counts[scene.shapes.length]++;
      expect(BACKGROUNDS).toContainEqual(scene.background);
      expect(new Set(scene.shapes.map((s) => s.cell)).size).toBe(scene.shapes.length);
      expect(new Set(scene.shapes.map((s) => `${s.colour} ${s.kind}`)).size).toBe(scene.shapes.length);
      for (const s of scene.shapes) {
        const [cx, cy] = cellCentre(s.cell);
        expect(Math.abs(s.x - cx)).toBeLessThanOrEqual(MAX_JITTER);
        expect(Math.abs(s.y - cy)).toBeLessThanOrEqual(MAX_JITTER);
        expect(s.size).toBeGreaterThanOrEqual(MIN_SHAPE_SIZE);
        expect(s.size).toBeLessThanOrEqual(MAX_SHAPE_SIZE);
        expect(SHAPE_KINDS).toContain(s.kind);
        expect(COLOUR_NAMES).toContain(s.colour);
      }
    }
    expect(counts[0]).toBe(0);
    for (const n of [1, 2, 3]) expect(counts[n]).toBeGreaterThan(500);
  });

  it("takes the question types in turn for evaluation", () => {
    const types = Array.from({ length: 10 }, (_, i) => evalExample(11, i).type);
    expect(types).toEqual([...QUESTION_TYPES, ...QUESTION_TYPES]);
  });

  it("describes each scene in a sentence that names exactly its shapes", () => {
    for (let i = 0; i < 500; i++) {
      const { scene } = evalExample(5, i);
      expect(parseDescription(describeScene(scene))).toEqual(triplesOf(scene));
    }
  });

  it("gives every question the answer, and the cells it is about, that an independent reading of the scene gives", () => {
    const seen = new Map<string, Set<string>>();
    const check = (scene: Scene, { question, answer, cells }: QuestionAnswer) => {
      const triples = parseDescription(describeScene(scene));
      const sorted = (list: number[]) => [...list].sort((a, b) => a - b);
      if (question === "Describe the image.") {
        expect(parseDescription(answer)).toEqual(triples);
        expect(sorted(cells)).toEqual(sorted(triples.map(cellOf)));
      } else {
        const expected = answerFrom(triples, question);
        expect(answer, question).toBe(expected.answer);
        expect(sorted(cells), question).toEqual(sorted(expected.cells));
      }
      const kind = question.split(" ").slice(0, 2).join(" ");
      if (!seen.has(kind)) seen.set(kind, new Set());
      seen.get(kind)!.add(answer);
    };
    for (let i = 0; i < 1000; i++) {
      const example = evalExample(9, i);
      check(example.scene, example);
    }
    for (let i = 0; i < 200; i++) {
      const { scene, questions } = trainingImage(9, i);
      for (const qa of questions) check(scene, qa);
    }
    // Both answers of yes/no questions and every count and position occur.
    expect([...seen.get("Is there")!].sort()).toEqual(["no", "yes"]);
    expect([...seen.get("How many")!].sort()).toEqual([...NUMBER_WORDS].sort());
    expect([...seen.get("Where is")!].sort()).toEqual([...POSITIONS].sort());
  });

  it("draws each shape in its colour at its centre, inside its cell, and nothing in empty cells", async () => {
    const cellSize = IMAGE_SIZE / 3;
    for (let i = 0; i < 40; i++) {
      const { scene } = evalExample(13, i);
      const image = await renderScene(scene);
      expect([image.width, image.height]).toEqual([IMAGE_SIZE, IMAGE_SIZE]);
      const at = (x: number, y: number) => Array.from(image.data.subarray(3 * (y * image.width + x), 3 * (y * image.width + x) + 3));
      for (const s of scene.shapes) expect(at(Math.floor(s.x), Math.floor(s.y)), `${s.colour} ${s.kind} of scene ${i}`).toEqual([...COLOURS[s.colour]]);
      // Every pixel of a cell is background, except where that cell's own shape is drawn.
      const stray: string[] = [];
      for (let y = 0; y < IMAGE_SIZE; y++) {
        for (let x = 0; x < IMAGE_SIZE; x++) {
          const cell = Math.floor(y / cellSize) * 3 + Math.floor(x / cellSize);
          if (!scene.shapes.some((s) => s.cell === cell) && at(x, y).join() !== scene.background.join()) stray.push(`(${x}, ${y})`);
        }
      }
      expect(stray, `scene ${i}: pixels drawn outside their cell`).toEqual([]);
    }
  });
});

/**
 * Questions about a scene, with their one right answer, in five types:
 *
 *   colour       What colour is the triangle?                 red
 *   count        How many shapes are there? / How many circles are there? / How many blue shapes are there?
 *                                                            two
 *   presence     Is there a square? / Is there an orange diamond?
 *                                                            yes | no
 *   position     Where is the green circle?                   top left | top | ... | centre | ... | bottom right
 *   description  Describe the image.                          A red circle at the top left and a blue square in the centre.
 *
 * A shape is named as briefly as names it alone: by its kind when it is the only one of its
 * kind, else by kind and colour (a colour question names it by kind and position instead, so
 * that the question does not give the answer away). Scenes never hold two shapes of the same
 * kind and colour, so every shape can be named.
 */
import { COLOUR_NAMES, pick, positionOf, SHAPE_KINDS, type ColourName, type PositionName, type Random, type Scene, type Shape, type ShapeKind } from "./world.js";

export const QUESTION_TYPES = ["colour", "count", "presence", "position", "description"] as const;
export type QuestionType = (typeof QUESTION_TYPES)[number];

export interface QuestionAnswer {
  type: QuestionType;
  question: string;
  answer: string;
  /**
   * The grid cells of the shapes the answer is about: the named shape, the shapes counted, the
   * shapes that make a presence question's "yes" (none for "no"), every shape for a description.
   * Training uses them to show the decoder where to look.
   */
  cells: number[];
}

export const NUMBER_WORDS = ["zero", "one", "two", "three"] as const;

/** "a" or "an", as the word needs. */
function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** Where a shape is, as a sentence says it: "at the top left", "on the left", "in the centre". */
export function positionPhrase(position: PositionName): string {
  if (position === "centre") return "in the centre";
  if (position === "left" || position === "right") return `on the ${position}`;
  return `at the ${position}`;
}

function cellsOf(scene: Scene, test: (s: Shape) => boolean): number[] {
  return scene.shapes.filter(test).map((s) => s.cell);
}

function onlyOne(scene: Scene, test: (s: Shape) => boolean): boolean {
  return scene.shapes.filter(test).length === 1;
}

/** The shape named without its colour: "circle", or "circle at the top left" when there are several circles. */
export function nameWithoutColour(scene: Scene, shape: Shape): string {
  if (onlyOne(scene, (s) => s.kind === shape.kind)) return shape.kind;
  return `${shape.kind} ${positionPhrase(positionOf(shape))}`;
}

/** The shape named without its position: "circle", or "red circle" when there are several circles. */
export function nameWithoutPosition(scene: Scene, shape: Shape): string {
  if (onlyOne(scene, (s) => s.kind === shape.kind)) return shape.kind;
  return `${shape.colour} ${shape.kind}`;
}

/** One sentence: the shapes in reading order (rows top to bottom, left to right in a row). */
export function describeScene(scene: Scene): string {
  const parts = [...scene.shapes]
    .sort((a, b) => a.cell - b.cell)
    .map((s) => `${article(s.colour)} ${s.colour} ${s.kind} ${positionPhrase(positionOf(s))}`);
  const list = parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}`;
  return `${list[0].toUpperCase()}${list.slice(1)}.`;
}

function countAnswer(n: number): string {
  return NUMBER_WORDS[n];
}

export function colourQuestion(scene: Scene, shape: Shape): QuestionAnswer {
  return { type: "colour", question: `What colour is the ${nameWithoutColour(scene, shape)}?`, answer: shape.colour, cells: [shape.cell] };
}

export function positionQuestion(scene: Scene, shape: Shape): QuestionAnswer {
  return { type: "position", question: `Where is the ${nameWithoutPosition(scene, shape)}?`, answer: positionOf(shape), cells: [shape.cell] };
}

export function countShapesQuestion(scene: Scene): QuestionAnswer {
  const cells = cellsOf(scene, () => true);
  return { type: "count", question: "How many shapes are there?", answer: countAnswer(cells.length), cells };
}

export function countKindQuestion(scene: Scene, kind: ShapeKind): QuestionAnswer {
  const cells = cellsOf(scene, (s) => s.kind === kind);
  return { type: "count", question: `How many ${kind}s are there?`, answer: countAnswer(cells.length), cells };
}

export function countColourQuestion(scene: Scene, colour: ColourName): QuestionAnswer {
  const cells = cellsOf(scene, (s) => s.colour === colour);
  return { type: "count", question: `How many ${colour} shapes are there?`, answer: countAnswer(cells.length), cells };
}

export function kindPresenceQuestion(scene: Scene, kind: ShapeKind): QuestionAnswer {
  const cells = cellsOf(scene, (s) => s.kind === kind);
  return { type: "presence", question: `Is there ${article(kind)} ${kind}?`, answer: cells.length > 0 ? "yes" : "no", cells };
}

export function pairPresenceQuestion(scene: Scene, colour: ColourName, kind: ShapeKind): QuestionAnswer {
  const cells = cellsOf(scene, (s) => s.kind === kind && s.colour === colour);
  return { type: "presence", question: `Is there ${article(colour)} ${colour} ${kind}?`, answer: cells.length > 0 ? "yes" : "no", cells };
}

export function descriptionQuestion(scene: Scene): QuestionAnswer {
  return { type: "description", question: "Describe the image.", answer: describeScene(scene), cells: cellsOf(scene, () => true) };
}

/** Half the time something in the scene, else something that is not (as often near-misses as not). */
function presenceQuestion(scene: Scene, random: Random): QuestionAnswer {
  const askPair = random() < 0.5;
  const wantYes = random() < 0.5;
  if (!askPair) {
    const present = new Set(scene.shapes.map((s) => s.kind));
    const kinds = SHAPE_KINDS.filter((k) => present.has(k) === wantYes);
    return kindPresenceQuestion(scene, pick(random, kinds));
  }
  if (wantYes) {
    const shape = pick(random, scene.shapes);
    return pairPresenceQuestion(scene, shape.colour, shape.kind);
  }
  // A near miss (a kind that is there in a colour it is not, or a colour that is there on a kind
  // it is not), or any absent pair.
  const absent: [ColourName, ShapeKind][] = [];
  const nearMisses: [ColourName, ShapeKind][] = [];
  for (const colour of COLOUR_NAMES) {
    for (const kind of SHAPE_KINDS) {
      if (scene.shapes.some((s) => s.kind === kind && s.colour === colour)) continue;
      absent.push([colour, kind]);
      if (scene.shapes.some((s) => s.kind === kind || s.colour === colour)) nearMisses.push([colour, kind]);
    }
  }
  const [colour, kind] = pick(random, random() < 0.5 && nearMisses.length > 0 ? nearMisses : absent);
  return pairPresenceQuestion(scene, colour, kind);
}

/** A count question: all shapes, a kind or a colour (the kind or colour in the scene half the time). */
function countQuestion(scene: Scene, random: Random): QuestionAnswer {
  const r = random();
  if (r < 1 / 3) return countShapesQuestion(scene);
  const fromScene = random() < 0.5;
  const shape = pick(random, scene.shapes);
  if (r < 2 / 3) return countKindQuestion(scene, fromScene ? shape.kind : pick(random, SHAPE_KINDS));
  return countColourQuestion(scene, fromScene ? shape.colour : pick(random, COLOUR_NAMES));
}

/** A random question of the given type about the scene. */
export function sampleQuestion(scene: Scene, type: QuestionType, random: Random): QuestionAnswer {
  switch (type) {
    case "colour":
      return colourQuestion(scene, pick(random, scene.shapes));
    case "count":
      return countQuestion(scene, random);
    case "presence":
      return presenceQuestion(scene, random);
    case "position":
      return positionQuestion(scene, pick(random, scene.shapes));
    case "description":
      return descriptionQuestion(scene);
  }
}

/**
 * Training questions for one scene: every shape's colour and position, the description, and a
 * few random count and presence questions (distinct questions only).
 */
export function trainingQuestions(scene: Scene, random: Random): QuestionAnswer[] {
  const list: QuestionAnswer[] = [descriptionQuestion(scene)];
  for (const shape of scene.shapes) list.push(colourQuestion(scene, shape), positionQuestion(scene, shape));
  for (let i = 0; i < 3; i++) list.push(countQuestion(scene, random), presenceQuestion(scene, random));
  const seen = new Set<string>();
  return list.filter((qa) => !seen.has(qa.question) && seen.add(qa.question));
}

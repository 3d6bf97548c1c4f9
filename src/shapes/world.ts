/**
 * The shapes world: small images (72x72) holding one to three flat shapes, each inside its own
 * cell of a 3x3 grid, on a plain white or pale tinted background. Everything is drawn from a
 * seeded generator, so a seed names a scene (and a set of scenes) for ever.
 *
 *   scene  = background + shapes; shape = kind, colour, cell, centre (jittered), size
 *   render = an SVG of the scene, rasterised by sharp (librsvg, antialiased) to RGB
 *
 * The grid is what makes positions exact: a shape in the top-left cell is "top left" whatever
 * its jitter, so every question about a scene has one right answer. Shapes stay inside their
 * cell (24 px), so with the model's 24-pixel patches each patch sees one whole shape or none:
 * that is what lets a model of a few million parameters learn to see in minutes on a CPU.
 */
import sharp from "sharp";
import type { RgbImage } from "../image/rgb.js";

export const SHAPE_KINDS = ["circle", "square", "triangle", "diamond"] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

/** Saturated, well-separated colours; names are the answers to colour questions. */
export const COLOURS = {
  red: [220, 38, 38],
  orange: [245, 130, 20],
  yellow: [235, 200, 20],
  green: [34, 160, 70],
  blue: [37, 99, 235],
  purple: [147, 51, 234],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ColourName = keyof typeof COLOURS;
export const COLOUR_NAMES = Object.keys(COLOURS) as ColourName[];

/** White and pale tints: light enough that every shape colour stands out. */
export const BACKGROUNDS: readonly (readonly [number, number, number])[] = [
  [255, 255, 255],
  [250, 245, 230],
  [225, 238, 250],
  [230, 245, 230],
  [250, 232, 236],
  [232, 232, 232],
];

/** The nine cells, row by row; index = row * 3 + column. */
export const POSITIONS = ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"] as const;
export type PositionName = (typeof POSITIONS)[number];

export const IMAGE_SIZE = 72;
export const MAX_SHAPES = 3;
/**
 * Shape sizes (the diameter of a circle, about the width of the others) and how far a centre
 * may move from its cell's centre, in pixels at 72 px: the widest shape (a triangle, 1.25 x size
 * across) reaches at most 0.625 * 16 + 2 = 12 px from the cell's centre, the cell's edge.
 */
export const MIN_SHAPE_SIZE = 10;
export const MAX_SHAPE_SIZE = 16;
export const MAX_JITTER = 2;

export interface Shape {
  kind: ShapeKind;
  colour: ColourName;
  /** 0..8, row * 3 + column. */
  cell: number;
  /** Centre in pixels. */
  x: number;
  y: number;
  size: number;
}

export interface Scene {
  /** Width and height in pixels. */
  size: number;
  background: readonly [number, number, number];
  /** In the order they were drawn (their cells are all different, so they never overlap much). */
  shapes: Shape[];
}

/** A seeded uniform generator in [0, 1) (mulberry32): the same seed gives the same stream everywhere. */
export type Random = () => number;

export function seededRandom(seed: number): Random {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, not ${seed}`);
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [low, high]. */
export function randomInt(random: Random, low: number, high: number): number {
  return low + Math.floor(random() * (high - low + 1));
}

export function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

/** The generator of example `index` of the set named `seed`: each example has its own stream. */
export function exampleRandom(seed: number, index: number): Random {
  // Mix the two numbers so that neighbouring seeds and indices give unrelated streams.
  const mixed = seededRandom(((seed >>> 0) * 0x9e3779b1 + index * 0x85ebca6b) >>> 0);
  return seededRandom(Math.floor(mixed() * 2 ** 32));
}

/**
 * A random scene: 1 to 3 shapes in distinct cells. Kinds and colours are drawn independently,
 * except that no two shapes are the same kind in the same colour, so "the red circle" always
 * names one shape.
 */
export function sampleScene(random: Random, size = IMAGE_SIZE): Scene {
  const count = randomInt(random, 1, MAX_SHAPES);
  const cells = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const scale = size / IMAGE_SIZE;
  const shapes: Shape[] = [];
  while (shapes.length < count) {
    const kind = pick(random, SHAPE_KINDS);
    const colour = pick(random, COLOUR_NAMES);
    if (shapes.some((s) => s.kind === kind && s.colour === colour)) continue;
    const cell = cells.splice(Math.floor(random() * cells.length), 1)[0];
    const [centreX, centreY] = cellCentre(cell, size);
    shapes.push({
      kind,
      colour,
      cell,
      x: centreX + (random() * 2 - 1) * MAX_JITTER * scale,
      y: centreY + (random() * 2 - 1) * MAX_JITTER * scale,
      size: (MIN_SHAPE_SIZE + random() * (MAX_SHAPE_SIZE - MIN_SHAPE_SIZE)) * scale,
    });
  }
  return { size, background: pick(random, BACKGROUNDS), shapes };
}

/** The centre of a grid cell, in pixels. */
export function cellCentre(cell: number, size = IMAGE_SIZE): [number, number] {
  const third = size / 3;
  return [(cell % 3) * third + third / 2, Math.floor(cell / 3) * third + third / 2];
}

export function positionOf(shape: Shape): PositionName {
  return POSITIONS[shape.cell];
}

const round = (v: number) => Number(v.toFixed(3));
const rgb = (c: readonly number[]) => `rgb(${c[0]},${c[1]},${c[2]})`;

/** One shape as an SVG element, centred on (x, y). */
function shapeSvg(shape: Shape): string {
  const { x, y, size } = shape;
  const fill = `fill="${rgb(COLOURS[shape.colour])}"`;
  switch (shape.kind) {
    case "circle":
      return `<circle cx="${round(x)}" cy="${round(y)}" r="${round(size / 2)}" ${fill}/>`;
    case "square": {
      const side = size * 0.88; // about the circle's area
      return `<rect x="${round(x - side / 2)}" y="${round(y - side / 2)}" width="${round(side)}" height="${round(side)}" ${fill}/>`;
    }
    case "triangle": {
      // Equilateral, pointing up, its bounding box centred on (x, y).
      const w = size * 1.25;
      const h = (w * Math.sqrt(3)) / 2;
      return `<polygon points="${round(x)},${round(y - h / 2)} ${round(x + w / 2)},${round(y + h / 2)} ${round(x - w / 2)},${round(y + h / 2)}" ${fill}/>`;
    }
    case "diamond": {
      const d = size * 0.62;
      return `<polygon points="${round(x)},${round(y - d)} ${round(x + d)},${round(y)} ${round(x)},${round(y + d)} ${round(x - d)},${round(y)}" ${fill}/>`;
    }
  }
}

/** The scene as an SVG document. */
export function sceneSvg(scene: Scene): string {
  const { size } = scene;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}">` +
    `<rect width="${size}" height="${size}" fill="${rgb(scene.background)}"/>` +
    scene.shapes.map(shapeSvg).join("") +
    `</svg>`
  );
}

/** The scene rasterised to 8-bit RGB (row-major, interleaved), at its own size. */
export async function renderScene(scene: Scene): Promise<RgbImage> {
  const { data, info } = await sharp(Buffer.from(sceneSvg(scene)), { density: 72 })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== scene.size || info.height !== scene.size || info.channels !== 3) {
    throw new Error(`rendering a ${scene.size}px scene gave ${info.width}x${info.height}x${info.channels}`);
  }
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** The scene as a PNG file's bytes. */
export async function renderScenePng(scene: Scene): Promise<Buffer> {
  const image = await renderScene(scene);
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}

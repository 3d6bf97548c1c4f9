/**
 * What training the shapes model needs from the TypeScript side, written to files that the
 * PyTorch script (weights/train/train.py) reads, so that there is one world generator, one
 * tokenizer and one image preprocessing:
 *
 *   writeModelFiles(dir)   tokenizer.json, tokenizer_config.json, special_tokens_map.json
 *                          (the vocabulary learnt from the world's text) and
 *                          preprocessor_config.json, into the model folder
 *   writeDataset(dir, ...) images.u8     the rendered images, [N, 64, 64, 3] RGB bytes
 *                          scenes.jsonl  one line per image: its scene (shapes, cells, colours)
 *                          examples.jsonl one line per question: image index, type, question,
 *                                         answer, the cells it is about, prompt ids and
 *                                         target ids (answer + EOS)
 *                          meta.json     the ids, the world's names and the pixel table (below)
 *
 * Pixel values: images are rendered at the vision tower's size, so CLIP preprocessing does no
 * resizing or cropping and pixel_values[c, y, x] is a function of the byte alone. meta.json
 * holds that function as a table (3 x 256 float32 values, computed by src/image/preprocess.ts),
 * and every image is checked against preprocessRgb() as it is written: Python indexes the table
 * and gets exactly the runtime's pixel values.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileSafely, type FileContent } from "../files/write.js";
import { OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, parsePreprocessorConfig, type PreprocessorConfig } from "../image/config.js";
import { preprocessRgb, toPixelValues } from "../image/preprocess.js";
import type { RgbImage } from "../image/rgb.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { encodeExample, evalExample, tokenizerCorpus, trainingImage } from "./examples.js";
import { colourQuestion, countShapesQuestion, descriptionQuestion, kindPresenceQuestion, positionQuestion, type QuestionAnswer } from "./questions.js";
import { buildTokenizer } from "./tokenizer_builder.js";
import { COLOUR_NAMES, exampleRandom, IMAGE_SIZE, renderScene, renderScenePng, sampleScene, SHAPE_KINDS, type Scene } from "./world.js";

/** The recipe's fixed choices: the tokenizer is learnt from the conversations of these images. */
export const TOKENIZER_SEED = 0;
export const TOKENIZER_IMAGES = 2000;
export const MAX_VOCAB_SIZE = 512;
export const MAX_POSITIONS = 128;

/** CLIPImageProcessor at the world's size: a 64x64 image passes through resize and crop unchanged. */
export function preprocessorConfigJson(size = IMAGE_SIZE): Record<string, unknown> {
  return {
    crop_size: { height: size, width: size },
    do_center_crop: true,
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [...OPENAI_CLIP_MEAN],
    image_processor_type: "CLIPImageProcessor",
    image_std: [...OPENAI_CLIP_STD],
    processor_class: "LlavaProcessor",
    resample: 3,
    rescale_factor: 1 / 255,
    size: { shortest_edge: size },
  };
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/** The recipe's files are made again on every run: each replaces its earlier version whole (files/write.ts). */
const writeOutput = (path: string, content: FileContent) => writeFileSafely(path, content, { force: true });

/** Writes the tokenizer files and preprocessor_config.json into a model folder; returns the vocabulary's ids. */
export async function writeModelFiles(dir: string): Promise<{ vocabSize: number; imageTokenId: number; padTokenId: number }> {
  await mkdir(dir, { recursive: true });
  const files = buildTokenizer(tokenizerCorpus(TOKENIZER_SEED, TOKENIZER_IMAGES), { maxVocabSize: MAX_VOCAB_SIZE, modelMaxLength: MAX_POSITIONS });
  await writeOutput(join(dir, "tokenizer.json"), json(files.tokenizer));
  await writeOutput(join(dir, "tokenizer_config.json"), json(files.config));
  await writeOutput(join(dir, "special_tokens_map.json"), json(files.specialTokensMap));
  await writeOutput(join(dir, "preprocessor_config.json"), json(preprocessorConfigJson()));
  return { vocabSize: files.vocabSize, imageTokenId: files.imageTokenId, padTokenId: files.padTokenId };
}

/** pixel_values as a function of (channel, byte): table[c * 256 + v]. */
export function pixelTable(config: PreprocessorConfig): Float32Array {
  const ramp: RgbImage = { width: 256, height: 1, data: new Uint8Array(256 * 3) };
  for (let v = 0; v < 256; v++) ramp.data.fill(v, 3 * v, 3 * v + 3);
  return toPixelValues(ramp, config).data;
}

/** Throws unless preprocessing `image` gives exactly table[byte] everywhere (no resampling happened). */
function checkPixelsFollowTable(image: RgbImage, config: PreprocessorConfig, table: Float32Array): void {
  const { data } = preprocessRgb(image, config);
  const plane = image.width * image.height;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      if (!Object.is(data[c * plane + i], table[c * 256 + image.data[3 * i + c]])) {
        throw new Error(`${config.source}: preprocessing changes a ${image.width}x${image.height} image beyond the pixel table (resized or cropped?)`);
      }
    }
  }
}

export interface DatasetOptions {
  /** The tokenizer of the model folder. */
  tokenizer: Tokenizer;
  images: number;
  seed: number;
  /** "train": all training questions of each image; "eval": one question per image, as `wgsl-vlm eval` asks. */
  kind: "train" | "eval";
  onProgress?: (done: number) => void;
}

/** Writes images.u8, scenes.jsonl, examples.jsonl and meta.json into `dir`. */
export async function writeDataset(dir: string, options: DatasetOptions): Promise<{ examples: number }> {
  const { tokenizer, images, seed, kind } = options;
  if (!Number.isSafeInteger(images) || images < 1) throw new RangeError(`images must be a positive integer, not ${images}`);
  await mkdir(dir, { recursive: true });
  const config = parsePreprocessorConfig(preprocessorConfigJson(), "the shapes preprocessor config");
  const table = pixelTable(config);
  const lines: string[] = [];
  const scenes: string[] = [];
  await writeOutput(join(dir, "images.u8"), async (imageFile) => {
    for (let i = 0; i < images; i++) {
      let questions: QuestionAnswer[];
      let scene: Scene;
      if (kind === "eval") {
        const { scene: drawn, ...qa } = evalExample(seed, i);
        questions = [qa];
        scene = drawn;
      } else {
        ({ scene, questions } = trainingImage(seed, i));
      }
      scenes.push(JSON.stringify(scene));
      const image = await renderScene(scene);
      checkPixelsFollowTable(image, config, table);
      await imageFile.write(image.data);
      for (const qa of questions) {
        const { promptIds, targetIds } = encodeExample(tokenizer, qa.question, qa.answer);
        lines.push(JSON.stringify({ image: i, type: qa.type, question: qa.question, answer: qa.answer, cells: qa.cells, prompt: promptIds, target: targetIds }));
      }
      if ((i + 1) % 1000 === 0) options.onProgress?.(i + 1);
    }
  });
  await writeOutput(join(dir, "examples.jsonl"), `${lines.join("\n")}\n`);
  await writeOutput(join(dir, "scenes.jsonl"), `${scenes.join("\n")}\n`);
  const meta = {
    kind,
    seed,
    images,
    examples: lines.length,
    imageSize: IMAGE_SIZE,
    shapeKinds: SHAPE_KINDS,
    colours: COLOUR_NAMES,
    pixelTable: [0, 1, 2].map((c) => Array.from(table.subarray(c * 256, (c + 1) * 256))),
    vocabSize: tokenizer.vocabSize,
    bosTokenId: tokenizer.bosId,
    eosTokenId: tokenizer.eosId,
    imageTokenId: tokenizer.idOf("<image>"),
    padTokenId: tokenizer.padId,
  };
  await writeOutput(join(dir, "meta.json"), json(meta));
  return { examples: lines.length };
}

/** The demo's image and questions: example.png and example.json in the model folder. */
export interface DemoExample {
  image: string;
  seed: number;
  index: number;
  scene: Scene;
  questions: QuestionAnswer[];
}

/**
 * Writes the demo's image and questions: the first scene of the set named `seed` that has three
 * shapes of three kinds, and one question of each type about it.
 */
export async function writeDemoExample(dir: string, seed: number): Promise<DemoExample> {
  for (let index = 0; ; index++) {
    const scene = sampleScene(exampleRandom(seed, index));
    const kinds = new Set(scene.shapes.map((s) => s.kind));
    if (scene.shapes.length !== 3 || kinds.size !== 3) continue;
    const [first, second] = scene.shapes;
    const absent = SHAPE_KINDS.find((k) => !kinds.has(k))!;
    const questions = [descriptionQuestion(scene), colourQuestion(scene, first), countShapesQuestion(scene), positionQuestion(scene, second), kindPresenceQuestion(scene, absent)];
    const example: DemoExample = { image: "example.png", seed, index, scene, questions };
    await mkdir(dir, { recursive: true });
    await writeOutput(join(dir, example.image), await renderScenePng(scene));
    await writeOutput(join(dir, "example.json"), json(example));
    return example;
  }
}

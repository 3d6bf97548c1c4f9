/**
 * The TypeScript half of training the shapes CLIP (run with `npx tsx weights/train/clip/data_clip.ts`):
 *
 *   words OUT.json                               the words the texts use (src/shapes/clip_texts.ts),
 *                                                for build_tokenizer.py
 *   preprocessor DIR                             preprocessor_config.json into the model folder
 *   dataset --out DIR --images N --seed S [--texts K]
 *       images.u8     the rendered images, [N, 72, 72, 3] RGB bytes (checked against the pixel table)
 *       scenes.jsonl  one line per image: its scene, its description, K training texts drawn by
 *                     sampleClipText (seeded: the scene's own stream, after the scene), and every
 *                     text true of it (trueTexts)
 *       meta.json     the pixel table (pixel_values as a function of channel and byte) and names
 *
 * Scene i of seed S is sampleScene(exampleRandom(S, i)), as everywhere in the shapes world.
 * train_clip.sh runs all three, then the PyTorch training.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeFileSafely, type FileContent } from "../../../src/files/write.js";
import { parsePreprocessorConfig } from "../../../src/image/config.js";
import { preprocessRgb } from "../../../src/image/preprocess.js";
import { CLIP_WORDS, clipWords, sampleClipTexts, sceneDescription, trueTexts } from "../../../src/shapes/clip_texts.js";
import { pixelTable, preprocessorConfigJson } from "../../../src/shapes/training_data.js";
import { COLOUR_NAMES, exampleRandom, IMAGE_SIZE, renderScene, sampleScene, SHAPE_KINDS } from "../../../src/shapes/world.js";

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
const writeOutput = (path: string, content: FileContent) => writeFileSafely(path, content, { force: true });

function integer(value: string | undefined, name: string): number {
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${value}`);
  return n;
}

/** CLIPImageProcessor at 72 px, as the shapes LLaVA's (a 72 px image passes through unchanged), for a CLIPProcessor. */
export function clipPreprocessorConfig(): Record<string, unknown> {
  return { ...preprocessorConfigJson(IMAGE_SIZE), processor_class: "CLIPProcessor" };
}

async function writeDataset(dir: string, images: number, seed: number, texts: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const config = parsePreprocessorConfig(clipPreprocessorConfig(), "the shapes CLIP preprocessor config");
  const table = pixelTable(config);
  const vocabulary = new Set(CLIP_WORDS);
  const lines: string[] = [];
  await writeOutput(join(dir, "images.u8"), async (file) => {
    for (let i = 0; i < images; i++) {
      const random = exampleRandom(seed, i);
      const scene = sampleScene(random);
      const record = { scene, description: sceneDescription(scene), texts: sampleClipTexts(scene, random, texts), true: trueTexts(scene) };
      for (const text of record.true) {
        for (const word of clipWords(text)) if (!vocabulary.has(word)) throw new Error(`"${word}" (in "${text}") is not in CLIP_WORDS`);
      }
      lines.push(JSON.stringify(record));
      const image = await renderScene(scene);
      const { data } = preprocessRgb(image, config);
      const plane = image.width * image.height;
      for (let c = 0; c < 3; c++) {
        for (let p = 0; p < plane; p++) {
          if (!Object.is(data[c * plane + p], table[c * 256 + image.data[3 * p + c]])) throw new Error("preprocessing is not a function of the byte (resized?)");
        }
      }
      await file.write(image.data);
      if ((i + 1) % 2000 === 0) process.stderr.write(`  ${i + 1} images\n`);
    }
  });
  await writeOutput(join(dir, "scenes.jsonl"), `${lines.join("\n")}\n`);
  const meta = {
    seed,
    images,
    textsPerImage: texts,
    imageSize: IMAGE_SIZE,
    shapeKinds: SHAPE_KINDS,
    colours: COLOUR_NAMES,
    words: CLIP_WORDS,
    pixelTable: [0, 1, 2].map((c) => Array.from(table.subarray(c * 256, (c + 1) * 256))),
  };
  await writeOutput(join(dir, "meta.json"), json(meta));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === "words") {
    if (rest.length !== 1) throw new Error("usage: data_clip.ts words OUT.json");
    await writeOutput(rest[0], json(CLIP_WORDS));
    process.stdout.write(`wrote ${CLIP_WORDS.length} words to ${rest[0]}\n`);
    return;
  }
  if (command === "preprocessor") {
    if (rest.length !== 1) throw new Error("usage: data_clip.ts preprocessor DIR");
    await mkdir(rest[0], { recursive: true });
    await writeOutput(join(rest[0], "preprocessor_config.json"), json(clipPreprocessorConfig()));
    process.stdout.write(`wrote ${join(rest[0], "preprocessor_config.json")}\n`);
    return;
  }
  if (command === "dataset") {
    const { values } = parseArgs({ args: rest, options: { out: { type: "string" }, images: { type: "string" }, seed: { type: "string" }, texts: { type: "string", default: "8" } } });
    if (!values.out) throw new Error("dataset needs --out DIR");
    const started = Date.now();
    const images = integer(values.images, "images");
    await writeDataset(values.out, images, integer(values.seed, "seed"), integer(values.texts, "texts"));
    process.stdout.write(`wrote ${images} images to ${values.out} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    return;
  }
  throw new Error("usage: data_clip.ts words OUT.json | preprocessor DIR | dataset --out DIR --images N --seed S [--texts K]");
}

main(process.argv.slice(2)).catch((error: Error) => {
  process.stderr.write(`data_clip.ts: ${error.message}\n`);
  process.exitCode = 1;
});

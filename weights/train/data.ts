/**
 * The TypeScript half of training the shapes model (run with `npx tsx weights/train/data.ts`):
 *
 *   model-files DIR                               tokenizer and preprocessor files into the model folder
 *   dataset --model DIR --out DIR --images N --seed S [--kind train|eval]
 *                                                 rendered images and tokenized questions (see
 *                                                 src/shapes/training_data.ts for the format)
 *   example DIR --seed S                          the demo's example.png and example.json
 *
 * train.sh runs both, then the PyTorch training.
 */
import { parseArgs } from "node:util";
import { loadTokenizer } from "../../src/tokenizer/index.js";
import { writeDataset, writeDemoExample, writeModelFiles } from "../../src/shapes/training_data.js";

function integer(value: string | undefined, name: string): number {
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${value}`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === "model-files") {
    if (rest.length !== 1) throw new Error("usage: data.ts model-files DIR");
    const ids = await writeModelFiles(rest[0]);
    process.stdout.write(`wrote the tokenizer (${ids.vocabSize} ids, <image> = ${ids.imageTokenId}) and preprocessor_config.json to ${rest[0]}\n`);
    return;
  }
  if (command === "dataset") {
    const { values } = parseArgs({
      args: rest,
      options: { model: { type: "string" }, out: { type: "string" }, images: { type: "string" }, seed: { type: "string" }, kind: { type: "string", default: "train" } },
    });
    if (!values.model || !values.out) throw new Error("dataset needs --model DIR and --out DIR");
    if (values.kind !== "train" && values.kind !== "eval") throw new Error(`--kind must be train or eval, not ${values.kind}`);
    const started = Date.now();
    const { examples } = await writeDataset(values.out, {
      tokenizer: await loadTokenizer(values.model),
      images: integer(values.images, "images"),
      seed: integer(values.seed, "seed"),
      kind: values.kind,
      onProgress: (done) => process.stderr.write(`  ${done} images\n`),
    });
    process.stdout.write(`wrote ${values.images} images and ${examples} questions to ${values.out} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    return;
  }
  if (command === "example") {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { seed: { type: "string" } } });
    if (positionals.length !== 1) throw new Error("usage: data.ts example DIR --seed S");
    const example = await writeDemoExample(positionals[0], integer(values.seed, "seed"));
    process.stdout.write(`wrote ${example.image} (example ${example.index} of seed ${example.seed}) and example.json to ${positionals[0]}\n`);
    return;
  }
  throw new Error("usage: data.ts model-files DIR | dataset --model DIR --out DIR --images N --seed S [--kind train|eval] | example DIR --seed S");
}

main(process.argv.slice(2)).catch((error: Error) => {
  process.stderr.write(`data.ts: ${error.message}\n`);
  process.exitCode = 1;
});

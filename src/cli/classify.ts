/** `wgsl-vlm classify`: zero-shot classification of an image into labels, with CLIP. */
import { parseArgs } from "node:util";
import { DEFAULT_LABEL_TEMPLATE } from "../embed/clip.js";
import { UsageError, type Command } from "./command.js";
import { CLIP_OPTIONS, CLIP_USAGE, loadClipFrom } from "./clip_options.js";

const command: Command = {
  summary: "zero-shot classification of an image into labels (CLIP)",
  usage: `usage: wgsl-vlm classify --model DIR --image FILE --labels "a cat,a dog" [--template T] [--json]
  --image FILE     the image (repeat for several; each is scored on its own)
  --labels LIST    the labels, comma-separated
  --template T     each label is put where {} is (default "${DEFAULT_LABEL_TEMPLATE}", as
                   transformers' zero-shot-image-classification pipeline)
  --json           print [{"image", "scores": [{"label", "score", "logit"}]}]
${CLIP_USAGE}
Scores are the softmax over the labels of exp(logit_scale) · cosine(image, text), best first.`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { ...CLIP_OPTIONS, image: { type: "string", multiple: true }, labels: { type: "string" }, template: { type: "string" }, json: { type: "boolean" } },
    });
    const images = values.image ?? [];
    if (images.length === 0) throw new UsageError("--image FILE is required");
    const labels = (values.labels ?? "").split(",").map((l) => l.trim()).filter((l) => l.length > 0);
    if (labels.length < 2) throw new UsageError('--labels needs at least two comma-separated labels ("a cat,a dog")');
    if (new Set(labels).size !== labels.length) throw new UsageError("--labels: a label is given twice");
    const template = values.template ?? DEFAULT_LABEL_TEMPLATE;
    if (!template.includes("{}")) throw new UsageError(`--template ${JSON.stringify(template)} has no {} for the label`);
    const { clip } = await loadClipFrom(values);
    try {
      const texts = await clip.embedTexts(labels.map((l) => template.replaceAll("{}", l)));
      const results = [];
      for (const [i, embedding] of (await clip.embedImages(images)).entries()) {
        results.push({ image: images[i], scores: clip.scoreLabels(embedding, labels, texts) });
      }
      if (values.json) {
        process.stdout.write(`${JSON.stringify(results)}\n`);
      } else {
        const width = Math.max(...labels.map((l) => l.length));
        for (const { image, scores } of results) {
          if (images.length > 1) process.stdout.write(`${image}\n`);
          for (const s of scores) process.stdout.write(`  ${s.label.padEnd(width)}  ${(100 * s.score).toFixed(2).padStart(6)}%\n`);
        }
      }
      return 0;
    } finally {
      clip.dispose();
    }
  },
};

export default command;

/** `wgsl-vlm embed`: CLIP embeddings (unit vectors) of images or texts. */
import { parseArgs } from "node:util";
import { UsageError, type Command } from "./command.js";
import { CLIP_OPTIONS, CLIP_USAGE, loadClipFrom } from "./clip_options.js";

const command: Command = {
  summary: "CLIP embeddings (unit vectors) of images or texts",
  usage: `usage: wgsl-vlm embed --model DIR (--image FILE... | --text TEXT...) [--json]
  --image FILE     an image to embed (repeat for more)
  --text TEXT      a text to embed (repeat for more)
  --json           print [{"input", "embedding"}] instead of one line per input
                   (the input, a tab, then the numbers separated by spaces)
${CLIP_USAGE}`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { ...CLIP_OPTIONS, image: { type: "string", multiple: true }, text: { type: "string", multiple: true }, json: { type: "boolean" } },
    });
    const images = values.image ?? [];
    const texts = values.text ?? [];
    if ((images.length > 0) === (texts.length > 0)) throw new UsageError("give --image FILE... or --text TEXT..., not both and not neither");
    const { clip } = await loadClipFrom(values);
    try {
      const inputs = images.length > 0 ? images : texts;
      const embeddings = images.length > 0 ? await clip.embedImages(images) : await clip.embedTexts(texts);
      if (values.json) {
        const rows = inputs.map((input, i) => ({ input, embedding: Array.from(embeddings[i]) }));
        process.stdout.write(`${JSON.stringify(rows)}\n`);
      } else {
        for (const [i, input] of inputs.entries()) process.stdout.write(`${input}\t${Array.from(embeddings[i], (v) => v.toPrecision(7)).join(" ")}\n`);
      }
      return 0;
    } finally {
      clip.dispose();
    }
  },
};

export default command;

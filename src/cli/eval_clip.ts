/** `wgsl-vlm eval-clip`: how well a CLIP sees the shapes world (zero-shot choices and retrieval, fresh scenes). */
import { parseArgs } from "node:util";
import { evaluateClip, DESCRIPTION_CHOICES, type ClipEvalReport } from "../shapes/clip_eval.js";
import type { Command } from "./command.js";
import { CLIP_OPTIONS, CLIP_USAGE, loadClipFrom } from "./clip_options.js";
import { numberOption } from "./options.js";

const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatClipReport(r: ClipEvalReport, adapter: string, dtype: string): string {
  return [
    `${r.n} fresh scenes (seed ${r.seed}), ${dtype} weights on ${adapter}`,
    `  description among ${DESCRIPTION_CHOICES}     ${`${r.description.correct}/${r.description.total}`.padStart(9)}  ${percent(r.description.accuracy).padStart(6)}`,
    `  colour of a lone shape (6)  ${`${r.colour.correct}/${r.colour.total}`.padStart(9)}  ${percent(r.colour.accuracy).padStart(6)}`,
    `  text to image, recall@1     ${percent(r.retrieval.recallAt1).padStart(16)}  (over ${r.n} images)`,
    `  text to image, recall@5     ${percent(r.retrieval.recallAt5).padStart(16)}`,
    `  ${r.seconds.toFixed(1)} s`,
    "",
  ].join("\n");
}

const command: Command = {
  summary: "zero-shot accuracy and retrieval of a shapes-world CLIP on fresh scenes",
  usage: `usage: wgsl-vlm eval-clip --model DIR [--n N] [--seed S] [--json]
  --n N            how many scenes (default 300, at least ${DESCRIPTION_CHOICES})
  --seed S         which scenes (default 7; weights/shapes-clip was trained on seed 1's)
  --json           print the report as JSON
${CLIP_USAGE}
Reports: each image's description picked among ${DESCRIPTION_CHOICES} (its own and 7 other scenes'), the colour
of a lone shape among the 6 ("a red shape", ...), and text-to-image recall@1/@5 with each
image's description as the query over all N images.`,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { ...CLIP_OPTIONS, n: { type: "string" }, seed: { type: "string" }, json: { type: "boolean" } } });
    const n = numberOption(values.n, "n", 300, (x) => Number.isInteger(x) && x >= DESCRIPTION_CHOICES);
    const seed = numberOption(values.seed, "seed", 7, (x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32);
    const { clip } = await loadClipFrom(values);
    try {
      const report = await evaluateClip(clip, { n, seed, onProgress: values.quiet || values.json ? undefined : (line) => process.stderr.write(`  ${line}\n`) });
      const adapter = clip.model.gpu.adapter.description || clip.model.gpu.adapter.device;
      process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatClipReport(report, adapter, clip.model.dtype));
      return 0;
    } finally {
      clip.dispose();
    }
  },
};

export default command;

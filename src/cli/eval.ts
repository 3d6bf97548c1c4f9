/** `wgsl-vlm eval`: exact-match accuracy on fresh examples of the shapes world. */
import { parseArgs } from "node:util";
import { evaluate, type EvalReport } from "../shapes/eval.js";
import { QUESTION_TYPES } from "../shapes/questions.js";
import type { Command } from "./command.js";
import { describeWeightTypes } from "../models/load.js";
import { loadModelFrom, MODEL_OPTIONS, MODEL_USAGE } from "./model_options.js";
import { numberOption } from "./options.js";

const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatReport(report: EvalReport, adapter: string, dtype: string): string {
  const lines = [`${report.n} fresh examples (seed ${report.seed}), greedy, exact match, ${dtype} weights on ${adapter}`];
  const row = (name: string, correct: number, total: number) =>
    `  ${name.padEnd(12)} ${`${correct}/${total}`.padStart(9)}  ${(total ? percent(correct / total) : "-").padStart(6)}`;
  for (const type of QUESTION_TYPES) lines.push(row(type, report.perType[type].correct, report.perType[type].total));
  lines.push(row("overall", report.correct, report.n));
  lines.push(`  ${report.imagesPerSecond.toFixed(2)} images/s (${report.seconds.toFixed(1)} s in the model)`);
  return `${lines.join("\n")}\n`;
}

const command: Command = {
  summary: "accuracy of a shapes-world model on fresh images and questions",
  usage: `usage: wgsl-vlm eval --model DIR [--n N] [--seed S] [--json] [options]
  --n N            how many examples (default 100); question types take turns
  --seed S         which examples (default 7; the bundled model was trained on seed 1's images)
  --json           print the report (per type, overall, images/s, every example) as JSON
  --show-wrong     print each wrong answer as it happens
${MODEL_USAGE}`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { ...MODEL_OPTIONS, n: { type: "string" }, seed: { type: "string" }, json: { type: "boolean" }, "show-wrong": { type: "boolean" } },
    });
    const n = numberOption(values.n, "n", 100, (x) => Number.isInteger(x) && x >= 1);
    const seed = numberOption(values.seed, "seed", 7, (x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32);
    const model = await loadModelFrom(values);
    try {
      const showProgress = !values.quiet && !values.json;
      const report = await evaluate(model, {
        n,
        seed,
        onRecord: (r) => {
          if (values["show-wrong"] && !r.correct) {
            process.stderr.write(`  #${r.index} ${r.question} -> ${JSON.stringify(r.answer)}, expected ${JSON.stringify(r.expected)}\n`);
          }
          if (showProgress && (r.index + 1) % 50 === 0 && r.index + 1 < n) process.stderr.write(`  ${r.index + 1}/${n}\n`);
        },
      });
      if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(formatReport(report, model.gpu.adapter.description || model.gpu.adapter.device, describeWeightTypes(model.loadReport.weightTypes)));
      return 0;
    } finally {
      model.dispose();
    }
  },
};

export default command;

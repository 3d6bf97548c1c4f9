/** `wgsl-vlm verify DIR`: our kernels against transformers' reference tensors, tensor by tensor. */
import { stat } from "node:fs/promises";
import { parseArgs } from "node:util";
import { verifyFolder, type VerifyReport } from "../tools/verify.js";
import { UsageError, type Command } from "./command.js";
import { GPU_OPTIONS, GPU_USAGE } from "./options.js";

function format(report: VerifyReport): string {
  const rows = report.comparisons.map((c) => {
    const status = c.ok ? "ok" : c.note === "not computed" ? "skipped" : "MISMATCH";
    return `  ${c.name.padEnd(26)} ${`[${c.shape.join(", ")}]`.padEnd(18)} ${c.maxAbsDiff.toExponential(2).padStart(9)} ${c.relative.toExponential(2).padStart(9)} ${c.tolerance.toExponential(0).padStart(6)}  ${status}${c.note ? `  (${c.note})` : ""}`;
  });
  const t = report.tokens;
  const lines = [
    `${report.folder} (${report.dtype})`,
    `  ${"tensor".padEnd(26)} ${"shape".padEnd(18)} ${"max|diff|".padStart(9)} ${"relative".padStart(9)} ${"tol".padStart(6)}`,
    ...rows,
  ];
  if (t.expected.length > 0) {
    const all = t.agreeing === t.expected.length;
    lines.push(
      `  greedy tokens: ${t.agreeing}/${t.expected.length} agree with the reference before the first difference` +
        (all ? "" : ` (reference ${t.expected[t.agreeing]}, ours ${t.got[t.agreeing]} at step ${t.agreeing})`) +
        (t.required ? "" : " (reported, not required at this precision)"),
    );
  }
  lines.push(`  ${report.ok ? "PASS" : "FAIL"}`);
  return lines.join("\n");
}

const command: Command = {
  summary: "check the kernels against transformers' reference tensors (a shared/golden-style folder)",
  usage: `usage: wgsl-vlm verify DIR... [--dtype f32|f16] [--json]
  DIR holds model/ (a Hugging Face LLaVA, LLaMA or CLIP checkpoint, or a GGUF pair),
  inputs.safetensors (input_ids, pixel_values; attention_mask for CLIP texts)
  and golden.safetensors (reference tensors from transformers)
  --dtype f32|f16  weight storage dtype (default f32)
  --json           print the reports as JSON
${GPU_USAGE}`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { ...GPU_OPTIONS, dtype: { type: "string" }, json: { type: "boolean" } },
    });
    if (positionals.length === 0) throw new UsageError("DIR is missing");
    // Every folder is checked before the first is run, so a mistyped last one fails at once.
    for (const folder of positionals) {
      const info = await stat(folder).catch(() => undefined);
      if (!info?.isDirectory()) throw new UsageError(`${folder}: ${info ? "not a folder" : "no such folder"}`);
    }
    const dtype = values.dtype ?? "f32";
    if (dtype !== "f32" && dtype !== "f16") throw new UsageError(`--dtype must be f32 or f16, not '${dtype}'`);
    const reports: VerifyReport[] = [];
    for (const folder of positionals) {
      const report = await verifyFolder(folder, { dtype, adapter: values.adapter });
      reports.push(report);
      if (!values.json) process.stdout.write(`${format(report)}\n`);
    }
    if (values.json) process.stdout.write(`${JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2)}\n`);
    return reports.every((r) => r.ok) ? 0 : 1;
  },
};

export default command;

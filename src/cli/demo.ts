/**
 * `wgsl-vlm demo`: the main job on what ships in the repository: the GPU in use, then the three
 * tiny LLaVA checkpoints with transformers' reference outputs run through every kernel, and
 * checked tensor by tensor (vision tower, projector, decoder, logits, greedy tokens).
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { verifyFolder } from "../models/verify.js";
import { Gpu } from "../tensor/gpu.js";
import type { Command } from "./command.js";
import { GPU_OPTIONS, GPU_USAGE, gpuOptions } from "./options.js";

const GOLDEN = fileURLToPath(new URL("../../test/fixtures/golden/", import.meta.url));
const FOLDERS = ["tiny-llava-a", "tiny-llava-b", "text-only-c"];

const command: Command = {
  summary: "run the bundled tiny LLaVA models and check them against transformers",
  usage: `usage: wgsl-vlm demo [--adapter NAME] [--backend NAME]\n${GPU_USAGE}`,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { ...GPU_OPTIONS } });
    const gpu = await Gpu.create(gpuOptions(values));
    process.stdout.write(`GPU: ${gpu.adapter.description || gpu.adapter.device} (${gpu.adapter.vendor || "unknown vendor"}, ${gpu.adapter.architecture || "-"})\n`);
    let ok = true;
    try {
      for (const folder of FOLDERS) {
        for (const dtype of gpu.hasF16 ? (["f32", "f16"] as const) : (["f32"] as const)) {
          const report = await verifyFolder(join(GOLDEN, folder), { dtype, gpu });
          const worst = report.comparisons.reduce((w, c) => Math.max(w, c.relative || 0), 0);
          const t = report.tokens;
          process.stdout.write(
            `${folder.padEnd(13)} ${dtype}: ${report.comparisons.length} reference tensors, worst relative error ${worst.toExponential(1)}; ` +
              `greedy tokens ${t.agreeing}/${t.expected.length} as transformers [${t.got.slice(0, 8).join(" ")} ...]  ${report.ok ? "PASS" : "FAIL"}\n`,
          );
          ok &&= report.ok;
        }
      }
    } finally {
      gpu.destroy();
    }
    return ok ? 0 : 1;
  },
};

export default command;

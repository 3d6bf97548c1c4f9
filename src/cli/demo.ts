/**
 * `wgsl-vlm demo`: the main job on what ships in the repository, with no download. The bundled
 * shapes model (weights/shapes-llava, a tiny LLaVA trained on a synthetic world of coloured
 * shapes) looks at its example image and answers questions about it, each answer streamed as it
 * is generated and checked against the scene the image was drawn from. Before that, one line
 * says which GPU runs it, and one that the kernels reproduce transformers' outputs for the
 * bundled reference checkpoints.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { decodeImage } from "../image/decode.js";
import { loadModel } from "../generate/model.js";
import { verifyFolder } from "../tools/verify.js";
import type { DemoExample } from "../shapes/training_data.js";
import { Gpu } from "../tensor/gpu.js";
import { UsageError, type Command } from "./command.js";
import { GPU_OPTIONS, GPU_USAGE, gpuOptions } from "./options.js";

const MODEL = fileURLToPath(new URL("../../weights/shapes-llava/", import.meta.url));
const GOLDEN = fileURLToPath(new URL("../../test/fixtures/golden/", import.meta.url));
const GOLDEN_FOLDERS = ["tiny-llava-a", "tiny-llava-b", "text-only-c"];

/** Every bundled transformers reference through our kernels in f32, summed up in one line. */
async function checkGoldens(gpu: Gpu): Promise<{ line: string; ok: boolean }> {
  let worst = 0;
  let tokens = 0;
  let agreeing = 0;
  let ok = true;
  for (const folder of GOLDEN_FOLDERS) {
    const report = await verifyFolder(join(GOLDEN, folder), { dtype: "f32", gpu });
    worst = report.comparisons.reduce((w, c) => Math.max(w, c.relative || 0), worst);
    tokens += report.tokens.expected.length;
    agreeing += report.tokens.agreeing;
    ok &&= report.ok;
  }
  const line =
    `kernels: ${GOLDEN_FOLDERS.length} reference checkpoints as transformers computes them (f32): ` +
    `worst relative error ${worst.toExponential(1)}, greedy tokens ${agreeing}/${tokens}  ${ok ? "PASS" : "FAIL"}`;
  return { line, ok };
}

/** The image in the terminal, two pixels per character cell (24-bit colour), when stdout is one. */
async function drawImage(path: string): Promise<string> {
  const image = await decodeImage(path);
  const step = Math.max(1, Math.ceil(image.width / 32));
  const pixel = (x: number, y: number) => {
    const i = 3 * (Math.min(y, image.height - 1) * image.width + Math.min(x, image.width - 1));
    return `${image.data[i]};${image.data[i + 1]};${image.data[i + 2]}`;
  };
  const rows: string[] = [];
  for (let y = 0; y < image.height; y += 2 * step) {
    let row = "  ";
    for (let x = 0; x < image.width; x += step) row += `\x1b[38;2;${pixel(x, y)}m\x1b[48;2;${pixel(x, y + step)}m▀`;
    rows.push(`${row}\x1b[0m`);
  }
  return `${rows.join("\n")}\n`;
}

const command: Command = {
  summary: "the bundled shapes model answers questions about its example image (no download)",
  usage: `usage: wgsl-vlm demo [--dtype f16|f32] [--adapter NAME] [--backend NAME]
  --dtype f16|f32  weight storage (default f32: the checkpoint's own)
${GPU_USAGE}`,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { ...GPU_OPTIONS, dtype: { type: "string" } } });
    if (values.dtype !== undefined && values.dtype !== "f16" && values.dtype !== "f32") throw new UsageError(`--dtype must be f16 or f32, not '${values.dtype}'`);
    const started = performance.now();
    const gpu = await Gpu.create(gpuOptions(values));
    try {
      process.stdout.write(`GPU: ${gpu.adapter.description || gpu.adapter.device} (${gpu.adapter.vendor || "unknown vendor"}, ${gpu.adapter.architecture || "-"})\n`);
      let ok = true;
      if (existsSync(GOLDEN)) {
        const goldens = await checkGoldens(gpu);
        process.stdout.write(`${goldens.line}\n`);
        ok = goldens.ok;
      }

      const example = JSON.parse(await readFile(join(MODEL, "example.json"), "utf8")) as DemoExample;
      const imagePath = join(MODEL, example.image);
      const model = await loadModel(MODEL, { gpu, dtype: values.dtype as "f16" | "f32" | undefined });
      const r = model.loadReport;
      process.stdout.write(
        `model: weights/shapes-llava, ${(r.weightBytes / 1e6).toFixed(1)} MB of ${r.dtype} weights, loaded in ${(r.loadMs / 1000).toFixed(2)} s\n` +
          `image: weights/shapes-llava/${example.image}\n`,
      );
      if (process.stdout.isTTY) process.stdout.write(await drawImage(imagePath));
      let right = 0;
      for (const { question, answer } of example.questions) {
        process.stdout.write(`\nUSER: ${question}\nASSISTANT:`);
        let first = true;
        const result = await model.complete({ messages: [{ role: "user", content: question, images: [imagePath] }], maxNewTokens: 40 }, (chunk) => {
          process.stdout.write(first ? ` ${chunk.text.trimStart()}` : chunk.text);
          first = false;
        });
        const correct = result.text.trim() === answer;
        right += correct ? 1 : 0;
        process.stdout.write(correct ? "   [right]\n" : `   [WRONG: the scene says ${JSON.stringify(answer)}]\n`);
      }
      model.dispose();
      const seconds = (performance.now() - started) / 1000;
      process.stdout.write(
        `\n${right}/${example.questions.length} answers right, ${seconds.toFixed(1)} s in all ` +
          `(the model's exact-match accuracy on fresh images: npx wgsl-vlm eval --model weights/shapes-llava)\n`,
      );
      // A wrong answer is the model's (PyTorch gives the same one); only wrong kernels fail the demo.
      return ok ? 0 : 1;
    } finally {
      gpu.destroy();
    }
  },
};

export default command;

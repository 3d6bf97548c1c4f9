import { copyFile, cp, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import verifyCommand from "../src/cli/verify.js";
import { verifyFolder } from "../src/tools/verify.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { writeSafetensors } from "../src/weights/safetensors_writer.js";
import { testGpu } from "./helpers.js";

const GOLDEN = join(import.meta.dirname, "fixtures", "golden");
const FOLDERS = ["tiny-llava-a", "tiny-llava-b", "text-only-c", "tiny-llava-next-a"];

async function captureStdout(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const write = process.stdout.write.bind(process.stdout);
  let out = "";
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  try {
    return { code: await fn(), out };
  } finally {
    process.stdout.write = write;
  }
}

describe("agreement with transformers", async () => {
  const gpu = await testGpu();
  const dtypes = gpu.hasF16 ? (["f32", "f16"] as const) : (["f32"] as const);

  for (const folder of FOLDERS) {
    for (const dtype of dtypes) {
      it(`${folder} in ${dtype}: every reference tensor within tolerance${dtype === "f32" ? ", greedy ids identical" : ""}`, async () => {
        const report = await verifyFolder(join(GOLDEN, folder), { dtype, gpu });
        for (const c of report.comparisons) expect(c.ok, `${c.name}: relative ${c.relative} > ${c.tolerance}`).toBe(true);
        const names = report.comparisons.map((c) => c.name);
        expect(names).toEqual(expect.arrayContaining(["logits", "generate_step_logits", "text_hidden_states"]));
        if (folder !== "text-only-c") expect(names).toEqual(expect.arrayContaining(["vision_embeddings", "vision_hidden_states", "projector_output"]));
        // LLaVA-NeXT: the tiles' features packed as the decoder receives them (grid, unpadding, newlines).
        if (folder === "tiny-llava-next-a") expect(names).toEqual(expect.arrayContaining(["vision_selected_features", "packed_image_features"]));
        if (dtype === "f32") expect(report.tokens.got).toEqual(report.tokens.expected);
        expect(report.ok).toBe(true);
      });
    }
  }

  it("wgsl-vlm verify prints a table and exits 0 on agreement", async () => {
    const { code, out } = await captureStdout(() => verifyCommand.run([join(GOLDEN, "text-only-c")]));
    expect(code).toBe(0);
    expect(out).toMatch(/logits\s+\[1, 12, 257\].*ok/);
    expect(out).toMatch(/greedy tokens: 40\/40/);
    expect(out).toMatch(/PASS/);
  });

  it("fails, naming the tensor, when one reference logit is off", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-verify-"));
    await cp(join(GOLDEN, "text-only-c", "model"), join(dir, "model"), { recursive: true });
    await copyFile(join(GOLDEN, "text-only-c", "inputs.safetensors"), join(dir, "inputs.safetensors"));
    const golden = await SafetensorsFile.open(join(GOLDEN, "text-only-c", "golden.safetensors"));
    const tensors: Parameters<typeof writeSafetensors>[1] = {};
    for (const [name, entry] of golden.tensors) {
      const bytes = await golden.readBytes(name);
      if (name === "logits") new DataView(bytes.buffer, bytes.byteOffset).setFloat32(4 * 100, 3.5, true);
      tensors[name] = { dtype: entry.dtype, shape: entry.shape, data: bytes };
    }
    await golden.close();
    await writeSafetensors(join(dir, "golden.safetensors"), tensors);
    const { code, out } = await captureStdout(() => verifyCommand.run([dir]));
    expect(code).toBe(1);
    expect(out).toMatch(/logits\s+\[1, 12, 257\].*MISMATCH/);
    expect(out).toMatch(/FAIL/);
  });
});

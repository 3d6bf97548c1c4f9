/** `wgsl-vlm convert`: run() called directly on the bundled shapes model, its files read back. */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import convertCommand from "../src/cli/convert.js";
import { UsageError } from "../src/cli/command.js";
import { GgufFile } from "../src/weights/gguf.js";
import { runCommand } from "./helpers.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");
const run = (argv: string[]) => runCommand(convertCommand, argv);

describe("wgsl-vlm convert", () => {
  it("writes the text model quantized and the mmproj in F16, and says what the files lack", async () => {
    const dir = await mkdtemp(join(tmpdir(), "convert-"));
    const [out, mmproj] = [join(dir, "shapes.q4_0.gguf"), join(dir, "mmproj.gguf")];
    const { code, stdout, stderr } = await run(["--model", MODEL, "--dtype", "q4_0", "--out", out, "--mmproj-out", mmproj, "--quiet"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`^wrote ${out}: 39 tensors, [\\d.]+ MB\\nwrote ${mmproj}: \\d+ tensors, [\\d.]+ MB\\n$`));
    expect(stderr).toContain("has no tokenizer.model");
    const text = await GgufFile.open(out);
    const vision = await GgufFile.open(mmproj);
    try {
      expect(text.metadata.get("general.file_type")).toEqual({ type: "UINT32", value: 2 });
      expect(text.entry("blk.0.attn_q.weight").type.name).toBe("Q4_0");
      expect(text.entry("blk.0.attn_norm.weight").type.name).toBe("F32");
      expect(vision.entry("v.blk.0.attn_q.weight").type.name).toBe("F16");
      // vision_feature_layer -2 of 4 layers: 3 layers kept, and said.
      expect(vision.metadata.get("clip.vision.block_count")).toEqual({ type: "UINT32", value: 3 });
      expect(vision.metadata.get("clip.vision.feature_layer")).toEqual({ type: "ARRAY", value: { itemType: "INT32", values: [3] } });
      expect(vision.tensors.has("v.blk.3.attn_q.weight")).toBe(false);
    } finally {
      await text.close();
      await vision.close();
    }
    // Never over an existing file without --force.
    await expect(run(["--model", MODEL, "--dtype", "q4_0", "--out", out, "--mmproj-out", mmproj, "--quiet"])).rejects.toThrow(/already exists \(--force replaces it\)/);
  });

  it("rejects a bad command line, and a LLaVA folder without --mmproj-out", async () => {
    await expect(run(["--dtype", "q8_0", "--out", "x.gguf"])).rejects.toThrow(UsageError);
    await expect(run(["--model", MODEL, "--dtype", "q8_0"])).rejects.toThrow(/--out FILE is required/);
    await expect(run(["--model", MODEL, "--dtype", "q3_k", "--out", "x.gguf"])).rejects.toThrow(/--dtype must be one of f32, f16, q8_0/);
    const dir = await mkdtemp(join(tmpdir(), "convert-"));
    await expect(run(["--model", MODEL, "--dtype", "q8_0", "--out", join(dir, "x.gguf")])).rejects.toThrow(/is a LLaVA model: give the mmproj file's path too \(--mmproj-out\)/);
    const notModel = join(dir, "notes.txt");
    await writeFile(notModel, "hello");
    await expect(run(["--model", notModel, "--dtype", "q8_0", "--out", join(dir, "y.gguf")])).rejects.toThrow(/expected a model folder/);
  });
});

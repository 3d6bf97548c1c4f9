/** `wgsl-vlm preprocess`: writes pixel_values [N, 3, H, W] as safetensors, refuses bad command lines. */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import generateCommand from "../src/cli/generate.js";
import command from "../src/cli/preprocess.js";
import { UsageError } from "../src/cli/command.js";
import { preprocessImages } from "../src/image/preprocess.js";
import { parsePreprocessorConfig } from "../src/image/config.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { runCommand } from "./helpers.js";

const FIXTURES = "test/fixtures/preprocess";
const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-preprocess-cli-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const spec = JSON.parse(await readFile(join(FIXTURES, "preprocess.json"), "utf8"));
const model = join(dir, "model");
await mkdir(model);
await writeFile(join(model, "preprocessor_config.json"), JSON.stringify(spec.preprocessor_config));
const images = ["screenshot.png", "small_20x30.png"].map((f) => join(FIXTURES, "images", f));

const run = (argv: string[]) => runCommand(command, argv);

describe("wgsl-vlm preprocess", () => {
  it("writes the batch the API makes, with the model's config", async () => {
    const out = join(dir, "batch.safetensors");
    const { code, stdout } = await run(["--model", model, "--image", images[0], "--image", images[1], "--pad-to-square", "--out", out]);
    expect(code).toBe(0);
    expect(stdout).toContain(`wrote pixel_values [2, 3, 336, 336] to ${out}`);

    const file = await SafetensorsFile.open(out);
    try {
      expect(file.entry("pixel_values")).toMatchObject({ dtype: "F32", shape: [2, 3, 336, 336] });
      expect(file.metadata).toMatchObject({ images: JSON.stringify(images), pad_to_square: "true" });
      const { data } = await file.readFloat32("pixel_values");
      const config = parsePreprocessorConfig(spec.preprocessor_config, "spec");
      const expected = await preprocessImages(images, config, { padToSquare: true });
      expect(Buffer.from(data.buffer).equals(Buffer.from(expected.data.buffer))).toBe(true);
    } finally {
      await file.close();
    }
  });

  it("uses CLIPImageProcessor's defaults (224) without a config, and says so", async () => {
    const out = join(dir, "defaults.safetensors");
    const { stdout } = await run(["--image", images[1], "--out", out]);
    expect(stdout).toContain("[1, 3, 224, 224]");
    expect(stdout).toContain("CLIPImageProcessor defaults");
  });

  it("refuses bad command lines", async () => {
    await expect(run(["--out", join(dir, "x.safetensors")])).rejects.toThrow(UsageError);
    await expect(run(["--image", images[0]])).rejects.toThrow(/--out is required/);
    await expect(run(["--image", images[0], "--out", join(dir, "x.safetensors"), "--max-pixels", "lots"])).rejects.toThrow(/--max-pixels: 'lots'/);
    await expect(run(["--image", images[0], "--out", join(dir, "x.safetensors"), "--size", "3"])).rejects.toMatchObject({
      code: "ERR_PARSE_ARGS_UNKNOWN_OPTION",
    });
  });

  it("reports an unreadable image by name and writes nothing", async () => {
    const out = join(dir, "never.safetensors");
    await expect(run(["--model", model, "--image", join(FIXTURES, "bad", "tiny.bmp"), "--out", out])).rejects.toThrow(/tiny\.bmp: not an image/);
    await expect(readFile(out)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("applies --max-pixels", async () => {
    await expect(run(["--image", images[0], "--out", join(dir, "x.safetensors"), "--max-pixels", "1000"])).rejects.toThrow(/over the limit of 1000/);
  });
});

describe("wgsl-vlm generate", () => {
  it("refuses a bad --image before it spends time loading the model", async () => {
    const model = join(import.meta.dirname, "../weights/shapes-llava");
    for (const [image, message] of [
      ["/dev/zero", /\/dev\/zero: not a regular file but a character device/],
      [join(import.meta.dirname, "../README.md"), /README\.md: not an image in a supported format/],
      ["/no/such/image.png", /image\.png: cannot read \(ENOENT\)/],
    ] as const) {
      const writes = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
      try {
        await expect(generateCommand.run(["--model", model, "--image", image, "--prompt", "What is it?"])).rejects.toThrow(message);
        expect(writes.mock.calls.join("")).not.toContain("loading weights");
      } finally {
        writes.mockRestore();
      }
    }
  });
});

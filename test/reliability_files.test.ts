/**
 * Reliability of file access (src/files/): no path makes a reader block, read without end or
 * fill memory, and no write destroys a file.
 *
 * Reads: every reader refuses a FIFO (opening one would wait for a writer forever), a character
 * device (/dev/zero never ends), a directory, and a file over its kind's limit (sparse, so it
 * costs no disk), with an error naming the path and what it is; a FIFO put in place of a file
 * after the stat still cannot block (O_NONBLOCK, then fstat on the handle).
 *
 * Writes: an existing file is replaced only with force (--force), never when it is one of the
 * inputs (however the path is spelled), and a write that fails midway leaves the old file or
 * none, and no temporary file.
 */
import { execFileSync } from "node:child_process";
import { closeSync, constants, openSync } from "node:fs";
import { link, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import sharp from "sharp";
import { afterAll, describe, expect, it, vi } from "vitest";
import command from "../src/cli/preprocess.js";
import { IMAGE_FILE, JSON_CONFIG_FILE, TOKENIZER_JSON_FILE, TOKENIZER_MODEL_FILE, type FileKind } from "../src/files/limits.js";
import { FileError, openRegularFile, readFileWithin } from "../src/files/read.js";
import { writeFileSafely } from "../src/files/write.js";
import { loadPreprocessorConfig } from "../src/image/config.js";
import { decodeImage } from "../src/image/decode.js";
import { loadTokenizer } from "../src/tokenizer/load.js";
import { verifyFolder } from "../src/tools/verify.js";
import { Checkpoint, INDEX_FILE } from "../src/weights/checkpoint.js";
import { loadConfig } from "../src/weights/config.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { writeSafetensors } from "../src/weights/safetensors_writer.js";
import { runCommand } from "./helpers.js";

// stat() answers "a regular file" for the paths in this set: a FIFO swapped in after the check.
const swapped = vi.hoisted(() => ({ paths: new Set<string>(), regular: "" }));
vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs/promises")>();
  const stat = ((path: string, ...rest: []) => real.stat(swapped.paths.has(String(path)) ? swapped.regular : path, ...rest)) as typeof real.stat;
  return { ...real, stat, default: { ...real, stat } };
});

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-reliability-files-"));
const fifos: string[] = [];
afterAll(async () => {
  // A reader wrongly blocked in open() on a FIFO is released by a writer, so a failure cannot hang the run.
  for (const fifo of fifos) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // no reader waiting: nothing to release
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/** A folder holding `name` as a FIFO, a directory, a symlink to /dev/zero, or a sparse file of `bytes`. */
async function folderWith(name: string, kind: "fifo" | "directory" | "device" | { bytes: number }): Promise<string> {
  const folder = await mkdtemp(join(dir, "case-"));
  const path = join(folder, name);
  if (kind === "fifo") {
    execFileSync("mkfifo", [path]);
    fifos.push(path);
  } else if (kind === "directory") {
    await mkdir(path);
  } else if (kind === "device") {
    await symlink("/dev/zero", path);
  } else {
    await writeFile(path, "");
    await truncate(path, kind.bytes); // sparse: no disk used
  }
  return folder;
}

const WHAT = {
  fifo: /not a regular file but a FIFO \(named pipe\)/,
  directory: /not a regular file but a directory/,
  device: /not a regular file but a character device/,
};
const KINDS = ["fifo", "directory", "device"] as const;
const over = (kind: FileKind) => new RegExp(`: ${kind.maxBytes + 1} bytes, over the ${kind.maxBytes}-byte \\(${kind.maxBytes / 2 ** 20} MiB\\) limit for ${kind.what}`);

/** Each reader, given a folder, reads `name` from it: a [name, kind, read] table. */
const READERS: [string, FileKind, (folder: string) => Promise<unknown>][] = [
  ["config.json", JSON_CONFIG_FILE, (f) => loadConfig(f)],
  ["preprocessor_config.json", JSON_CONFIG_FILE, (f) => loadPreprocessorConfig(f)],
  ["tokenizer.json", TOKENIZER_JSON_FILE, (f) => loadTokenizer(f)],
  ["tokenizer.model", TOKENIZER_MODEL_FILE, (f) => loadTokenizer(f)],
  ["tokenizer_config.json", JSON_CONFIG_FILE, (f) => loadTokenizer(f)],
  ["special_tokens_map.json", JSON_CONFIG_FILE, (f) => loadTokenizer(f)],
  [INDEX_FILE, JSON_CONFIG_FILE, (f) => Checkpoint.open(join(f, INDEX_FILE))],
  ["image.png", IMAGE_FILE, (f) => decodeImage(join(f, "image.png"))],
];

describe("reading files", () => {
  for (const [name, limit, read] of READERS) {
    for (const kind of KINDS) {
      if (name === INDEX_FILE && kind === "directory") continue; // a folder is opened as a model folder, whatever its name
      it(`refuses ${name} as a ${kind}, naming it`, { timeout: 10_000 }, async () => {
        const folder = await folderWith(name, kind);
        await expect(read(folder)).rejects.toThrow(new RegExp(`${join(folder, name).replace(/[.]/g, "\\.")}: ${WHAT[kind].source}`));
      });
    }
    it(`refuses ${name} over its ${limit.maxBytes / 2 ** 20} MiB limit before reading it`, async () => {
      const folder = await folderWith(name, { bytes: limit.maxBytes + 1 });
      await expect(read(folder)).rejects.toThrow(over(limit));
    });
  }

  it("refuses safetensors files that are FIFOs, devices or directories (model, shards, a golden folder's files)", { timeout: 10_000 }, async () => {
    for (const kind of KINDS) {
      const folder = await folderWith("model.safetensors", kind);
      await expect(SafetensorsFile.open(join(folder, "model.safetensors"))).rejects.toThrow(WHAT[kind]);
      const golden = await folderWith("inputs.safetensors", kind);
      await expect(verifyFolder(golden)).rejects.toThrow(WHAT[kind]);
    }
    await expect(Checkpoint.open("/dev/zero")).rejects.toThrow(/\/dev\/zero: not a regular file but a character device/);
  });

  it("cannot be blocked by a FIFO put in place of a regular file after the check", { timeout: 10_000 }, async () => {
    const folder = await folderWith("swapped.json", "fifo");
    const fifo = join(folder, "swapped.json");
    swapped.regular = join(folder, "regular");
    await writeFile(swapped.regular, "{}");
    swapped.paths.add(fifo);
    try {
      await expect(readFileWithin(fifo, JSON_CONFIG_FILE)).rejects.toThrow(`${fifo}: not a regular file but a FIFO (named pipe)`);
      await expect(openRegularFile(fifo)).rejects.toThrow(FileError);
    } finally {
      swapped.paths.clear();
    }
  });

  it("reads a file at its limit, refuses one byte more, and keeps the system's error code", async () => {
    const tiny: FileKind = { what: "a test file", maxBytes: 10 };
    const path = join(dir, "ten.txt");
    await writeFile(path, "0123456789");
    expect((await readFileWithin(path, tiny)).toString()).toBe("0123456789");
    await writeFile(path, "0123456789A");
    await expect(readFileWithin(path, tiny)).rejects.toThrow(`${path}: 11 bytes, over the 10-byte`);
    await expect(readFileWithin(join(dir, "absent"), tiny)).rejects.toMatchObject({ code: "ENOENT", message: `${join(dir, "absent")}: cannot read (ENOENT)` });
    class ReaderError extends Error {}
    await expect(readFileWithin(dir, tiny, { as: ReaderError })).rejects.toThrow(ReaderError);
  });

  it("still takes a folder without preprocessor_config.json as CLIPImageProcessor's defaults", async () => {
    const folder = await mkdtemp(join(dir, "empty-"));
    expect((await loadPreprocessorConfig(folder)).source).toMatch(/defaults/);
  });
});

describe("writing files", () => {
  const folder = join(dir, "writes");
  const fresh = async (name: string, content?: string) => {
    await mkdir(folder, { recursive: true });
    const path = join(folder, name);
    if (content !== undefined) await writeFile(path, content);
    return path;
  };
  /** The folder holds no temporary file. */
  const noLeftovers = async () => expect((await readdir(folder)).filter((n) => n.endsWith(".tmp"))).toEqual([]);

  it("writes a new file, refuses an existing one without force, replaces it with force", async () => {
    const path = await fresh("out.txt");
    await writeFileSafely(path, "first", { force: false });
    expect(await readFile(path, "utf8")).toBe("first");
    await expect(writeFileSafely(path, "second", { force: false })).rejects.toThrow(`${path}: already exists (--force replaces it)`);
    expect(await readFile(path, "utf8")).toBe("first");
    await writeFileSafely(path, "second", { force: true });
    expect(await readFile(path, "utf8")).toBe("second");
    await noLeftovers();
  });

  it("never writes onto an input, even with force, however its path is spelled", async () => {
    const input = await fresh("input.png", "the input");
    await symlink(input, join(folder, "alias.png"));
    await link(input, join(folder, "hardlink.png"));
    await mkdir(join(folder, "sub"), { recursive: true });
    const spellings = [`${folder}/sub/../input.png`, `./${relative(process.cwd(), folder)}/sub/../input.png`];
    for (const out of [input, join(folder, "alias.png"), join(folder, "hardlink.png"), ...spellings]) {
      await expect(writeFileSafely(out, "x", { force: true, inputs: [input] })).rejects.toThrow(/is the input .*input\.png; writing it would destroy/);
    }
    await expect(writeFileSafely(input, "x", { force: true, inputs: [join(folder, "alias.png")] })).rejects.toThrow(/is the input/);
    expect(await readFile(input, "utf8")).toBe("the input");
  });

  it("refuses to replace a folder or a FIFO", async () => {
    await mkdir(join(folder, "a-folder"), { recursive: true });
    await expect(writeFileSafely(join(folder, "a-folder"), "x", { force: true })).rejects.toThrow(/a-folder: exists and is a directory/);
    execFileSync("mkfifo", [join(folder, "a-fifo")]);
    await expect(writeFileSafely(join(folder, "a-fifo"), "x", { force: true })).rejects.toThrow(/a-fifo: exists and is a FIFO/);
  });

  it("leaves no file, and no temporary file, when a write fails midway", async () => {
    const path = await fresh("interrupted.bin");
    const failing = async (handle: import("node:fs/promises").FileHandle) => {
      await handle.write(new Uint8Array(1000));
      throw new Error("the data source failed");
    };
    await expect(writeFileSafely(path, failing, { force: false })).rejects.toThrow("the data source failed");
    await expect(stat(path)).rejects.toMatchObject({ code: "ENOENT" });
    // With force, the old file stays whole.
    await writeFile(path, "old");
    await expect(writeFileSafely(path, failing, { force: true })).rejects.toThrow("the data source failed");
    expect(await readFile(path, "utf8")).toBe("old");
    await noLeftovers();
  });

  it("names the path when its folder does not exist", async () => {
    const path = join(folder, "no-such-folder", "out.txt");
    await expect(writeFileSafely(path, "x", { force: true })).rejects.toThrow(`${path}: cannot write (ENOENT)`);
  });

  it("writeSafetensors replaces like fs.writeFile by default, and refuses as told", async () => {
    const path = await fresh("t.safetensors");
    const tensors = { w: { dtype: "F32" as const, shape: [1], data: new Float32Array([1]) } };
    await writeSafetensors(path, tensors);
    await writeSafetensors(path, tensors);
    await expect(writeSafetensors(path, tensors, undefined, { force: false })).rejects.toThrow(/already exists/);
    const file = await SafetensorsFile.open(path);
    expect(file.tensors.has("w")).toBe(true);
    await file.close();
  });
});

describe("wgsl-vlm preprocess --out", () => {
  const folder = join(dir, "preprocess");
  const run = (argv: string[]) => runCommand(command, argv);
  const image = join(folder, "a.png");
  const setUp = async () => {
    await mkdir(join(folder, "model"), { recursive: true });
    await writeFile(image, await sharp({ create: { width: 4, height: 4, channels: 3, background: "red" } }).png().toBuffer());
    await writeFile(join(folder, "model", "preprocessor_config.json"), "{}");
  };

  it("refuses to write onto its own image, even with --force, through a symlink or ./a/../a.png", async () => {
    await setUp();
    const original = await readFile(image);
    await symlink(image, join(folder, "link.png"));
    for (const out of [image, join(folder, "link.png"), `${folder}/model/../a.png`]) {
      await expect(run(["--image", image, "--out", out, "--force"])).rejects.toThrow(/is the input .*a\.png/);
    }
    const config = join(folder, "model", "preprocessor_config.json");
    await expect(run(["--image", image, "--model", join(folder, "model"), "--out", config, "--force"])).rejects.toThrow(/is the input/);
    expect(await readFile(image)).toEqual(original);
  });

  it("refuses an existing file (a model's weights) without --force, and replaces it with --force", async () => {
    await setUp();
    const weights = join(folder, "model", "model.safetensors");
    await writeFile(weights, "precious weights");
    await expect(run(["--image", image, "--out", weights])).rejects.toThrow(`${weights}: already exists (--force replaces it)`);
    expect(await readFile(weights, "utf8")).toBe("precious weights");
    const { code } = await run(["--image", image, "--out", weights, "--force"]);
    expect(code).toBe(0);
    const file = await SafetensorsFile.open(weights);
    expect(file.entry("pixel_values").shape).toEqual([1, 3, 224, 224]);
    await file.close();
  });
});

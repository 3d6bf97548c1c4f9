/**
 * `wgsl-vlm caption`: the tiny shapes model over fresh scenes, from a folder, a WebDataset shard
 * and a JSONL file; each caption as complete() gives it alone; resuming after an interruption,
 * a torn last line and a corrupt image.
 */
import { createWriteStream } from "node:fs";
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { pack } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import command from "../src/cli/caption.js";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import { exampleRandom, renderScenePng, sampleScene } from "../src/shapes/world.js";
import { captionImages } from "../src/tools/caption.js";
import { openInputs } from "../src/tools/caption_inputs.js";
import { runCommand, SEED, testGpu } from "./helpers.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");
const PROMPT = "What shapes are there?";
const OTHER = "Is there a circle?";
const COUNT = 7;
const MAX_NEW_TOKENS = 12;

interface Row {
  id: string;
  image: string;
  prompt: string;
  text?: string;
  tokens?: number[];
  finish_reason?: string;
  ms?: number;
  error?: string;
}

async function rows(path: string): Promise<Row[]> {
  return (await readFile(path, "utf8"))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Row);
}

const byId = (list: Row[]) => Object.fromEntries(list.map((r) => [r.id, r]));

describe(`caption (seed ${SEED})`, () => {
  let dir: string;
  let folder: string;
  let model: VisionLanguageModel;
  const names: string[] = [];
  const pngs: Buffer[] = [];
  /** complete() on each image alone, by file name. */
  const alone: Record<string, { text: string; tokens: number[] }> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-caption-"));
    folder = join(dir, "scenes");
    await mkdir(join(folder, "sub"), { recursive: true });
    for (let i = 0; i < COUNT; i++) {
      const png = await renderScenePng(sampleScene(exampleRandom(SEED, i)));
      const name = i % 3 === 2 ? `sub/scene${i}.png` : `scene${i}.png`;
      await writeFile(join(folder, name), png);
      names.push(name);
      pngs.push(png);
    }
    await writeFile(join(folder, "notes.txt"), "not an image");
    model = await loadModel(MODEL, { gpu: await testGpu(), dtype: "f32", maxBatch: 3 });
    for (let i = 0; i < COUNT; i++) {
      const r = await model.complete({ messages: [{ role: "user", content: PROMPT, images: [pngs[i]] }], maxNewTokens: MAX_NEW_TOKENS, temperature: 0 });
      alone[names[i]] = { text: r.text, tokens: r.tokens };
    }
  }, 120_000);
  afterAll(async () => {
    model?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("captions a folder as complete() does each image alone, and a rerun adds nothing", async () => {
    const out = join(dir, "folder.jsonl");
    const options = { out, prompts: [PROMPT], maxNewTokens: MAX_NEW_TOKENS, batch: 3 };
    const report = await captionImages(model, await openInputs([folder]), options);
    expect(report).toMatchObject({ captioned: COUNT, failed: 0, skipped: 0, stoppedEarly: false });
    const got = await rows(out);
    expect(got.map((r) => r.id).sort()).toEqual([...names].sort());
    for (const row of got) {
      expect(row).toMatchObject({ image: join(folder, row.id), prompt: PROMPT, ...alone[row.id] });
      expect(["stop", "length"]).toContain(row.finish_reason);
      expect(row.ms).toBeGreaterThanOrEqual(0);
    }
    const again = await captionImages(model, await openInputs([folder]), options);
    expect(again).toMatchObject({ captioned: 0, failed: 0, skipped: COUNT });
    expect(await rows(out)).toEqual(got);
  });

  it("resumes an interrupted run, and tolerates a torn last line: every image exactly once", async () => {
    const out = join(dir, "resumed.jsonl");
    const options = { out, prompts: [PROMPT], maxNewTokens: MAX_NEW_TOKENS, batch: 2 };
    const first = await captionImages(model, await openInputs([folder]), { ...options, limit: 3 });
    expect(first).toMatchObject({ captioned: 3, stoppedEarly: true });
    // An abort stops starting new images too.
    const stop = new AbortController();
    stop.abort();
    expect(await captionImages(model, await openInputs([folder]), { ...options, signal: stop.signal })).toMatchObject({ captioned: 0, skipped: 3, stoppedEarly: true });
    // A crash in the middle of writing a line.
    await appendFile(out, '{"id":"scene9.png","image":"x","prom');
    const second = await captionImages(model, await openInputs([folder]), options);
    expect(second).toMatchObject({ captioned: COUNT - 3, skipped: 3, tornLine: true, stoppedEarly: false });
    const got = await rows(out);
    expect(got.map((r) => r.id).sort()).toEqual([...names].sort());
    for (const row of got) expect(row).toMatchObject(alone[row.id]);
  });

  it("reads a WebDataset shard streaming, with the folder's captions", async () => {
    const shard = join(dir, "00000.tar");
    const tar = pack();
    const written = pipeline(tar, createWriteStream(shard));
    for (let i = 0; i < COUNT; i++) {
      const key = `0000${i}`;
      tar.entry({ name: `${key}.png` }, pngs[i]);
      tar.entry({ name: `${key}.txt` }, `alt text ${i}`);
      tar.entry({ name: `${key}.json` }, JSON.stringify({ key, status: "success" }));
    }
    tar.entry({ name: "00009.json" }, "{}"); // a sample without an image: skipped
    tar.finalize();
    await written;
    const out = join(dir, "shard.jsonl");
    const report = await captionImages(model, await openInputs([shard]), { out, prompts: [PROMPT], maxNewTokens: MAX_NEW_TOKENS, batch: 3 });
    expect(report).toMatchObject({ captioned: COUNT, failed: 0 });
    const got = byId(await rows(out));
    expect(Object.keys(got).sort()).toEqual(names.map((_, i) => `00000/0000${i}`));
    for (let i = 0; i < COUNT; i++) expect(got[`00000/0000${i}`]).toMatchObject({ image: `${shard}:0000${i}.png`, ...alone[names[i]] });
  });

  it("takes JSONL rows with their own prompts, and turns a corrupt image into an error row", async () => {
    const jsonl = join(dir, "rows.jsonl");
    const corrupt = join(dir, "corrupt.png");
    await writeFile(corrupt, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from("garbage, not a PNG at all")]));
    const lines = [
      { id: "a", image: `scenes/${names[0]}`, prompt: OTHER },
      { id: "b", image: `scenes/${names[1]}` },
      { id: "bad", image: "corrupt.png" },
    ];
    await writeFile(jsonl, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
    const out = join(dir, "rows-out.jsonl");
    const report = await captionImages(model, await openInputs([jsonl]), { out, prompts: [PROMPT], maxNewTokens: MAX_NEW_TOKENS });
    expect(report).toMatchObject({ captioned: 2, failed: 1 });
    const got = byId(await rows(out));
    const other = await model.complete({ messages: [{ role: "user", content: OTHER, images: [pngs[0]] }], maxNewTokens: MAX_NEW_TOKENS, temperature: 0 });
    expect(got.a).toMatchObject({ prompt: OTHER, text: other.text, tokens: other.tokens });
    expect(got.b).toMatchObject({ prompt: PROMPT, ...alone[names[1]] });
    expect(got.bad).toMatchObject({ image: corrupt, prompt: PROMPT });
    expect(got.bad.error).toMatch(/corrupt\.png|png|image/i);
    expect(got.bad.text).toBeUndefined();
    // The rerun tries the error row again (and drops the old one).
    const again = await captionImages(model, await openInputs([jsonl]), { out, prompts: [PROMPT], maxNewTokens: MAX_NEW_TOKENS });
    expect(again).toMatchObject({ captioned: 0, failed: 1, skipped: 2, retried: 1 });
    expect((await rows(out)).map((r) => r.id).sort()).toEqual(["a", "b", "bad"]);
  });

  it("checks its inputs: a JSONL row without an id or image, a duplicate id", async () => {
    const bad = join(dir, "bad.jsonl");
    await writeFile(bad, `{"id":"x","image":"a.png"}\n{"image":"b.png"}\n`);
    await expect(openInputs([bad])).rejects.toThrow(`${bad}:2: "id"`);
    await writeFile(bad, `{"id":"x","image":"a.png"}\n\n{"id":"x","image":"b.png"}\n`);
    await expect(openInputs([bad])).rejects.toThrow(`${bad}:3: id 'x' is already the id of ${bad}:1`);
    await writeFile(bad, `{"id":"x"}\n`);
    await expect(openInputs([bad])).rejects.toThrow(`${bad}:1: "image"`);
  });

  it("runs from the command line: a list file, --prompts round-robin, exit status 1 on a failed image", async () => {
    const list = join(dir, "list.txt");
    await writeFile(list, `scenes/${names[0]}\nscenes/${names[1]}\n\ncorrupt.png\n`);
    const prompts = join(dir, "prompts.txt");
    await writeFile(prompts, `${PROMPT}\n${OTHER}\n`);
    const out = join(dir, "cli.jsonl");
    const args = ["--model", MODEL, "--dtype", "f32", "--input", list, "--prompts", prompts, "--out", out, "--max-new-tokens", String(MAX_NEW_TOKENS), "--batch", "2", "--quiet"];
    const { code, stderr } = await runCommand(command, args);
    expect(code, stderr).toBe(1);
    expect(stderr).toMatch(/2 captioned .*1 failed/);
    const got = byId(await rows(out));
    expect(got[`scenes/${names[0]}`]).toMatchObject({ prompt: PROMPT, ...alone[names[0]] });
    expect(got[`scenes/${names[1]}`]).toMatchObject({ prompt: OTHER });
    expect(got["corrupt.png"]).toMatchObject({ prompt: PROMPT, error: expect.any(String) });

    await expect(runCommand(command, ["--model", MODEL, "--input", list, "--out", out])).rejects.toThrow("--prompt TEXT or --prompts FILE is required");
    await expect(runCommand(command, ["--model", MODEL, "--input", list, "--out", out, "--prompt", "x", "--prompts", prompts])).rejects.toThrow("not both");
    await expect(runCommand(command, ["--model", MODEL, "--input", list, "--prompt", "x"])).rejects.toThrow("--out");
    await expect(runCommand(command, ["--input", list, "--prompt", "x", "--out", out])).rejects.toThrow("--model");
    await expect(runCommand(command, ["--model", MODEL, "--prompt", "x", "--out", out])).rejects.toThrow("--input");
    await expect(runCommand(command, ["--model", MODEL, "--input", list, "--prompt", "x", "--out", list])).rejects.toThrow("is one of the inputs");
    await expect(runCommand(command, ["--model", MODEL, "--input", join(dir, "nothing"), "--prompt", "x", "--out", out])).rejects.toThrow("no such file");
  }, 60_000);
});

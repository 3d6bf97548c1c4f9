import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Checkpoint, CheckpointError, INDEX_FILE, SINGLE_FILE } from "../src/weights/checkpoint.js";
import { SafetensorsError } from "../src/weights/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../src/weights/safetensors_writer.js";
import { randn, rng, SEED } from "./helpers.js";

const root = await mkdtemp(join(tmpdir(), "wgsl-vlm-checkpoint-"));
afterAll(() => rm(root, { recursive: true, force: true }));

const random = rng(SEED);
const f32 = (shape: number[]): TensorToWrite => ({
  dtype: "F32",
  shape,
  data: Float32Array.from(randn(random, shape.reduce((n, d) => n * d, 1))),
});

/** Seven tensors spread over three shards, as transformers' save_pretrained would shard them. */
const SHARDS: Record<string, Record<string, TensorToWrite>> = {
  "model-00001-of-00003.safetensors": { "embed.weight": f32([11, 4]), "layers.0.w": f32([4, 4]), "layers.0.b": f32([4]) },
  "model-00002-of-00003.safetensors": { "layers.1.w": f32([4, 4]), "layers.1.b": f32([4]) },
  "model-00003-of-00003.safetensors": {
    "norm.weight": f32([4]),
    "ids": { dtype: "I64", shape: [3], data: BigInt64Array.from([1n, -2n, 3n]) },
  },
};
const ALL = Object.assign({}, ...Object.values(SHARDS)) as Record<string, TensorToWrite>;

function weightMap(shards = SHARDS): Record<string, string> {
  return Object.fromEntries(Object.entries(shards).flatMap(([file, tensors]) => Object.keys(tensors).map((name) => [name, file])));
}

/** A folder with shards and an index; `edit` may change the index or the shards before writing. */
async function shardedFolder(
  name: string,
  edit: { index?: (index: { metadata: object; weight_map: Record<string, string> }) => unknown; shards?: typeof SHARDS } = {},
): Promise<string> {
  const folder = join(root, name);
  await mkdir(folder, { recursive: true });
  const shards = edit.shards ?? SHARDS;
  for (const [file, tensors] of Object.entries(shards)) await writeSafetensors(join(folder, file), tensors, { format: "pt" });
  const index = { metadata: { total_size: 1234 }, weight_map: weightMap() };
  const content = edit.index ? edit.index(index) : index;
  await writeFile(join(folder, INDEX_FILE), typeof content === "string" ? content : JSON.stringify(content, null, 2));
  return folder;
}

async function expectAllTensors(checkpoint: Checkpoint): Promise<void> {
  expect([...checkpoint.tensors.keys()].sort()).toEqual(Object.keys(ALL).sort());
  for (const [name, t] of Object.entries(ALL)) {
    const entry = checkpoint.entry(name);
    expect(entry.shape, name).toEqual(t.shape);
    expect(entry.dtype, name).toBe(t.dtype);
    const bytes = await checkpoint.readBytes(name);
    expect(Buffer.from(bytes).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), name).toBe(true);
  }
}

describe("checkpoint", () => {
  it("opens a sharded folder, its index file, and each shard, as one lookup", async () => {
    const folder = await shardedFolder("sharded");
    const checkpoint = await Checkpoint.open(folder);
    expect(checkpoint.files).toHaveLength(3);
    expect(checkpoint.index).toBe(join(folder, INDEX_FILE));
    expect(checkpoint.metadata).toEqual({ format: "pt" });
    expect(checkpoint.entry("layers.1.w").file.path).toBe(join(folder, "model-00002-of-00003.safetensors"));
    expect(checkpoint.totalBytes).toBe(Object.values(ALL).reduce((n, t) => n + t.data.byteLength, 0));
    await expectAllTensors(checkpoint);
    const part = new Uint8Array(8);
    await checkpoint.readInto("layers.0.b", 4, part);
    expect(part).toEqual(new Uint8Array((ALL["layers.0.b"].data as Float32Array).buffer, 4, 8));
    expect((await checkpoint.readFloat32("norm.weight")).data).toEqual(ALL["norm.weight"].data);
    expect(() => checkpoint.entry("nope")).toThrow(/sharded: no tensor named 'nope'/);
    await checkpoint.close();

    const viaIndex = await Checkpoint.open(join(folder, INDEX_FILE));
    await expectAllTensors(viaIndex);
    await viaIndex.close();

    const one = await Checkpoint.open(join(folder, "model-00003-of-00003.safetensors"));
    expect([...one.tensors.keys()].sort()).toEqual(["ids", "norm.weight"]);
    await one.close();
  });

  it("opens a single-file folder, and prefers model.safetensors when both kinds are present", async () => {
    const folder = join(root, "single");
    await mkdir(folder);
    await writeSafetensors(join(folder, SINGLE_FILE), ALL);
    const checkpoint = await Checkpoint.open(folder);
    expect(checkpoint.index).toBeUndefined();
    await expectAllTensors(checkpoint);
    await checkpoint.close();

    const both = await shardedFolder("both");
    await writeSafetensors(join(both, SINGLE_FILE), { only: f32([2]) });
    const preferred = await Checkpoint.open(both);
    expect([...preferred.tensors.keys()]).toEqual(["only"]);
    await preferred.close();
  });

  it("names the index, shard and tensor when the index and shards disagree", async () => {
    const [first, second, third] = Object.keys(SHARDS);
    const cases: [string, Parameters<typeof shardedFolder>[1], RegExp][] = [
      ["missing-shard", { shards: { [first]: SHARDS[first], [second]: SHARDS[second] } },
        new RegExp(`${INDEX_FILE}: shard ${third} \\(holding '(norm\\.weight|ids)', among others\\) is missing`)],
      ["absent-from-shard", { index: (i) => ({ ...i, weight_map: { ...i.weight_map, "extra.weight": second } }) },
        new RegExp(`tensor 'extra\\.weight' is mapped to ${second}, which does not hold it`)],
      ["wrong-shard", { index: (i) => ({ ...i, weight_map: { ...i.weight_map, "layers.1.b": first } }) },
        new RegExp(`tensor 'layers\\.1\\.b' is mapped to ${first} but is in ${second}`)],
      ["not-in-index", { index: (i) => ({ ...i, weight_map: Object.fromEntries(Object.entries(i.weight_map).filter(([k]) => k !== "ids")) }) },
        new RegExp(`tensor 'ids' of ${third} is not in the weight_map`)],
      ["duplicate", { shards: { ...SHARDS, [second]: { ...SHARDS[second], "layers.0.w": f32([4, 4]) } } },
        new RegExp(`tensor 'layers\\.0\\.w' is in two shards, ${first} and ${second}`)],
      ["bad-json", { index: () => '{"weight_map": {"a": "x",}}' }, /not valid JSON/],
      ["duplicate-json-key", { index: () => `{"weight_map": {"ids": "${third}", "ids": "${first}"}}` }, /duplicate key "ids"/],
      ["no-weight-map", { index: () => ({ metadata: {} }) }, /has no weight_map object/],
      ["array", { index: () => [] }, /not a JSON object/],
      ["empty-map", { index: () => ({ weight_map: {} }) }, /weight_map is empty/],
      ["traversal", { index: (i) => ({ ...i, weight_map: { ...i.weight_map, ids: "../single/model.safetensors" } }) },
        /weight_map maps 'ids' to "\.\.\/single\/model\.safetensors", not a file name in the same folder/],
      ["not-a-string", { index: (i) => ({ ...i, weight_map: { ...i.weight_map, ids: 3 } }) }, /maps 'ids' to 3/],
    ];
    for (const [name, edit, message] of cases) {
      const folder = await shardedFolder(name, edit);
      const error = await Checkpoint.open(folder).then(() => undefined, (e: Error) => e);
      expect(error, name).toBeInstanceOf(CheckpointError);
      expect(error!.message, name).toMatch(message);
      expect(error!.message, name).toContain(join(root, name));
    }
  });

  it("passes on a broken shard's SafetensorsError, naming the shard", async () => {
    const folder = await shardedFolder("broken-shard");
    const shard = join(folder, Object.keys(SHARDS)[1]);
    await writeFile(shard, new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 1]));
    await expect(Checkpoint.open(folder)).rejects.toThrow(SafetensorsError);
    await expect(Checkpoint.open(folder)).rejects.toThrow(`${shard}: the tensors cover 0 bytes but the data region has 1`);
  });

  it("says what is missing from a folder", async () => {
    const empty = join(root, "empty");
    await mkdir(empty);
    await expect(Checkpoint.open(empty)).rejects.toThrow(`${empty}: a model folder needs model.safetensors or model.safetensors.index.json, and has neither`);
    await expect(Checkpoint.open(join(root, "nowhere"))).rejects.toThrow(/nowhere: no such file or folder/);
    // A folder with a model.safetensors folder inside is not a checkpoint either.
    const odd = join(root, "odd");
    await mkdir(join(odd, SINGLE_FILE), { recursive: true });
    await expect(Checkpoint.open(odd)).rejects.toThrow(/has neither/);
  });

  it("reads the golden checkpoint's layout (copied header, generated data)", async () => {
    // Opening a copy of a real transformers checkpoint's header shows the reader accepts it.
    const header = new Uint8Array(await readFile(new URL("./fixtures/weights/tiny-llava-a/header.json", import.meta.url)));
    const entries = JSON.parse(Buffer.from(header).toString("utf8")) as Record<string, { data_offsets?: [number, number] }>;
    const dataBytes = Math.max(...Object.values(entries).map((e) => e.data_offsets?.[1] ?? 0));
    const file = new Uint8Array(8 + header.byteLength + dataBytes);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.byteLength), true);
    file.set(header, 8);
    const folder = join(root, "golden");
    await mkdir(folder);
    await writeFile(join(folder, SINGLE_FILE), file);
    await cp(new URL("./fixtures/weights/tiny-llava-a/config.json", import.meta.url), join(folder, "config.json"));
    const checkpoint = await Checkpoint.open(folder);
    expect([...checkpoint.tensors.keys()].sort()).toEqual(Object.keys(entries).filter((k) => k !== "__metadata__").sort());
    expect(checkpoint.metadata).toEqual({ format: "pt" });
    expect(checkpoint.entry("language_model.model.embed_tokens.weight").shape).toEqual([300, 64]);
    await checkpoint.close();
  });
});

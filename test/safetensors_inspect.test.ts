import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import inspect from "../src/cli/inspect.js";
import { UsageError } from "../src/cli/command.js";
import { writeGguf } from "../src/weights/gguf_writer.js";
import { writeSafetensors } from "../src/weights/safetensors_writer.js";
import { runCommand } from "./helpers.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-inspect-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const run = (argv: string[]) => runCommand(inspect, argv);

describe("wgsl-vlm inspect", () => {
  it("prints each tensor, the metadata and the totals of a file", async () => {
    const path = join(dir, "model.safetensors");
    await writeSafetensors(path, {
      "layers.10.w": { dtype: "F16", shape: [2, 3], data: new Uint16Array(6) },
      "layers.2.w": { dtype: "BF16", shape: [4], data: new Uint16Array(4) },
      "ids": { dtype: "I64", shape: [], data: new BigInt64Array(1) },
    }, { format: "pt" });
    const { code, stdout: out, stderr: err } = await run([path]);
    expect(code).toBe(0);
    expect(err).toBe("");
    expect(out).toBe(
      [
        "name         dtype  shape   bytes",
        "ids          I64    []          8",
        "layers.2.w   BF16   [4]         8",
        "layers.10.w  F16    [2, 3]     12",
        "",
        "metadata",
        "  format: pt",
        "",
        "total: 3 tensors, 28 bytes (28 B)",
        "",
      ].join("\n"),
    );
    const json = JSON.parse((await run([path, "--json"])).stdout);
    expect(json.tensors[2]).toEqual({ name: "layers.10.w", dtype: "F16", shape: [2, 3], bytes: 12 });
    expect(json).toMatchObject({ totalTensors: 3, totalBytes: 28, metadata: { format: "pt" }, files: [path] });
    // The folder holding it reads the same.
    expect((await run([dir])).stdout).toBe(out);
  });

  it("lists a sharded folder with each tensor's shard", async () => {
    const folder = join(dir, "sharded");
    await mkdir(folder);
    await writeSafetensors(join(folder, "a.safetensors"), { x: { dtype: "F32", shape: [256, 1024], data: new Float32Array(256 * 1024) } });
    await writeSafetensors(join(folder, "b.safetensors"), { y: { dtype: "F32", shape: [1], data: new Float32Array(1) } });
    await writeFile(join(folder, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: { x: "a.safetensors", y: "b.safetensors" } }));
    const { code, stdout: out } = await run([folder]);
    expect(code).toBe(0);
    expect(out).toContain("x     F32    [256, 1024]  1048576  a.safetensors\n");
    expect(out).toContain("y     F32    [1]                4  b.safetensors\n");
    expect(out).toContain("metadata\n  a.safetensors: {}\n  b.safetensors: {}\n");
    expect(out).toContain("total: 2 tensors, 1048580 bytes (1.0 MiB) in 2 files\n");
  });

  it("exits 1 with one line naming the file and the problem", async () => {
    const bad = join(dir, "bad.safetensors");
    const header = Buffer.from('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}');
    const file = Buffer.concat([Buffer.alloc(8), header, Buffer.alloc(12)]);
    file.writeBigUInt64LE(BigInt(header.length));
    await writeFile(bad, file);
    for (const [path, reason] of [
      [bad, `${bad}: tensor 'w': 12 bytes of data, but F32 [2] needs 8`],
      [join(dir, "nope"), `${join(dir, "nope")}: no such file or folder`],
    ]) {
      const { code, stdout: out, stderr: err } = await run([path]);
      expect(code).toBe(1);
      expect(out).toBe("");
      expect(err).toBe(`wgsl-vlm inspect: ${reason}\n`);
    }
  });

  it("refuses a bad command line", async () => {
    await expect(run([])).rejects.toThrow(UsageError);
    await expect(run(["a", "b"])).rejects.toThrow(/one PATH expected, got 2/);
    await expect(run(["--frobnicate", "x"])).rejects.toThrow(/frobnicate/);
  });

  it("prints a GGUF file's version, tensors in PyTorch's order of dimensions, and typed metadata", async () => {
    const path = join(dir, "model.gguf");
    await writeGguf(path, {
      metadata: {
        "general.architecture": { type: "STRING", value: "llama" },
        "llama.context_length": { type: "UINT32", value: 4096 },
        "tokenizer.ggml.tokens": { type: "ARRAY", value: { itemType: "STRING", values: Array.from({ length: 10 }, (_, i) => `t${i}`) } },
        "big": { type: "UINT64", value: 2n ** 60n },
      },
      tensors: {
        "blk.10.attn_q.weight": { type: "Q8_0", dims: [64, 2], data: new Uint8Array(2 * 2 * 34) },
        "blk.2.attn_q.weight": { type: "F16", dims: [4], data: new Uint8Array(8) },
      },
    });
    const { code, stdout: out, stderr: err } = await run([path]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toBe(
      [
        "GGUF version 3, tensor data aligned to 32 bytes; shapes outermost first (ggml lists them the other way round)",
        "",
        "name                  type  shape    bytes",
        "blk.2.attn_q.weight   F16   [4]          8",
        "blk.10.attn_q.weight  Q8_0  [2, 64]    136",
        "",
        "metadata",
        '  general.architecture: "llama" (STRING)',
        "  llama.context_length: 4096 (UINT32)",
        '  tokenizer.ggml.tokens: [STRING x 10: "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", ... 2 more]',
        "  big: 1152921504606846976 (UINT64)",
        "",
        "total: 2 tensors, 144 bytes (144 B)",
        "",
      ].join("\n"),
    );
    const json = JSON.parse((await run([path, "--json"])).stdout);
    expect(json).toMatchObject({ format: "gguf", version: 3, alignment: 32, totalTensors: 2, totalBytes: 144 });
    expect(json.tensors[1]).toEqual({ name: "blk.10.attn_q.weight", type: "Q8_0", shape: [2, 64], bytes: 136, offset: 0 });
    expect(json.tensors[0].offset).toBe(160); // after the first one, aligned
    expect(json.metadata["big"]).toEqual({ type: "UINT64", value: "1152921504606846976" });
    expect(json.metadata["tokenizer.ggml.tokens"].value.values).toHaveLength(10);

    // A FIFO in its place is refused at once, not opened (which would block until a writer came).
    const fifo = join(dir, "fifo.gguf");
    execFileSync("mkfifo", [fifo]);
    const refused = await run([fifo]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/fifo\.gguf.*FIFO/);

    // A damaged one is one line on stderr and exit status 1.
    await writeFile(path, Buffer.from("GGUF\x03\x00\x00\x00"));
    const broken = await run([path]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/^wgsl-vlm inspect: .*model\.gguf: the tensor and metadata counts: the file ends at byte 8/);
  });
});

/**
 * `wgsl-vlm bench limits|kernels|e2e` at tiny sizes, --quick: each writes valid JSON and
 * markdown, the kernels run draws a roofline sharp can render, and the end-to-end run on the
 * tiny shape keeps the decoder's promises (one submit per token, each weight read once).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import benchCommand from "../src/cli/bench.js";
import { UsageError } from "../src/cli/command.js";
import { runCommand } from "./helpers.js";

const run = (argv: string[]) => runCommand(benchCommand, argv);

describe("wgsl-vlm bench", () => {
  let out: string;
  let limitsFile: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "wgsl-vlm-bench-"));
    limitsFile = join(out, "limits.json");
  });
  afterAll(() => rm(out, { recursive: true, force: true }));

  it("names an unknown benchmark, even one that is a property every object has", async () => {
    for (const name of ["nope", "toString", "constructor", "__proto__"]) {
      await expect(benchCommand.run([name])).rejects.toThrow(new UsageError(`unknown benchmark '${name}' (limits, kernels, e2e, serve, clip or load)`));
    }
  });

  it("limits: every ceiling measured, markdown on stdout, JSON beside it", async () => {
    const { code, stdout } = await run(["limits", "--sizes", "tiny", "--quick", "--out", out]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^## Device limits/);
    expect(stdout).toMatch(/\| copy \| [\d.]+ GB\/s \|/);
    const document = JSON.parse(await readFile(limitsFile, "utf8"));
    expect(document.kind).toBe("limits");
    const { limits } = document;
    for (const m of [limits.copy, limits.read, limits.fmaF32]) {
      expect(m.value).toBeGreaterThan(0);
      expect(m.time.n).toBeGreaterThanOrEqual(3);
    }
    expect(limits.bandwidthGBps).toBe(Math.max(limits.copy.value, limits.read.value));
    expect(limits.computeGFlops).toBe(limits.fmaF32.value);
  });

  it("kernels: every registered version checked and measured or refusing, the runtime's pick marked, a roofline drawn", async () => {
    const { code, stdout } = await run(["kernels", "--sizes", "tiny", "--quick", "--only", "matmul", "--json", "--out", out, "--limits", limitsFile]);
    expect(code).toBe(0);
    const document = JSON.parse(stdout);
    expect(document.kind).toBe("kernels");
    const { MATMUL_VERSIONS } = await import("../src/kernels/matmul/index.js");
    const cases = new Set(document.results.map((r: { model: string; phase: string; shape: string }) => `${r.model} ${r.phase} ${r.shape}`));
    expect(document.results.length).toBe(cases.size * Object.keys(MATMUL_VERSIONS).length);
    for (const key of cases) {
      const rows = document.results.filter((r: { model: string; phase: string; shape: string }) => `${r.model} ${r.phase} ${r.shape}` === key);
      expect(rows.filter((r: { picked: boolean }) => r.picked)).toHaveLength(1); // the rule picks exactly one version
    }
    // matvec refuses prefill's rows; the versions measured after it are not disturbed.
    expect(document.results.some((r: { status: string }) => r.status === "refused")).toBe(true);
    for (const r of document.results) {
      expect(r.op).toBe("matmul");
      expect(r.runtimeError).toBeNull();
      if (r.status === "ok") {
        expect(r.check).toMatchObject({ passed: true });
        expect(r.check.worst).toBeLessThanOrEqual(r.check.bound);
        expect(r.time.median).toBeGreaterThan(0);
        expect(r.gbps).toBeCloseTo(r.bytes / (r.time.median * 1e6), 6);
        expect(r.fraction).toBeGreaterThan(0);
      } else {
        expect(r.status).toBe("refused");
        expect(r.check).toBeNull();
      }
    }
    const markdown = await readFile(join(out, "kernels.md"), "utf8");
    expect(markdown).toContain("### matmul: GFLOP/s of each version");
    expect(markdown).toContain("| model | phase | kernel | part | shape | version | check | time |");
    expect(markdown).toMatch(/\| ok \(err [\d.e+-]+ ≤ [\d.e+-]+\) \|/);
    expect(markdown).toContain("★");
    const svg = await readFile(join(out, "roofline.svg"), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    // Every measured kernel that computes is a point (pure data movement has no place on FLOP/s axes).
    const plotted = document.results.filter((r: { status: string; flops: number }) => r.status === "ok" && r.flops > 0);
    expect((svg.match(/<title>/g) ?? []).length).toBe(plotted.length);
    expect(await sharp(Buffer.from(svg)).metadata()).toMatchObject({ format: "svg", width: 960 });
    expect(await sharp(join(out, "roofline.png")).metadata()).toMatchObject({ format: "png", width: 960, height: 640 });
  });

  it("e2e on the tiny shape: the phases timed, one submit and each weight read once per token", async () => {
    const args = ["e2e", "--shape", "tiny", "--quick", "--context", "96", "--decode-steps", "3", "--text-tokens", "8", "--out", out, "--limits", limitsFile];
    const { code, stdout } = await run(args);
    expect(code).toBe(0);
    expect(stdout).toContain("| time to first token |");
    const { result } = JSON.parse(await readFile(join(out, "e2e-tiny.json"), "utf8"));
    expect(result.image).toMatchObject({ method: "measured", features: 64 });
    expect(result.prefill).toMatchObject({ method: "measured", positions: 64 + 8 });
    expect(result.timeToFirstTokenMs).toBeCloseTo(result.image.ms + result.prefill.ms, 6);
    expect(result.decode).toMatchObject({ context: 96, steps: 3 });
    expect(result.perToken.submits).toBe(1);
    expect(Number.isInteger(result.perToken.dispatches)).toBe(true);
    expect(result.perToken.weightReadRatio).toBeGreaterThanOrEqual(1);
    expect(result.perToken.weightReadRatio).toBeLessThanOrEqual(1.1);
    expect(result.peakMemoryBytes).toBeGreaterThan(result.weightBytes);
  });

  it("e2e on the tiny shape in q8_0: its own files, the decoder's matrices packed, each read once per token", async () => {
    const args = ["e2e", "--shape", "tiny", "--dtype", "q8_0", "--quick", "--context", "48", "--decode-steps", "2", "--text-tokens", "4", "--batches", "1", "--out", out, "--limits", limitsFile];
    const { code, stdout } = await run(args);
    expect(code).toBe(0);
    expect(stdout).toMatch(/\| weights \| [\d.]+ [kMG]?B f(16|32) \+ Q8_0, ready in/);
    const { result } = JSON.parse(await readFile(join(out, "e2e-tiny-q8_0.json"), "utf8"));
    expect(result.quantize).toBe("Q8_0");
    expect(Object.keys(result.weightTypes).sort()).toEqual(["Q8_0", result.dtype].sort());
    expect(result.perToken.weightReadRatio).toBeCloseTo(1, 3);
  });

  it("serve: streaming clients against the server at each concurrency, answered in full", async () => {
    const model = join(import.meta.dirname, "..", "weights", "shapes-llava");
    const { code, stdout } = await run(["serve", "--model", model, "--clients", "1,3", "--requests", "3", "--max-tokens", "8", "--out", out, "--quiet"]);
    expect(code).toBe(0);
    expect(stdout).toContain("| concurrent clients | requests | requests/s |");
    const { levels } = JSON.parse(await readFile(join(out, "serve-shapes-llava.json"), "utf8"));
    expect(levels.map((l: { clients: number }) => l.clients)).toEqual([1, 3]);
    for (const level of levels) {
      expect(level.requests).toBe(3);
      expect(level.completionTokens).toBeGreaterThan(3); // every request answered, a description of several tokens each
      expect(level.firstTokenP50Ms).toBeGreaterThan(0);
      expect(level.firstTokenP99Ms).toBeGreaterThanOrEqual(level.firstTokenP50Ms);
    }
    await expect(run(["serve", "--model", model, "--clients", "0"])).rejects.toThrow(/--clients must be comma-separated integers/);
  });

  it("load: a random sharded checkpoint of a shape, read and loaded cold (as root) and warm", async () => {
    const { code, stdout } = await run(["load", "--shape", "tiny", "--shard-mb", "10", "--out", out]);
    expect(code).toBe(0);
    expect(stdout).toContain("| page cache | plain read of the files | loadModel() |");
    const { result } = JSON.parse(await readFile(join(out, "load-tiny-bf16.json"), "utf8"));
    expect(result.files).toBeGreaterThan(3); // 44 MB in shards of at most 10 MB
    expect(result.checkpointBytes).toBeGreaterThan(40e6);
    expect(result.storedDtype).toBe("f16");
    const passes = result.cold ? [result.cold, result.warm] : [result.warm];
    if (!result.cold) expect(result.coldSkipped).toMatch(/page cache could not be dropped/);
    for (const p of passes) {
      expect(p.readSeconds).toBeGreaterThan(0);
      expect(p.loadSeconds).toBeGreaterThan(0);
      expect(p.loadOverRead).toBeCloseTo(p.loadSeconds / p.readSeconds, 6);
      expect(p.firstTokenMs).toBeGreaterThan(0);
    }
    await expect(run(["load", "--shape", "tiny", "--checkpoint-dtype", "int8"])).rejects.toThrow(/--checkpoint-dtype must be bf16, f16 or f32/);
  });

  it("refuses bad command lines", async () => {
    await expect(run(["fast"])).rejects.toThrow(UsageError);
    await expect(run(["e2e", "--shape", "huge"])).rejects.toThrow(/--shape must be one of tiny, tinyllava-1.1b, llava-1.5-7b/);
    await expect(run(["e2e"])).rejects.toThrow(/either --shape or --model/);
    await expect(run(["e2e", "--shape", "tiny", "--dtype", "q3_k"])).rejects.toThrow(/--dtype must be f16, f32 or \(with --shape\) one of q8_0, q4_0/);
    await expect(run(["e2e", "--model", out, "--dtype", "q4_k"])).rejects.toThrow(/--dtype q4_k: random weights of a shape \(--shape\) only/);
    await expect(run(["kernels", "--sizes", "tiny", "--only", "nothing-like-this", "--limits", limitsFile])).rejects.toThrow(/matches no kernel/);
    await writeFile(join(out, "other.json"), "{}");
    await expect(run(["kernels", "--limits", join(out, "other.json")])).rejects.toThrow(/not the JSON of a `wgsl-vlm bench` run/);
  });
});

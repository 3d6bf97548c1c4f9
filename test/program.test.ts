import { describe, expect, it } from "vitest";
import { add, binaryReference, mul } from "../src/kernels/elementwise.js";
import { matmul, matmulReference } from "../src/kernels/matmul/index.js";
import { matmulErrorBounds } from "../src/kernels/matmul/reference.js";
import { scale } from "../src/kernels/elementwise.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { expectWithin, randn, rng, testGpu } from "./helpers.js";

describe("captured programs", async () => {
  const gpu = await testGpu();
  const random = rng();
  const [K, N] = [37, 5];

  it("replays what it captured, reading the inputs' current contents", async () => {
    const x = gpu.empty([1, K], "f32", { persistent: true });
    const y = gpu.tensor(randn(random, K), [1, K], "f32", { persistent: true });
    const ys = Float64Array.from(await gpu.read(y));
    const w = gpu.tensor(randn(random, N * K), [N, K], "f32", { persistent: true });
    const ws = Float64Array.from(await gpu.read(w));
    const out = gpu.empty([1, N], "f32", { persistent: true });
    // out = ((x + y) ⊙ y)·wᵀ, through two temporaries (and poison launches, in the tests).
    const program = gpu.capture("test step", () => void matmul(mul(add(x, y), y), w, { out }));
    expect(program.dispatches).toBeGreaterThanOrEqual(3);
    expect(program.workspaceBytes).toBeGreaterThan(0);
    const groups = gpu.bindGroupsCreated;
    const dispatches = gpu.dispatchCount;
    for (let round = 0; round < 3; round++) {
      const xs = randn(random, K);
      gpu.write(x, new Float32Array(xs));
      // Other work between replays must not be handed the program's temporaries: if it were,
      // this would overwrite them with a scaled copy of x before the replay reads them.
      const noise = gpu.scope(() => gpu.keep(scale(add(x, y), 3)));
      gpu.replay(program);
      noise.dispose();
      const a = binaryReference("mul", binaryReference("add", Float32Array.from(xs), ys), ys);
      const shape = { batch: 1, M: 1, N, K, batchedB: false };
      expectWithin(await gpu.read(out), matmulReference(a, ws, null, shape), matmulErrorBounds(a, ws, null, shape, "f32"), `round ${round}`);
    }
    expect(gpu.dispatchCount - dispatches).toBeGreaterThanOrEqual(3 * program.dispatches);
    const noiseGroups = gpu.bindGroupsCreated - groups;
    gpu.replay(program);
    await gpu.sync();
    expect(gpu.bindGroupsCreated - groups).toBe(noiseGroups); // a replay makes none
    program.dispose();
    expect(() => gpu.replay(program)).toThrow(/test step: replay of a disposed program/);
    for (const t of [x, y, w, out]) t.dispose();
  });

  it("refuses what a replay would not repeat, and temporaries that outlive the capture", async () => {
    const t = gpu.tensor([1, 2, 3], [3]);
    expect(() => gpu.capture("writes", () => gpu.write(t, new Float32Array(3)))).toThrow(/gpu.write\(\) inside gpu.capture\(\)/);
    let read: Promise<unknown> | null = null;
    gpu.capture("reads", () => void (read = gpu.read(t)));
    await expect(read).rejects.toThrow(/gpu.read\(\) inside gpu.capture\(\)/);
    expect(() => gpu.capture("nested", () => void gpu.capture("inner", () => {}))).toThrow(/inner: gpu.capture\(\) cannot nest/);
    let escaped: Tensor | null = null;
    expect(() => gpu.capture("escapes", () => void (escaped = gpu.keep(scale(t, 2))))).toThrow(ShapeError);
    expect(() => gpu.capture("escapes", () => void (escaped = gpu.keep(scale(t, 2))))).toThrow(/escapes: .*still alive after it/);
    escaped!.dispose();
    // After a refused capture the GPU records as before.
    const doubled = scale(t, 2);
    expect(Array.from(await gpu.read(doubled))).toEqual([2, 4, 6]);
    doubled.dispose();
    t.dispose();
  });
});

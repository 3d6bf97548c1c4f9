import { describe, expect, it } from "vitest";
import { scale } from "../src/kernels/elementwise.js";
import { DeviceLostError, GpuError, ShapeError } from "../src/tensor/errors.js";
import { Gpu } from "../src/tensor/gpu.js";
import { defineKernel } from "../src/tensor/kernel.js";
import { testGpu } from "./helpers.js";

describe("tensors and the runtime", async () => {
  const gpu = await testGpu();

  it("uploads and reads back every dtype, odd f16 lengths included", async () => {
    expect(Array.from(await gpu.tensor([1.5, -2, 3], [3], "f32").read())).toEqual([1.5, -2, 3]);
    expect(Array.from(await gpu.tensor([1.5, -2, 3], [3], "f16").read())).toEqual([1.5, -2, 3]);
    expect(Array.from(await gpu.tensor([-7, 2 ** 31 - 1], [2], "i32").read())).toEqual([-7, 2 ** 31 - 1]);
    expect(Array.from(await gpu.tensor([0, 2 ** 32 - 1], [2], "u32").read())).toEqual([0, 2 ** 32 - 1]);
    const [a, b] = await gpu.read(gpu.tensor([1], [1]), gpu.tensor([2, 3], [2], "f16"));
    expect([Array.from(a), Array.from(b)]).toEqual([[1], [2, 3]]);
  });

  it("poisons new activations with NaN so unwritten elements show", async () => {
    // Odd numbers of halves end in half a word; 515 words span three workgroups of the fill.
    for (const dtype of ["f32", "f16"] as const) {
      for (const size of [1, 5, 1029]) {
        const values = await gpu.empty([size], dtype).read();
        expect(Array.from(values).every(Number.isNaN)).toBe(true);
      }
    }
  });

  it("reshapes without copying and checks element counts", async () => {
    const t = gpu.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const r = t.reshape([3, -1]);
    expect(r.shape).toEqual([3, 2]);
    expect(r.buffer).toBe(t.buffer);
    expect(() => t.reshape([4, 2])).toThrow(ShapeError);
    expect(() => t.reshape([4, -1])).toThrow(/cannot reshape f32\[2x3\]/);
  });

  it("slices leading rows as views, at aligned offsets only", async () => {
    const t = gpu.tensor(Array.from({ length: 32 }, (_, i) => i), [8, 4]);
    const rows = t.slice(4, 3); // byte 64
    expect(Array.from(await rows.read())).toEqual(Array.from({ length: 12 }, (_, i) => 16 + i));
    expect(Array.from(await scale(rows, 2).read())).toEqual(Array.from({ length: 12 }, (_, i) => 2 * (16 + i)));
    const narrow = gpu.tensor(new Float32Array(10), [10, 1]);
    expect(() => narrow.slice(3, 2)).toThrow(/not a multiple of 16/);
    expect(() => t.slice(6, 3)).toThrow(/outside/);
  });

  it("frees storage when the last view is disposed, and reuses it from the pool", () => {
    const before = gpu.memory();
    const t = gpu.empty([1000], "f32");
    const view = t.reshape([10, 100]);
    t.dispose();
    expect(() => t.read()).toThrow(/used after dispose/);
    expect(gpu.memory().liveBytes).toBe(before.liveBytes + 4096);
    view.dispose();
    expect(gpu.memory().liveBytes).toBe(before.liveBytes);
    const created = gpu.memory().buffersCreated;
    gpu.empty([1000], "f32").dispose();
    expect(gpu.memory().buffersCreated).toBe(created);
    expect(gpu.memory().peakBytes).toBeGreaterThanOrEqual(before.liveBytes + 4096);
  });

  it("scope() disposes temporaries and keeps what it returns", () => {
    const live = gpu.memory().liveBytes;
    let temporary!: ReturnType<typeof gpu.empty>;
    const kept = gpu.scope(() => {
      temporary = gpu.empty([64]);
      const inner = gpu.scope(() => [gpu.empty([64]), gpu.empty([64])]);
      inner[1].dispose();
      return { result: inner[0] };
    });
    expect(temporary.disposed).toBe(true);
    expect(kept.result.disposed).toBe(false);
    kept.result.dispose();
    expect(gpu.memory().liveBytes).toBe(live);
    expect(() =>
      gpu.scope(() => {
        gpu.empty([64]);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(gpu.memory().liveBytes).toBe(live);
  });

  it("records many launches and submits them once", async () => {
    const x = gpu.tensor([1, 2, 3], [3]);
    await gpu.sync();
    const submits = gpu.submitCount;
    let y = x;
    for (let i = 0; i < 10; i++) y = scale(y, 2);
    expect(gpu.submitCount).toBe(submits);
    expect(Array.from(await y.read())).toEqual([1024, 2048, 3072]);
    expect(gpu.submitCount).toBe(submits + 1);
  });

  it("submits what was recorded on a persistent tensor before destroying it, so disposing a model mid-recording is safe", async () => {
    const weight = gpu.tensor([1, 2, 3, 4], [4]);
    const persistent = gpu.empty([4], "f32", { persistent: true });
    gpu.write(persistent, new Float32Array([5, 6, 7, 8]));
    const recorded = scale(persistent, 2); // recorded, not yet submitted
    persistent.dispose();
    const after = scale(weight, 3);
    expect(Array.from(await after.read())).toEqual([3, 6, 9, 12]);
    expect(Array.from(await recorded.read())).toEqual([10, 12, 14, 16]);
  });

  it("rejects tensors bigger than one storage binding with a clear error", () => {
    const max = gpu.limits.maxStorageBufferBindingSize;
    const big = gpu.empty([max / 4 + 4], "f32", { persistent: true });
    expect(() => scale(big, 2)).toThrow(/over this device's maxStorageBufferBindingSize.*split it/);
    big.dispose();
  });

  it("turns a shader the GPU rejects into a GpuError naming the kernel", async () => {
    const broken = defineKernel({
      name: "deliberately_broken",
      params: { n: "u32" },
      bindings: { x: "read_write" },
      wgsl: () => `@compute @workgroup_size(1) fn main() { x[0] = undefined_thing; }`,
    });
    const x = gpu.tensor([1], [1]);
    gpu.record(broken, { params: { n: 1 }, tensors: { x }, workgroups: [1] });
    const failure = await gpu.sync().catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(GpuError);
    expect(String(failure)).toMatch(/deliberately_broken/);
    // The runtime stays usable afterwards.
    expect(Array.from(await scale(gpu.tensor([2], [1]), 3).read())).toEqual([6]);
  });
});

describe("devices kept for the next load", () => {
  it("gives a released device, pipelines and all, to the next acquire() with the same options", async () => {
    const first = await Gpu.acquire({ poison: true });
    const x = first.tensor([1, 2, 3], [3]);
    const y = scale(x, 2);
    expect(Array.from(await y.read())).toEqual([2, 4, 6]);
    const compiled = first.pipelinesCreated;
    x.dispose();
    y.dispose();
    first.release();
    expect(first.memory().pooledBytes).toBe(0); // its pooled buffers freed while it waits

    const other = await Gpu.acquire({ poison: false });
    expect(other).not.toBe(first); // other options, another device
    const again = await Gpu.acquire({ poison: true });
    expect(again).toBe(first);
    const z = scale(again.tensor([5], [1]), 3);
    expect(Array.from(await z.read())).toEqual([15]);
    expect(again.pipelinesCreated).toBe(compiled); // nothing compiled again
    z.dispose();
    other.destroy();
    again.destroy();
    expect((await Gpu.acquire({ poison: true })) === first).toBe(false); // a destroyed device is not kept
  });

  it("destroys instead of keeping a device something is still on, one made by create(), or a lost one", async () => {
    const busy = await Gpu.acquire();
    const left = busy.tensor([1], [1]);
    busy.release();
    expect(() => left.gpu.empty([1])).toThrow(DeviceLostError);
    const next = await Gpu.acquire();
    expect(next).not.toBe(busy);
    next.destroy();

    const made = await Gpu.create();
    made.release();
    expect(() => made.empty([1])).toThrow(DeviceLostError);

    const lost = await Gpu.acquire({ onDeviceLost: () => undefined });
    lost.device.destroy();
    await lost.device.lost;
    lost.release();
    const fresh = await Gpu.acquire();
    expect(fresh).not.toBe(lost);
    fresh.destroy();
  });
});

describe("device loss", () => {
  it("is reported once and makes every later call throw DeviceLostError", async () => {
    const reports: string[] = [];
    const gpu = await Gpu.create({ onDeviceLost: (message) => reports.push(message) });
    const x = gpu.tensor([1, 2], [2]);
    gpu.device.destroy(); // what a driver reset looks like from here
    await new Promise((resolve) => setTimeout(resolve, 50));
    await gpu.device.lost;
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatch(/GPU device lost/);
    expect(gpu.isLost).toBe(true);
    expect(() => scale(x, 2)).toThrow(DeviceLostError);
    expect(() => gpu.empty([4])).toThrow(DeviceLostError);
  });

  it("says what to install when no adapter matches", async () => {
    await expect(Gpu.create({ adapter: "no-such-adapter-anywhere" })).rejects.toThrow(/scripts\/install-software-gpu\.sh/);
  });
});

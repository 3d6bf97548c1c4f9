import { describe, expect, it } from "vitest";
import { randomFill, randomFillReference } from "../src/kernels/random_fill.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, expectClose, floatDtypes, rng, roundTo, SEED, testGpu } from "./helpers.js";

describe("randomFill", async () => {
  const gpu = await testGpu();
  const random = rng();

  for (const dtype of floatDtypes(gpu)) {
    // Awkward sizes take the one-element path, multiples of 4 the vec4 one.
    for (const count of [...AWKWARD, 4, 132]) {
      it(`matches its reference, ${dtype} [${count}]`, async () => {
        const seed = Math.floor(random() * 2 ** 32);
        const options = { seed, mean: 0.5, std: 0.02, offset: Math.floor(random() * 1000) };
        const x = randomFill(gpu.empty([count], dtype), options);
        // f32: one rounding of the affine map (relative 2^-24 of |mean| + halfWidth); f16: the storage rounding.
        const tolerance = dtype === "f32" ? { atol: 1e-7, rtol: 0 } : { atol: 0, rtol: 2 ** -11 };
        expectClose(await x.read(), roundTo(randomFillReference(count, options), "f32"), tolerance, `randomFill ${dtype} seed ${seed}`);
        x.dispose();
      });
    }
  }

  it("spans more than 65535 workgroups (checked on a sample of the elements)", async () => {
    const count = 65536 * 256 + 3; // the grid spills into y
    const x = await randomFill(gpu.empty([count]), { seed: 9, std: 2 }).read();
    const indices = [...Array.from({ length: 1000 }, (_, i) => i * 16411), ...Array.from({ length: 300 }, (_, i) => count - 1 - i)];
    const got = indices.map((i) => x[i]);
    const expected = indices.map((i) => randomFillReference(1, { seed: 9, std: 2, offset: i })[0]);
    expectClose(got, roundTo(expected, "f32"), { atol: 1e-6, rtol: 0 }, "randomFill large");
  });

  it("fills row parts with the values of the whole (offset)", async () => {
    const seed = SEED >>> 0;
    const whole = await randomFill(gpu.empty([7, 5]), { seed }).read();
    const top = await randomFill(gpu.empty([3, 5]), { seed }).read();
    const bottom = await randomFill(gpu.empty([4, 5]), { seed, offset: 15 }).read();
    expect([...top, ...bottom]).toEqual([...whole]);
  });

  it("has the requested mean and standard deviation, and seeds give different streams", async () => {
    const n = 1 << 16;
    const a = Array.from(await randomFill(gpu.empty([n]), { seed: 1, mean: 1, std: 0.02 }).read());
    const b = Array.from(await randomFill(gpu.empty([n]), { seed: 2, mean: 1, std: 0.02 }).read());
    const mean = a.reduce((s, v) => s + v, 0) / n;
    const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / n);
    expect(Math.abs(mean - 1)).toBeLessThan(0.001);
    expect(Math.abs(std - 0.02)).toBeLessThan(0.0005);
    expect(Math.min(...a)).toBeGreaterThanOrEqual(1 - 0.02 * Math.sqrt(3));
    let same = 0;
    for (let i = 0; i < n; i++) if (a[i] === b[i]) same++;
    expect(same).toBeLessThan(n / 100);
  });

  it("refuses integer tensors and bad options before any dispatch", () => {
    const ids = gpu.empty([4], "u32");
    const x = gpu.empty([4]);
    const before = gpu.dispatchCount;
    expect(() => randomFill(ids, { seed: 1 })).toThrow(ShapeError);
    expect(() => randomFill(x, { seed: -1 })).toThrow(/seed/);
    expect(() => randomFill(x, { seed: 1, std: Number.NaN })).toThrow(/std/);
    expect(gpu.dispatchCount).toBe(before);
  });
});

import { describe, expect, it } from "vitest";
import {
  activation,
  activationFromConfig,
  activationReference,
  erf,
  erfReference,
  siluMul,
  siluMulReference,
  type ActivationKind,
} from "../src/kernels/activations.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

const KINDS: ActivationKind[] = ["gelu", "gelu_tanh", "quick_gelu", "silu"];

/** n + 1 evenly spaced values from `from` to `to`, rounded to f32. */
function grid(from: number, to: number, n: number): Float32Array {
  return Float32Array.from({ length: n + 1 }, (_, i) => from + ((to - from) * i) / n);
}

/** The spacing of float32 values around |v| (the subnormal spacing below the normal range). */
function ulpF32(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

/** The next float32 above and below v. */
function neighbours(v: number): number[] {
  const bits = new Uint32Array(new Float32Array([v]).buffer)[0];
  return Array.from(new Float32Array(new Uint32Array([bits - 1, bits + 1]).buffer));
}

describe("activations", async () => {
  const gpu = await testGpu();
  const random = rng();

  it("maps transformers' activation names and rejects others, listing the supported ones", () => {
    expect(activationFromConfig("gelu")).toBe("gelu");
    for (const name of ["gelu_new", "gelu_pytorch_tanh", "gelu_fast"]) expect(activationFromConfig(name)).toBe("gelu_tanh");
    expect(activationFromConfig("quick_gelu")).toBe("quick_gelu");
    expect(activationFromConfig("silu")).toBe("silu");
    expect(activationFromConfig("swish")).toBe("silu");
    expect(() => activationFromConfig("relu")).toThrow(/unsupported activation "relu".*gelu, gelu_new, .*swish/);
    expect(() => activationFromConfig("toString")).toThrow(/unsupported activation/);
  });

  it("the float64 erf reference matches mpmath to 1e-15", () => {
    // erf(x) from mpmath.erf at 40 digits, rounded to 20.
    const known: [number, number][] = [
      [1e-20, 1.1283791670955125739e-20],
      [1e-10, 1.1283791670955125739e-10],
      [0.1, 0.1124629160182848922],
      [0.5, 0.52049987781304653768],
      [1, 0.84270079294971486934],
      [1.5, 0.96610514647531072707],
      [2, 0.99532226501895273416],
      [2.5, 0.99959304798255504106], // where the series hands over to the continued fraction
      [3, 0.99997790950300141456],
      [4, 0.99999998458274209972],
      [6, 0.99999999999999997848],
    ];
    for (const [x, value] of known) {
      expect(Math.abs(erfReference(x) - value)).toBeLessThan(1e-15 * value);
      expect(erfReference(-x)).toBe(-erfReference(x));
    }
    expect(erfReference(0)).toBe(0);
    expect(erfReference(Infinity)).toBe(1);
    expect(erfReference(-1e4)).toBe(-1);
  });

  it("erf in f32 is within 3 ulps of the float64 erf over [-10, 10], tiny arguments and extremes", async () => {
    const tiny = Array.from({ length: 3801 }, (_, i) => 10 ** (-38 + i / 100)); // 1e-38 .. 1, log-spaced
    const extremes = [0, 1e-20, 1e-30, 0.5, 1, 2, 3.92, 6, 1e4, 3e38, Infinity];
    const edges = [1, 3.92].flatMap(neighbours); // either side of the region boundaries
    const positive = Float32Array.from([...grid(0, 10, 200_000), ...tiny, ...extremes, ...edges]);
    const x = Float32Array.from([...positive, ...positive.map((v) => -v)]);
    const actual = await erf(gpu.tensor(x, [x.length])).read();
    let worst = 0;
    let worstAt = 0;
    for (let i = 0; i < x.length; i++) {
      const expected = erfReference(x[i]);
      const ulps = Math.abs(actual[i] - expected) / ulpF32(expected);
      if (!(ulps <= worst)) {
        worst = ulps;
        worstAt = x[i];
      }
    }
    // The limit is about twice the error the kernel's header reports for its fits (measured on
    // lavapipe), leaving room for another GPU's less accurate exp.
    expect(worst, `max error ${worst.toFixed(2)} ulps at x = ${worstAt}`).toBeLessThanOrEqual(3);
  });

  it("each activation in f32 matches float64 densely over [-10, 10] and stays finite and right for large |x|", async () => {
    const large = [20, 50, 100, 1000, 1e4, 1e6].flatMap((v) => [v, -v]);
    const x = Float32Array.from([...grid(-10, 10, 100_000), ...large, 1e-20, -1e-20, 0]);
    const input = gpu.tensor(x, [x.length]);
    for (const kind of KINDS) {
      const actual = await activation(input, kind).read();
      expect(actual.every(Number.isFinite), `${kind} gave a non-finite value`).toBe(true);
      expectClose(actual, activationReference(x, kind), TOLERANCE.f32, kind);
    }
  });

  for (const dtype of floatDtypes(gpu)) {
    for (const kind of KINDS) {
      it(`${kind} ${dtype} on shapes [n, 17] and [n, 129], n in ${AWKWARD.join(", ")}`, async () => {
        for (const rows of AWKWARD) {
          for (const cols of [17, 129]) {
            const x = upload(gpu, randn(random, rows * cols, 3), [rows, cols], dtype);
            const out = activation(x.t, kind);
            expect(out.shape).toEqual([rows, cols]);
            expect(out.dtype).toBe(dtype);
            expectClose(await out.read(), activationReference(x.values, kind), TOLERANCE[dtype], `${kind} ${dtype} [${rows}, ${cols}]`);
          }
        }
      });
    }

    it(`siluMul ${dtype} on awkward shapes`, async () => {
      for (const rows of AWKWARD) {
        const gate = upload(gpu, randn(random, rows * 129, 3), [rows, 129], dtype);
        const up = upload(gpu, randn(random, rows * 129), [rows, 129], dtype);
        const out = siluMul(gate.t, up.t);
        expect(out.shape).toEqual([rows, 129]);
        expectClose(await out.read(), siluMulReference(gate.values, up.values), TOLERANCE[dtype], `siluMul ${dtype} [${rows}, 129]`);
      }
    });
  }

  if (gpu.hasF16) {
    it("mixed dtypes: f16 in to f32 out, f32 in to f16 out, siluMul with f16 gate and f32 up", async () => {
      const x16 = upload(gpu, randn(random, 257, 3), [257], "f16");
      expectClose(await activation(x16.t, "gelu", "f32").read(), activationReference(x16.values, "gelu"), TOLERANCE.f32, "gelu f16→f32");
      const x32 = upload(gpu, randn(random, 257, 3), [257], "f32");
      const out16 = activation(x32.t, "quick_gelu", "f16");
      expect(out16.dtype).toBe("f16");
      expectClose(await out16.read(), activationReference(x32.values, "quick_gelu"), TOLERANCE.f16, "quick_gelu f32→f16");
      const gate = upload(gpu, randn(random, 257, 3), [257], "f16");
      const up = upload(gpu, randn(random, 257), [257], "f32");
      expectClose(await siluMul(gate.t, up.t, "f32").read(), siluMulReference(gate.values, up.values), TOLERANCE.f32, "siluMul f16·f32→f32");
    });
  }

  it("siluMul stays finite for large gates", async () => {
    const gate = Float32Array.from([-1e4, -1000, -100, -20, 20, 100, 1000, 1e4]);
    const up = Float32Array.from([3, -2, 5, 7, -1, 0.5, 2, -3]);
    const actual = await siluMul(gpu.tensor(gate, [8]), gpu.tensor(up, [8])).read();
    expect(actual.every(Number.isFinite)).toBe(true);
    expectClose(actual, siluMulReference(gate, up), TOLERANCE.f32, "siluMul large");
  });

  it("spans more than 65535 workgroups", async () => {
    // 16.8M elements: the grid spills into y. The input repeats a random period of 1001 values,
    // so the float64 reference is computed once per period (randn and exp over 16.8M values in
    // JavaScript would take most of this file's time).
    const n = 65536 * 256 + 5;
    const period = Float32Array.from(randn(random, 1001, 3));
    const expectedPeriod = activationReference(period, "silu");
    const x = Float32Array.from({ length: n }, (_, i) => period[i % 1001]);
    const expected = Float64Array.from({ length: n }, (_, i) => expectedPeriod[i % 1001]);
    expectClose(await activation(gpu.tensor(x, [n]), "silu").read(), expected, TOLERANCE.f32, "silu large");
  });

  it("returns empty tensors for empty inputs", async () => {
    expect((await activation(gpu.empty([0, 4]), "gelu").read()).length).toBe(0);
    expect((await siluMul(gpu.empty([3, 0]), gpu.empty([3, 0])).read()).length).toBe(0);
  });

  it("rejects bad kinds, shapes and dtypes before any dispatch", () => {
    const x = gpu.tensor(new Float32Array(6), [2, 3]);
    const flat = gpu.tensor(new Float32Array(6), [6]);
    const ints = gpu.tensor(new Int32Array(6), [2, 3], "i32");
    const before = gpu.dispatchCount;
    expect(() => activation(x, "relu" as ActivationKind)).toThrow(/unknown kind "relu"/);
    expect(() => activation(ints, "silu")).toThrow(/x .* is not f32 or f16/);
    expect(() => activation(x, "silu", "i32")).toThrow(/output dtype/);
    expect(() => erf(ints)).toThrow(ShapeError);
    expect(() => siluMul(x, flat)).toThrow(/gate .* and up .* differ in shape/);
    expect(() => siluMul(x, ints)).toThrow(/up .* is not f32 or f16/);
    expect(() => siluMul(x, x, "u32")).toThrow(ShapeError);
    expect(gpu.dispatchCount).toBe(before);
  });
});

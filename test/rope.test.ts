import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { rope, ropeInverseFrequencies, ropeReference, ropeTable, ropeTableData, ropeTolerance } from "../src/kernels/rope.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

const POSITIONS = 4100;

/** Applies a host copy of the table: isolates the kernel from the float32-angle question. */
function ropeWithTable(x: ArrayLike<number>, [S, H, D]: number[], table: Float32Array, offset: number): Float64Array {
  const half = D / 2;
  const out = new Float64Array(S * H * D);
  for (let s = 0; s < S; s++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < half; i++) {
        const entry = ((offset + s) * half + i) * 2;
        const [cos, sin] = [table[entry], table[entry + 1]];
        const first = (s * H + h) * D + i;
        out[first] = x[first] * cos - x[first + half] * sin;
        out[first + half] = x[first + half] * cos + x[first] * sin;
      }
    }
  }
  return out;
}

interface TorchRopeCase {
  headDim: number;
  theta: number;
  positions: number[];
  invFreq: number[];
  cos: number[][];
  sin: number[][];
}

describe("rope", async () => {
  const gpu = await testGpu();
  const random = rng();
  const tables = new Map<string, { t: Tensor; data: Float32Array }>();
  function tableFor(headDim: number, theta: number) {
    const key = `${headDim}/${theta}`;
    let table = tables.get(key);
    if (!table) {
      const options = { headDim, theta, positions: POSITIONS };
      table = { t: ropeTable(gpu, options), data: ropeTableData(options) };
      tables.set(key, table);
    }
    return table;
  }

  // [tokens, heads, headDim, positionOffset]: odd head counts, offsets 0, small and near the
  // table's end (the last case uses its very last position).
  const cases: [number, number, number, number][] = [
    [1, 1, 2, 0],
    [17, 3, 2, 4000],
    [5, 1, 8, 1],
    [17, 3, 8, 2047],
    [33, 5, 64, 0],
    [3, 7, 64, 4096],
    [7, 3, 128, 3],
    [4, 5, 128, POSITIONS - 4],
  ];

  for (const dtype of floatDtypes(gpu)) {
    for (const theta of [10000, 1e6]) {
      for (const [S, H, D, offset] of cases) {
        it(`${dtype} theta ${theta} [${S}, ${H}, ${D}] from position ${offset}`, async () => {
          const x = upload(gpu, randn(random, S * H * D), [S, H, D], dtype);
          const table = tableFor(D, theta);
          const out = rope(x.t, table.t, offset);
          expect(out.shape).toEqual([S, H, D]);
          expect(out.dtype).toBe(dtype);
          const actual = await out.read();
          expectClose(actual, ropeWithTable(x.values, [S, H, D], table.data, offset), TOLERANCE[dtype], `rope vs table ${dtype}`);
          const tolerance = ropeTolerance(TOLERANCE[dtype], x.values, offset + S - 1);
          expectClose(actual, ropeReference(x.values, [S, H, D], theta, offset), tolerance, `rope vs float64 ${dtype}`);
        });
      }
    }
  }

  if (gpu.hasF16) {
    it("mixed dtypes: f16 in, f32 out and f32 in, f16 out", async () => {
      const shape: [number, number, number] = [9, 3, 64];
      const table = tableFor(64, 10000);
      for (const [inDtype, outDtype] of [["f16", "f32"], ["f32", "f16"]] as const) {
        const x = upload(gpu, randn(random, 9 * 3 * 64), [...shape], inDtype);
        const out = rope(x.t, table.t, 100, outDtype);
        expect(out.dtype).toBe(outDtype);
        expectClose(await out.read(), ropeWithTable(x.values, shape, table.data, 100), TOLERANCE[outDtype], `rope ${inDtype}->${outDtype}`);
      }
    });
  }

  it("position 0 leaves x unchanged and the first pair turns by exactly the position", async () => {
    const x = gpu.tensor([1, 0.5, 0, 0], [1, 1, 4], "f32");
    expect(Array.from(await rope(x, tableFor(4, 10000).t, 0).read())).toEqual([1, 0.5, 0, 0]);
    // Pair 0 has inv_freq 1: (1, 0) rotated by 3 radians is (cos 3, sin 3).
    const y = gpu.tensor([1, 0, 0, 0], [1, 1, 4], "f32");
    expectClose(await rope(y, tableFor(4, 10000).t, 3).read(), [Math.cos(3), 0, Math.sin(3), 0], TOLERANCE.f32, "turn");
  });

  it("builds the table transformers 4.40 builds (fixture made with torch)", () => {
    const fixture = JSON.parse(readFileSync(new URL("fixtures/rope/torch_rope.json", import.meta.url), "utf8")) as { cases: TorchRopeCase[] };
    for (const c of fixture.cases) {
      const inv = ropeInverseFrequencies(c.headDim, c.theta);
      const half = c.headDim / 2;
      // Bit-exact where torch takes its scalar powf path (fewer than 16 frequencies, as in
      // the tiny golden models); its vectorized Sleef powf may round the other way: 1 ulp.
      for (let i = 0; i < half; i++) {
        const ulp = 2 ** (Math.floor(Math.log2(c.invFreq[i])) - 23);
        const allowed = half < 16 ? 0 : ulp;
        expect(Math.abs(inv[i] - c.invFreq[i]), `inv_freq[${i}] D ${c.headDim} theta ${c.theta}`).toBeLessThanOrEqual(allowed);
      }
      const data = ropeTableData({ headDim: c.headDim, theta: c.theta, positions: Math.max(...c.positions) + 1 });
      const ours: number[] = [];
      const theirs: number[] = [];
      c.positions.forEach((p, row) => {
        for (let i = 0; i < half; i++) {
          ours.push(data[(p * half + i) * 2], data[(p * half + i) * 2 + 1]);
          theirs.push(c.cos[row][i], c.sin[row][i]);
        }
      });
      // Same float32 angles; torch's float32 cos/sin are within an ulp or two (1e-7) of ours,
      // and a 1-ulp inv_freq moves an angle at position 4095 by under 2e-7.
      expectClose(ours, theirs, { atol: 5e-7, rtol: 0 }, `cos/sin D ${c.headDim} theta ${c.theta}`);
    }
  });

  it("rejects bad shapes and arguments before any dispatch", () => {
    const table = tableFor(8, 10000).t;
    const x = gpu.tensor(new Float32Array(2 * 3 * 8), [2, 3, 8]);
    const odd = gpu.tensor(new Float32Array(2 * 3 * 7), [2, 3, 7]);
    const flat = gpu.tensor(new Float32Array(2 * 24), [2, 24]);
    const other = tableFor(64, 10000).t;
    const ints = gpu.tensor(new Int32Array(2 * 3 * 8), [2, 3, 8], "i32");
    const before = gpu.dispatchCount;
    expect(() => rope(odd, table, 0)).toThrow(/must be even/);
    expect(() => rope(flat, table, 0)).toThrow(/must be \[tokens, heads, headDim\]/);
    expect(() => rope(x, other, 0)).toThrow(/is for head size 64/);
    expect(() => rope(x, table, POSITIONS - 1)).toThrow(/outside table/);
    expect(() => rope(x, table, -1)).toThrow(/positionOffset/);
    expect(() => rope(x, table, 1.5)).toThrow(/positionOffset/);
    expect(() => rope(ints, table, 0)).toThrow(/f32 or f16/);
    expect(() => rope(x, x, 0)).toThrow(/table/);
    expect(() => rope(x, table, 0, "i32")).toThrow(ShapeError);
    expect(() => ropeTable(gpu, { headDim: 7, theta: 10000, positions: 8 })).toThrow(/headDim/);
    expect(() => ropeTable(gpu, { headDim: 8, theta: 0, positions: 8 })).toThrow(/theta/);
    expect(() => ropeTable(gpu, { headDim: 8, theta: 10000, positions: 0 })).toThrow(/positions/);
    expect(gpu.dispatchCount).toBe(before);
  });
});

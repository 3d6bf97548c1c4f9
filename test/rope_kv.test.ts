/**
 * ropeKV: rope of q and k and the KV-cache append from one qkv tensor in one launch, against
 * the float64 reference (ropeReference + writeKVReference), against the unfused rope + writeKV
 * (bit for bit), with the position given as a number and as a StepValue (bit for bit too).
 */
import { describe, expect, it } from "vitest";
import { writeKV } from "../src/kernels/kv_cache.js";
import { rope, ropeTable, ropeTolerance } from "../src/kernels/rope.js";
import { ropeKV, ropeKVReference, type RopeKVShape } from "../src/kernels/rope_kv.js";
import type { StepValue } from "../src/kernels/step_value.js";
import type { DType } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { EXACT } from "../src/kernels/tolerance.js";
import { expectClose, floatDtypes, randn, rng, roundTo, testGpu, TOLERANCE, upload } from "./helpers.js";
import { launchesOf } from "./launches.js";

const THETA = 10000;
const POSITIONS = 300;

describe("ropeKV", async () => {
  const gpu = await testGpu();
  const random = rng();
  const tables = new Map<number, Tensor>();
  const tableFor = (D: number) => {
    if (!tables.has(D)) tables.set(D, ropeTable(gpu, { headDim: D, theta: THETA, positions: POSITIONS }));
    return tables.get(D)!;
  };

  /** Random qkv and caches (the caches hold random values, so that what is not written is seen to stay). */
  function ropeKVCase(shape: RopeKVShape, qkvDtype: DType, cacheDtype: DType) {
    const { S, H, Hkv, D, capacity } = shape;
    const qkv = upload(gpu, randn(random, S * (H + 2 * Hkv) * D), [S, (H + 2 * Hkv) * D], qkvDtype);
    const cacheShape = [Hkv, capacity, D];
    const fresh = () => upload(gpu, randn(random, Hkv * capacity * D), cacheShape, cacheDtype);
    return { qkv, keys: fresh(), values: fresh() };
  }

  /** Host copies of a cache, to run two launches on equal caches. */
  const copyOf = async (t: Tensor) => gpu.tensor(await t.read(), [...t.shape], t.dtype);

  // [S, H, H_kv, D, capacity, position]: one token, grouped queries, prefill-sized, odd head
  // counts, D = 2 (one pair per head), writes that end exactly at the capacity.
  const cases: [number, number, number, number, number, number][] = [
    [1, 1, 1, 2, 1, 0],
    [1, 4, 2, 8, 20, 7],
    [3, 5, 1, 16, 40, 37],
    [17, 3, 3, 6, 30, 13],
    [4, 8, 2, 64, 290, 286],
    [2, 6, 3, 128, 9, 0],
  ];

  for (const qkvDtype of floatDtypes(gpu)) {
    for (const cacheDtype of floatDtypes(gpu)) {
      it(`qkv ${qkvDtype}, caches ${cacheDtype}: the reference, in one launch, and the unfused rope + writeKV bit for bit`, async () => {
        for (const [S, H, Hkv, D, capacity, position] of cases) {
          const shape = { S, H, Hkv, D, capacity };
          const what = `ropeKV ${qkvDtype}→${cacheDtype} ${JSON.stringify(shape)} at ${position}`;
          const c = ropeKVCase(shape, qkvDtype, cacheDtype);
          const [keys2, values2] = [await copyOf(c.keys.t), await copyOf(c.values.t)];
          const { result: q, kernels } = launchesOf(gpu, () => ropeKV(c.qkv.t, tableFor(D), c.keys.t, c.values.t, position));
          expect(kernels).toEqual(["rope_kv"]);
          expect(q.shape).toEqual([S, H, D]);
          expect(q.dtype).toBe("f32");
          const [gotQ, gotK, gotV] = [await q.read(), await c.keys.t.read(), await c.values.t.read()];

          const ref = ropeKVReference(c.qkv.values, shape, THETA, position, c.keys.values, c.values.values);
          const last = position + S - 1;
          expectClose(gotQ, ref.q, ropeTolerance(TOLERANCE.f32, c.qkv.values, last), `${what} q`);
          expectClose(gotK, ref.keys, ropeTolerance(TOLERANCE[cacheDtype], c.qkv.values, last), `${what} keys`);
          // Values are copied: exact once rounded to the cache's dtype (what was there already is).
          expectClose(gotV, roundTo(ref.values, cacheDtype), EXACT, `${what} values`);

          // The unfused composition on the same inputs, from q, k and v uploaded apart.
          const row = (H + 2 * Hkv) * D;
          const part = (from: number, heads: number) =>
            gpu.tensor(
              Float32Array.from({ length: S * heads * D }, (_, e) => c.qkv.values[Math.floor(e / (heads * D)) * row + from * D + (e % (heads * D))]),
              [S, heads, D],
              qkvDtype,
            );
          const unfusedQ = rope(part(0, H), tableFor(D), position, "f32");
          writeKV(keys2, rope(part(H, Hkv), tableFor(D), position, "f32"), position);
          writeKV(values2, part(H + Hkv, Hkv), position);
          expect(gotQ, `${what} q vs rope`).toEqual(await unfusedQ.read());
          expect(gotK, `${what} keys vs rope + writeKV`).toEqual(await keys2.read());
          expect(gotV, `${what} values vs writeKV`).toEqual(await values2.read());
        }
      });
    }
  }

  it("gives the same bits with the position read at run time (a StepValue) as with the number", async () => {
    const shape = { S: 2, H: 4, Hkv: 2, D: 16, capacity: 50 };
    // One state tensor, rewritten between launches: the value is read when each launch runs.
    // state[1] + plus is the position; plus is negative, and the elements around hold junk.
    const state = gpu.tensor(Uint32Array.from([0xdeadbeef, 0, 0xdeadbeef]), [3], "u32");
    const step: StepValue = { tensor: state, index: 1, plus: -3, max: 48 };
    for (const position of [0, 9, 48]) {
      const c = ropeKVCase(shape, "f32", gpu.hasF16 ? "f16" : "f32");
      const [keys2, values2] = [await copyOf(c.keys.t), await copyOf(c.values.t)];
      const q = ropeKV(c.qkv.t, tableFor(16), c.keys.t, c.values.t, position);
      gpu.write(state, Uint32Array.of((position + 3) >>> 0), 4);
      const { result: q2, kernels } = launchesOf(gpu, () => ropeKV(c.qkv.t, tableFor(16), keys2, values2, step));
      expect(kernels).toEqual(["rope_kv"]);
      expect(await q2.read(), `q at ${position}`).toEqual(await q.read());
      expect(await keys2.read(), `keys at ${position}`).toEqual(await c.keys.t.read());
      expect(await values2.read(), `values at ${position}`).toEqual(await c.values.t.read());
    }
  });

  it("drops the cache writes of run-time positions past the capacity", async () => {
    const shape = { S: 3, H: 2, Hkv: 2, D: 4, capacity: 10 };
    const c = ropeKVCase(shape, "f32", "f32");
    const state = gpu.tensor(Uint32Array.from([8]), [1], "u32");
    // max promises positions up to 7; the state says 8, so rows 0 and 1 land at 8 and 9 and
    // row 2 (position 10) is dropped rather than written over head 1's position 0.
    ropeKV(c.qkv.t, tableFor(4), c.keys.t, c.values.t, { tensor: state, index: 0, plus: 0, max: 7 });
    const firstTwo = c.qkv.values.subarray(0, 2 * 6 * 4);
    const ref = ropeKVReference(firstTwo, { ...shape, S: 2 }, THETA, 8, c.keys.values, c.values.values);
    expectClose(await c.keys.t.read(), ref.keys, ropeTolerance(TOLERANCE.f32, firstTwo, 9), "keys");
    expectClose(await c.values.t.read(), ref.values, EXACT, "values");
  });

  it("takes one sequence's rows of a shared qkv and writes its queries into their rows of a shared q", async () => {
    // Two sequences of 2 and 3 rows, each with its own caches and position (one a StepValue).
    const [H, Hkv, D, capacity] = [4, 2, 8, 30];
    const whole = ropeKVCase({ S: 5, H, Hkv, D, capacity }, "f32", "f32");
    const row = (H + 2 * Hkv) * D;
    const state = gpu.tensor(Uint32Array.of(20), [1], "u32");
    const sequences = [
      { start: 0, count: 2, position: 11 as number | StepValue, at: 11 },
      { start: 2, count: 3, position: { tensor: state, index: 0, plus: 0, max: 25 } as StepValue, at: 20 },
    ];
    const out = gpu.empty([5, H, D], "f32");
    for (const { start, count, position, at } of sequences) {
      const own = ropeKVCase({ S: count, H, Hkv, D, capacity }, "f32", "f32");
      const [keys2, values2] = [await copyOf(own.keys.t), await copyOf(own.values.t)];
      expect(ropeKV(whole.qkv.t, tableFor(D), own.keys.t, own.values.t, position, { rows: { start, count }, out })).toBe(out);
      // The same rows as a qkv of their own, through the plain call.
      const alone = gpu.tensor(whole.qkv.values.subarray(start * row, (start + count) * row), [count, row]);
      const q = ropeKV(alone, tableFor(D), keys2, values2, at);
      const got = await out.read();
      expect(got.subarray(start * H * D, (start + count) * H * D), `q rows from ${start}`).toEqual(await q.read());
      expect(await own.keys.t.read(), `keys of the sequence from ${start}`).toEqual(await keys2.read());
      expect(await own.values.t.read(), `values of the sequence from ${start}`).toEqual(await values2.read());
    }
    const ref = ropeKVReference(whole.qkv.values.subarray(0, 2 * row), { S: 2, H, Hkv, D, capacity }, THETA, 11, whole.keys.values, whole.values.values);
    expectClose((await out.read()).subarray(0, 2 * H * D), ref.q, ropeTolerance(TOLERANCE.f32, whole.qkv.values, 12), "q of the first sequence");
  });

  it("rejects bad shapes, dtypes and positions before any dispatch", () => {
    const t = (shape: number[], dtype: DType = "f32"): Tensor => gpu.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
    const [keys, values] = [t([2, 10, 8]), t([2, 10, 8])];
    const qkv = t([3, (4 + 4) * 8]); // H = 4, H_kv = 2, D = 8
    const table = tableFor(8);
    const before = gpu.dispatchCount;
    expect(() => ropeKV(qkv, table, keys, values, 8)).toThrow(ShapeError);
    expect(() => ropeKV(qkv, table, keys, values, 8)).toThrow(/ropeKV: writing 3 positions at 8 overflows the caches f32\[2x10x8\] of capacity 10/);
    expect(() => ropeKV(qkv, table, keys, values, -1)).toThrow(/position -1 must be an integer >= 0/);
    expect(() => ropeKV(qkv, table, keys, values, 1.5)).toThrow(/position 1.5/);
    expect(() => ropeKV(t([3, 36]), table, keys, values, 0)).toThrow(/qkv f32\[3x36\] is not \[S, \(H \+ 2·2\)·8\] for H >= 1/);
    expect(() => ropeKV(t([3, 32]), table, keys, values, 0)).toThrow(/qkv f32\[3x32\] is not/);
    expect(() => ropeKV(t([3, 8, 8]), table, keys, values, 0)).toThrow(/qkv f32\[3x8x8\] must be an f32 or f16 \[S, \(H \+ 2·H_kv\)·D\]/);
    expect(() => ropeKV(qkv, table, keys, t([2, 9, 8]), 0)).toThrow(/value cache f32\[2x9x8\] must be f32 or f16 and shaped like the key cache/);
    expect(() => ropeKV(qkv, table, t([2, 10]), values, 0)).toThrow(/key cache f32\[2x10\] must be/);
    expect(() => ropeKV(t([1, 4 * 7]), table, t([1, 10, 7]), t([1, 10, 7]), 0)).toThrow(/head size 7 .* must be even/);
    expect(() => ropeKV(qkv, tableFor(16), keys, values, 0)).toThrow(/table rope table \(theta 10000\) f32\[300x8x2\] must be ropeTable's \[positions, 4, 2\] for head size 8/);
    expect(() => ropeKV(qkv, table, keys, keys, 0)).toThrow(/share a buffer/);
    expect(() => ropeKV(qkv, table, keys, values, 0, { outDtype: "i32" })).toThrow(/output dtype i32/);
    expect(() => ropeKV(qkv, table, keys, values, 0, { rows: { start: 2, count: 2 } })).toThrow(/rows \[2, 4\) are outside qkv f32\[3x64\]/);
    expect(() => ropeKV(qkv, table, keys, values, 0, { rows: { start: -1, count: 1 } })).toThrow(/rows \[-1, 0\)/);
    expect(() => ropeKV(qkv, table, keys, values, 0, { out: t([1, 4, 8]) })).toThrow(/out f32\[1x4x8\] must be \[3, 4, 8\] for qkv f32\[3x64\]/);
    const out = t([3, 4, 8]);
    expect(() => ropeKV(qkv, table, keys, values, 0, { out, outDtype: "f16" })).toThrow(/outDtype f16 differs from out f32\[3x4x8\]/);
    expect(() => ropeKV(qkv, table, keys, values, 0, { out: keys.reshape([5, 4, 8]).slice(0, 3) })).toThrow(/must be \[3, 4, 8\]|shares a buffer/);
    const state = gpu.tensor(Uint32Array.from([0]), [1], "u32");
    expect(() => ropeKV(qkv, table, keys, values, { tensor: state, index: 0, plus: 0, max: 8 })).toThrow(/at u32\[1\]\[0\] \(at most 8\) overflows/);
    expect(() => ropeKV(qkv, table, keys, values, { tensor: state, index: 1, plus: 0, max: 0 })).toThrow(/index 1 is outside u32\[1\]/);
    expect(() => ropeKV(qkv, table, keys, values, { tensor: keys, index: 0, plus: 0, max: 0 })).toThrow(/must be u32 \[n\]/);
    const big = t([2, 400, 8]);
    expect(() => ropeKV(qkv, table, big, t([2, 400, 8]), 298)).toThrow(/positions up to 300 \(position 298\) are outside table rope table \(theta 10000\) f32\[300x4x2\] \(300 positions\)/);
    expect(gpu.dispatchCount).toBe(before);
  });
});

/**
 * Kernels whose per-token numbers are read on the GPU (kernels/step_value.ts): rope's position
 * offset, writeKV's position, attention's cache length and query offset, the sampler's step and
 * history length. For each, a StepValue gives what the number gives, and one launch (the same
 * options object, the same parameters) recorded again after only the state tensor was rewritten
 * follows the new value: the value is read when the launch runs, not baked in when it is made.
 * The state tensors hold junk around the element read, and `plus` is negative where it can be.
 */
import { describe, expect, it } from "vitest";
import {
  attention,
  attentionReference,
  attentionVersionSupported,
  ATTENTION_VERSIONS,
  splitKAttention,
  type AttentionOptions,
  type AttentionVersion,
} from "../src/kernels/attention/index.js";
import { attentionTolerance } from "../src/kernels/attention/reference.js";
import { writeKV, writeKVReference } from "../src/kernels/kv_cache.js";
import { rope, ropeReference, ropeTable, ropeTolerance } from "../src/kernels/rope.js";
import { sampleToken, uniform } from "../src/kernels/sample/index.js";
import {
  checkU32Source,
  describeU32Source,
  stateTensor,
  u32SourceParams,
  u32SourceWgsl,
  type StepValue,
  type U32Source,
} from "../src/kernels/step_value.js";
import { encodeHost } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { expectClose, randn, rng, SEED, testGpu, TOLERANCE, upload } from "./helpers.js";

/** Junk around the element a StepValue reads: a kernel reading the wrong index shows. */
const JUNK = 0xdeadbeef;

describe("step values", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** A u32 [n] state tensor, junk everywhere. */
  const stateTensorOf = (n: number) => gpu.tensor(new Array<number>(n).fill(JUNK), [n], "u32");
  /** Sets state[index] so that the StepValue reads `value` (state holds value - plus). */
  function setValue(step: StepValue, value: number): void {
    const held = (value - step.plus) >>> 0;
    gpu.write(step.tensor, Uint32Array.of(held), step.index * 4);
  }
  const bits = async (t: Tensor) => Array.from(await t.read());

  describe("the helpers", () => {
    it("pack a StepValue's plus mod 2^32 and its index, a number as itself", () => {
      const tensor = stateTensorOf(3);
      expect(u32SourceParams("x", 7)).toEqual({ x: 7, x_index: 0 });
      expect(u32SourceParams("x", { tensor, index: 2, plus: -3, max: 9 })).toEqual({ x: 2 ** 32 - 3, x_index: 2 });
      expect(u32SourceWgsl("x", false)).toContain("return params.x;");
      expect(u32SourceWgsl("x", true)).toContain("return state[params.x_index] + params.x;");
      expect(describeU32Source(5)).toBe("5");
      expect(describeU32Source({ tensor, index: 2, plus: -3, max: 9 })).toBe("u32[3][2] - 3 (at most 9)");
    });

    it("check a StepValue's fields and resolve one state tensor per launch", () => {
      const tensor = stateTensorOf(3);
      const ok: StepValue = { tensor, index: 1, plus: 0, max: 4 };
      expect(() => checkU32Source(ok, "op: x")).not.toThrow();
      expect(() => checkU32Source({ ...ok, tensor: gpu.tensor([0, 0, 0], [3], "i32") }, "op: x")).toThrow(/op: x: step value tensor i32\[3\] must be u32 \[n\]/);
      expect(() => checkU32Source({ ...ok, tensor: gpu.tensor([0, 0, 0, 0], [2, 2], "u32") }, "op: x")).toThrow(/must be u32 \[n\]/);
      expect(() => checkU32Source({ ...ok, index: 3 }, "op: x")).toThrow(/op: x: index 3 is outside u32\[3\]/);
      expect(() => checkU32Source({ ...ok, plus: 0.5 }, "op: x")).toThrow(/plus 0.5/);
      expect(() => checkU32Source({ ...ok, max: -1 }, "op: x")).toThrow(/max -1/);
      const standIn = gpu.tensor([1], [1], "f32");
      expect(stateTensor("op", [1, 2], standIn)).toBe(standIn);
      expect(stateTensor("op", [1, ok, { ...ok, index: 2 }], standIn)).toBe(tensor);
      expect(() => stateTensor("op", [ok, { ...ok, tensor: stateTensorOf(3) }], standIn)).toThrow(/op: step values read .* one launch reads one state tensor/);
      expect(() => stateTensor("op", [ok], standIn, [tensor.reshape([3])])).toThrow(/op: step value tensor u32\[3\] shares a buffer with u32\[3\], which the launch writes/);
    });
  });

  // ---------------------------------------------------------------- rope

  describe("rope", () => {
    const positions = 64;
    const theta = 10000;
    const table = ropeTable(gpu, { headDim: 8, theta, positions });

    it("a StepValue offset rotates exactly as the number, for each value the state holds", async () => {
      const [S, H, D] = [3, 5, 8];
      const x = upload(gpu, randn(random, S * H * D), [S, H, D], "f32");
      const offset: StepValue = { tensor: stateTensorOf(4), index: 2, plus: -5, max: positions - S };
      for (const p of [0, 17, positions - S]) {
        setValue(offset, p);
        const out = rope(x.t, table, offset);
        expect(await bits(out), `offset ${p} (seed ${SEED})`).toEqual(await bits(rope(x.t, table, p)));
        expectClose(await out.read(), ropeReference(x.values, [S, H, D], theta, p), ropeTolerance(TOLERANCE.f32, x.values, p + S - 1), `rope at ${p}`);
      }
    });

    it("names the op and the argument when a StepValue is wrong", () => {
      const x = gpu.tensor(new Float32Array(2 * 1 * 8), [2, 1, 8]);
      const tensor = stateTensorOf(2);
      const before = gpu.dispatchCount;
      expect(() => rope(x, table, { tensor: gpu.tensor([0, 0], [2], "f32"), index: 0, plus: 0, max: 1 })).toThrow(/rope: positionOffset: step value tensor f32\[2\] must be u32/);
      expect(() => rope(x, table, { tensor, index: 2, plus: 0, max: 1 })).toThrow(/rope: positionOffset: index 2 is outside u32\[2\]/);
      expect(() => rope(x, table, { tensor, index: 1, plus: 0, max: positions - 1 })).toThrow(ShapeError);
      expect(() => rope(x, table, { tensor, index: 1, plus: 0, max: positions - 1 })).toThrow(/rope: positions 63\.\.64 .* \(positionOffset u32\[2\]\[1\] \(at most 63\)\) are outside table/);
      expect(gpu.dispatchCount).toBe(before);
    });
  });

  // ---------------------------------------------------------------- writeKV

  describe("writeKV", () => {
    const shape: [number, number, number] = [2, 12, 8];
    const [kvHeads, capacity, D] = shape;

    it("a StepValue position writes exactly where the number writes, for each value the state holds", async () => {
      const count = 3;
      const start = randn(random, kvHeads * capacity * D);
      const cache = gpu.tensor(start, shape, "f32");
      const numeric = gpu.tensor(start, shape, "f32");
      let expected: Float64Array = Float64Array.from(Float32Array.from(start));
      const position: StepValue = { tensor: stateTensorOf(3), index: 1, plus: -4, max: capacity - count };
      for (const p of [0, 5, capacity - count]) {
        const rows = upload(gpu, randn(random, count * kvHeads * D), [count, kvHeads, D], "f32");
        setValue(position, p);
        writeKV(cache, rows.t, position);
        writeKV(numeric, rows.t, p);
        expected = writeKVReference(expected, shape, rows.values, p);
        expect(await bits(cache), `position ${p}`).toEqual(await bits(numeric));
        expectClose(await cache.read(), expected, { atol: 0, rtol: 0 }, `writeKV at ${p}`);
      }
    });

    it("a run-time position past its max drops the rows that do not fit, never touching the next head", async () => {
      const start = randn(random, kvHeads * capacity * D);
      const cache = gpu.tensor(start, shape, "f32");
      const rows = upload(gpu, randn(random, 3 * kvHeads * D), [3, kvHeads, D], "f32");
      const position: StepValue = { tensor: stateTensorOf(1), index: 0, plus: 0, max: capacity - 3 };
      setValue(position, capacity - 1); // breaks the promise of max: only row 0 fits
      writeKV(cache, rows.t, position);
      const expected = writeKVReference(Float32Array.from(start), shape, rows.values.subarray(0, kvHeads * D), capacity - 1);
      expectClose(await cache.read(), expected, { atol: 0, rtol: 0 }, "writeKV past max");
    });

    it("names the op and the argument when a StepValue is wrong", () => {
      const cache = gpu.tensor(new Float32Array(kvHeads * capacity * D), shape);
      const rows = gpu.tensor(new Float32Array(3 * kvHeads * D), [3, kvHeads, D]);
      const tensor = stateTensorOf(2);
      const before = gpu.dispatchCount;
      expect(() => writeKV(cache, rows, { tensor: gpu.tensor([0, 0], [2], "i32"), index: 0, plus: 0, max: 0 })).toThrow(/writeKV: position: step value tensor i32\[2\] must be u32/);
      expect(() => writeKV(cache, rows, { tensor, index: 5, plus: 0, max: 0 })).toThrow(/writeKV: position: index 5 is outside u32\[2\]/);
      expect(() => writeKV(cache, rows, { tensor, index: 0, plus: -1, max: capacity - 2 })).toThrow(/writeKV: writing 3 rows at position u32\[2\]\[0\] - 1 \(at most 10\) overflows the cache .* of capacity 12/);
      expect(gpu.dispatchCount).toBe(before);
    });
  });

  // ---------------------------------------------------------------- attention

  describe("attention", () => {
    const versions = (Object.keys(ATTENTION_VERSIONS) as AttentionVersion[]).filter((name) => attentionVersionSupported(gpu, name));
    const [H, Hkv, D] = [4, 2, 8];

    /** A cache [H_kv, capacity, D] whose tensor stays put: `fill` rewrites it with `valid` random positions, NaN after. */
    function cacheOf(capacity: number) {
      const t = gpu.tensor(new Float32Array(Hkv * capacity * D), [Hkv, capacity, D], "f32");
      return {
        t,
        fill(valid: number) {
          const values = Float64Array.from(Float32Array.from(randn(random, Hkv * capacity * D)));
          for (let g = 0; g < Hkv; g++) values.fill(NaN, (g * capacity + valid) * D, (g + 1) * capacity * D);
          gpu.write(t, encodeHost(values, "f32"));
          return { values, shape: t.shape };
        },
      };
    }

    /**
     * Runs `run` (one version with its options, made once) for each run-time length and offset:
     * the state is set, the cache refilled with `length` valid positions, and the output
     * compared with the reference for those numbers.
     */
    async function expectFollowsState(
      what: string,
      S: number,
      capacity: number,
      set: (length: number, offset: number) => void,
      runs: [number, number][],
      run: (q: Tensor, k: Tensor, v: Tensor) => Tensor,
      causal: boolean,
    ) {
      const q = upload(gpu, randn(random, S * H * D), [S, H, D], "f32");
      const [k, v] = [cacheOf(capacity), cacheOf(capacity)];
      for (const [length, offset] of runs) {
        const [kHost, vHost] = [k.fill(length), v.fill(length)];
        set(length, offset);
        const out = run(q.t, k.t, v.t);
        const options: AttentionOptions = { layout: "cache", length, causal, queryOffset: offset };
        const expected = attentionReference({ values: q.values, shape: q.t.shape }, kHost, vHost, options);
        expectClose(await out.read(), expected, attentionTolerance("f32"), `${what}, length ${length}, offset ${offset}`);
      }
    }

    for (const version of versions) {
      it(`${version}: length = position + S and offset = position from one state element, as in decoding and prefill`, async () => {
        const capacity = 40;
        for (const S of [1, 3]) {
          const position: StepValue = { tensor: stateTensorOf(3), index: 1, plus: -2, max: capacity - S };
          const length: StepValue = { ...position, plus: position.plus + S, max: position.max + S }; // plus -1 when S = 1
          const options: AttentionOptions<U32Source> = { layout: "cache", length, causal: true, queryOffset: position };
          const runs: [number, number][] = [0, 9, capacity - S].map((p) => [p + S, p]);
          await expectFollowsState(`${version} S=${S}`, S, capacity, (_, p) => setValue(position, p), runs, (q, k, v) => ATTENTION_VERSIONS[version](q, k, v, options), true);
        }
      });

      it(`${version}: a run-time offset over a numeric length, and a run-time length without a mask`, async () => {
        const capacity = 20;
        const S = 3;
        const offset: StepValue = { tensor: stateTensorOf(2), index: 0, plus: 0, max: capacity - S };
        const offsetOnly: AttentionOptions<U32Source> = { layout: "cache", length: capacity, causal: true, queryOffset: offset };
        const offsets: [number, number][] = [[capacity, 0], [capacity, 6], [capacity, capacity - S]];
        await expectFollowsState(`${version} offset only`, S, capacity, (_, p) => setValue(offset, p), offsets, (q, k, v) => ATTENTION_VERSIONS[version](q, k, v, offsetOnly), true);

        const length: StepValue = { tensor: stateTensorOf(4), index: 3, plus: -7, max: capacity };
        const full: AttentionOptions<U32Source> = { layout: "cache", length };
        // Without a mask the offset is not read: the reference gets the default.
        const lengths: [number, number][] = [1, 5, capacity].map((n) => [n, Math.max(0, n - S)]);
        await expectFollowsState(`${version} full`, S, capacity, (n) => setValue(length, n), lengths, (q, k, v) => ATTENTION_VERSIONS[version](q, k, v, full), false);
      });
    }

    it("a run-time length that breaks its max sees the first max keys, in every version", async () => {
      const capacity = 12;
      const max = 6;
      const length: StepValue = { tensor: stateTensorOf(1), index: 0, plus: 0, max };
      for (const version of versions) {
        const options: AttentionOptions<U32Source> = { layout: "cache", length };
        // 2^31 keys would loop for minutes and read far past the cache: the kernels stop at max.
        await expectFollowsState(`${version} past max`, 2, capacity, () => setValue(length, 2 ** 31), [[max, 0]], (q, k, v) => ATTENTION_VERSIONS[version](q, k, v, options), false);
      }
    });

    it("split-K sizes its chunks from the max; at run time the empty chunks are skipped, exactly", async () => {
      const capacity = 64;
      const S = 2;
      for (const chunkSize of [4, 7, 64]) {
        const length: StepValue = { tensor: stateTensorOf(2), index: 1, plus: 3, max: capacity };
        const offset: StepValue = { ...length, plus: length.plus - S, max: length.max - S };
        for (const causal of [true, false]) {
          const options = { layout: "cache" as const, length, causal, queryOffset: offset, chunkSize };
          // 3 keys: one chunk of 4 holds them all and 15 are empty; 9: three; 64: the max, none empty.
          const runs: [number, number][] = [3, 9, capacity].map((n) => [n, n - S]);
          await expectFollowsState(`split-K chunk ${chunkSize} ${causal ? "causal" : "full"}`, S, capacity, (n) => setValue(length, n), runs, (q, k, v) => splitKAttention(q, k, v, options), causal);
        }
      }
    });

    it("attention() takes StepValues and picks its version from their max", async () => {
      const capacity = 24;
      const position: StepValue = { tensor: stateTensorOf(1), index: 0, plus: 0, max: capacity - 1 };
      const options: AttentionOptions<U32Source> = { layout: "cache", length: { ...position, plus: 1, max: capacity }, causal: true, queryOffset: position };
      await expectFollowsState("attention()", 1, capacity, (_, p) => setValue(position, p), [[1, 0], [capacity, capacity - 1]], (q, k, v) => attention(q, k, v, options), true);
    });

    it("names the op and the argument when a StepValue is wrong, before any dispatch", () => {
      const q = gpu.tensor(new Float32Array(2 * H * D), [2, H, D]);
      const cache = gpu.tensor(new Float32Array(Hkv * 10 * D), [Hkv, 10, D]);
      const tensor = stateTensorOf(2);
      const at = (index: number, plus: number, max: number): StepValue => ({ tensor, index, plus, max });
      const bad: [string, AttentionOptions<U32Source>, RegExp][] = [
        ["f32 state", { layout: "cache", length: { tensor: gpu.tensor([0, 0], [2], "f32"), index: 0, plus: 0, max: 4 } }, /kv length: step value tensor f32\[2\] must be u32/],
        ["index outside", { layout: "cache", length: at(2, 0, 4) }, /kv length: index 2 is outside u32\[2\]/],
        ["max over the capacity", { layout: "cache", length: at(0, 0, 11) }, /kv length u32\[2\]\[0\] \(at most 11\) must be an integer in \[1, 10\], the capacity of the cache/],
        ["max 0", { layout: "cache", length: at(0, 0, 0) }, /must be an integer in \[1, 10\]/],
        ["offset index outside", { layout: "cache", length: 10, causal: true, queryOffset: at(7, 0, 3) }, /query offset: index 7 is outside/],
        ["offset max past the keys", { layout: "cache", length: 10, causal: true, queryOffset: at(0, 0, 9) }, /causal queries at positions \[9, 11\) reach past the 10 keys \(query offset u32\[2\]\[0\] \(at most 9\), kv length 10\)/],
        ["offset and length from one element, 1 apart for 2 queries", { layout: "cache", length: at(1, 1, 9), causal: true, queryOffset: at(1, 0, 7) }, /causal queries at u32\[2\]\[1\] \(at most 7\) \+ \[0, 2\) reach past the u32\[2\]\[1\] \+ 1 \(at most 9\) keys whatever u32\[2\]\[1\] holds/],
        ["two state tensors", { layout: "cache", length: at(0, 2, 9), causal: true, queryOffset: { tensor: stateTensorOf(2), index: 0, plus: 0, max: 7 } }, /step values read u32\[2\] and u32\[2\]; one launch reads one state tensor/],
      ];
      const before = gpu.dispatchCount;
      const runs: [string, typeof attention][] = [["attention", attention], ...versions.map((v): [string, typeof attention] => [v, ATTENTION_VERSIONS[v]])];
      for (const [what, options, message] of bad) {
        for (const [name, run] of runs) {
          expect(() => run(q, cache, cache, options), `${name}: ${what}`).toThrow(ShapeError);
          expect(() => run(q, cache, cache, options), `${name}: ${what}`).toThrow(message);
          expect(() => run(q, cache, cache, options), `${name}: ${what}`).toThrow(name === "attention" ? /^attention/ : new RegExp(`^attention ${name}`));
        }
      }
      expect(gpu.dispatchCount).toBe(before);
    });
  });

  // ---------------------------------------------------------------- sampleToken

  describe("sampleToken", () => {
    it("a StepValue step draws from the number's place in the random stream, wrapping like a u32", async () => {
      // 65536 equal logits: the id is floor(u · 65536), so it shows u's top 16 bits.
      const vocab = 65536;
      const logits = gpu.tensor(new Float32Array(vocab), [vocab], "f32");
      const seed = Math.floor(random() * 2 ** 32);
      const step: StepValue = { tensor: stateTensorOf(2), index: 1, plus: -3, max: 2 ** 32 - 1 };
      const options = { temperature: 1, seed, step };
      for (const s of [0, 1 + Math.floor(random() * 1e6), 2 ** 32 - 2]) {
        setValue(step, s); // for 2^32 - 2 the state holds 1: 1 - 3 wraps
        const id = (await sampleToken(logits, options).read())[0];
        expect(id, `step ${s} (seed ${SEED})`).toBe(Math.floor(uniform(seed, s) * vocab));
        expect(id).toBe((await sampleToken(logits, { temperature: 1, seed, step: s }).read())[0]);
      }
    });

    it("a StepValue history length penalises that many ids and appends at it", async () => {
      // Greedy with a penalty of 1.2: once id 0 is in the history, 2/1.2 < 1.9 and id 1 wins.
      const logits = gpu.tensor([2, 1.9, 0, 0], [4], "f32");
      const start = [2, 0, 9, 9, 9];
      const ids = gpu.tensor(start, [5], "u32");
      const length: StepValue = { tensor: stateTensorOf(3), index: 2, plus: -1, max: 3 };
      const options = { temperature: 0, repetitionPenalty: 1.2, seed: 0, step: 0, history: { ids, length } };
      for (const [n, expected] of [[1, 0], [2, 1]]) {
        gpu.write(ids, Uint32Array.from(start));
        setValue(length, n);
        const numericIds = gpu.tensor(start, [5], "u32");
        const numeric = sampleToken(logits, { ...options, history: { ids: numericIds, length: n } });
        expect(Array.from(await sampleToken(logits, options).read()), `length ${n}`).toEqual([expected]);
        expect(Array.from(await numeric.read())).toEqual([expected]);
        expect(await bits(ids), `length ${n}`).toEqual(await bits(numericIds));
        expect((await bits(ids))[n]).toBe(expected);
      }
    });

    it("a run-time history length that breaks its max penalises the whole history and appends nothing", async () => {
      const logits = gpu.tensor([2, 1.9, 0, 0], [4], "f32");
      const ids = gpu.tensor([3, 3, 3, 0], [4], "u32");
      const length: StepValue = { tensor: stateTensorOf(1), index: 0, plus: 0, max: 2 };
      setValue(length, 1000);
      const out = sampleToken(logits, { temperature: 0, repetitionPenalty: 1.2, seed: 0, step: 0, history: { ids, length } });
      expect(Array.from(await out.read())).toEqual([1]); // id 0, in the last slot, was penalised
      expect(await bits(ids)).toEqual([3, 3, 3, 0]);
    });

    it("step and history length from one state element, as the decode loop has them: the same run as numbers", async () => {
      const vocab = 129;
      const logits = upload(gpu, randn(random, vocab, 2), [vocab], "f32").t;
      const prompt = [5, 17, 5, 99];
      const draws = 4;
      const initial = [...prompt, ...new Array<number>(draws).fill(0)];
      const ids = gpu.tensor(initial, [initial.length], "u32");
      const numericIds = gpu.tensor(initial, [initial.length], "u32");
      const draw: StepValue = { tensor: stateTensorOf(1), index: 0, plus: -10, max: draws - 1 };
      const out = gpu.empty([1], "u32");
      const base = { temperature: 1, topK: 50, repetitionPenalty: 1.3, seed: Math.floor(random() * 2 ** 32) };
      const options = { ...base, step: draw, history: { ids, length: { ...draw, plus: draw.plus + prompt.length, max: draw.max + prompt.length } }, out };
      for (let d = 0; d < draws; d++) {
        setValue(draw, d);
        sampleToken(logits, options);
        sampleToken(logits, { ...base, step: d, history: { ids: numericIds, length: prompt.length + d } });
      }
      expect(await bits(ids), `seed ${SEED}`).toEqual(await bits(numericIds));
      expect((await bits(ids)).slice(0, prompt.length)).toEqual(prompt);
    });

    it("names the op and the argument when a StepValue is wrong, before any dispatch", () => {
      const logits = gpu.tensor(new Float32Array(10), [10], "f32");
      const ids = gpu.tensor(new Uint32Array(5), [5], "u32");
      const tensor = stateTensorOf(2);
      const base = { temperature: 1, seed: 0, step: 0 };
      const before = gpu.dispatchCount;
      const bad: [Partial<Parameters<typeof sampleToken>[1]>, typeof RangeError | typeof ShapeError, RegExp][] = [
        [{ step: { tensor: gpu.tensor([0, 0], [2], "f32"), index: 0, plus: 0, max: 0 } }, ShapeError, /sampleToken: step: step value tensor f32\[2\] must be u32/],
        [{ step: { tensor, index: 2, plus: 0, max: 0 } }, ShapeError, /sampleToken: step: index 2 is outside u32\[2\]/],
        [{ history: { ids, length: { tensor, index: -1, plus: 0, max: 0 } } }, ShapeError, /sampleToken: history length: index -1 is outside/],
        [{ history: { ids, length: { tensor, index: 0, plus: 2, max: 5 } } }, RangeError, /sampleToken: history length u32\[2\]\[0\] \+ 2 \(at most 5\) must be an integer in \[0, 5\)/],
        [{ history: { ids, length: { tensor: ids, index: 0, plus: 0, max: 1 } } }, ShapeError, /sampleToken: step value tensor u32\[5\] shares a buffer with u32\[5\], which the launch writes/],
        [{ step: { tensor, index: 0, plus: 0, max: 0 }, history: { ids, length: { tensor: stateTensorOf(2), index: 0, plus: 0, max: 1 } } }, ShapeError, /one launch reads one state tensor/],
      ];
      for (const [options, error, message] of bad) {
        expect(() => sampleToken(logits, { ...base, ...options }), JSON.stringify(Object.keys(options))).toThrow(error);
        expect(() => sampleToken(logits, { ...base, ...options })).toThrow(message);
      }
      expect(gpu.dispatchCount).toBe(before);
    });
  });
});

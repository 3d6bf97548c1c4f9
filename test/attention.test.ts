import { describe, expect, it } from "vitest";
import {
  attention,
  attentionReference,
  attentionVersionSupported,
  ATTENTION_VERSIONS,
  chooseAttentionVersion,
  splitKAttention,
  SUBGROUP_MAX_HEAD_DIM,
  type AttentionOptions,
  type AttentionVersion,
} from "../src/kernels/attention/index.js";
import { attentionTolerance } from "../src/kernels/attention/reference.js";
import type { StepValue, U32Source } from "../src/kernels/step_value.js";
import type { DType } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import { Gpu } from "../src/tensor/gpu.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { AWKWARD, expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";
import { launchesOf } from "./launches.js";

interface Case {
  queries: number;
  kvLength: number;
  headDim: number;
  heads: number;
  kvHeads: number;
  causal: boolean;
  /** "cache": k and v are [H_kv, kvLength + spare, D] with NaN in the spare positions. */
  layout: "tokens" | "cache";
  queryOffset?: number;
  scale?: number;
  /** Sliding window (causal only). */
  window?: number;
}

interface Dtypes {
  q: DType;
  kv: DType;
  out: DType;
}

const HEADS: [number, number][] = [[3, 3], [4, 2], [6, 2], [8, 1]]; // MHA, GQA 4:2 and 6:2, MQA 8:1
const HEAD_DIMS = [1, 8, 17, 64, 128];
/** Unused cache positions after the valid ones, all NaN: a kernel that reads one fails. */
const SPARE = 5;

/** S and T over AWKWARD (S <= T when causal), with D, heads and layout cycling through their lists. */
function gridCases(): Case[] {
  const cases: Case[] = [];
  for (const causal of [false, true]) {
    for (const queries of AWKWARD) {
      for (const kvLength of AWKWARD) {
        if (causal && queries > kvLength) continue;
        const n = cases.length;
        const [heads, kvHeads] = HEADS[n % HEADS.length];
        const layout = n % 2 === 0 ? "tokens" : "cache";
        cases.push({ queries, kvLength, headDim: HEAD_DIMS[n % HEAD_DIMS.length], heads, kvHeads, causal, layout });
      }
    }
  }
  return cases;
}

function describeCase(c: Case): string {
  return (
    `S=${c.queries} T=${c.kvLength} D=${c.headDim} H=${c.heads}:${c.kvHeads} ${c.causal ? "causal" : "full"} ${c.layout}` +
    (c.queryOffset === undefined ? "" : ` offset=${c.queryOffset}`) +
    (c.window === undefined ? "" : ` window=${c.window}`)
  );
}

describe("attention", async () => {
  const gpu = await testGpu();
  const random = rng();
  /** Every version this device runs (v4 needs a fixed subgroup size; lavapipe has one). */
  const versions = (Object.keys(ATTENTION_VERSIONS) as AttentionVersion[]).filter((name) => attentionVersionSupported(gpu, name));

  function kvInput(c: Case, dtype: DType): { t: Tensor; values: Float64Array; shape: number[] } {
    if (c.layout === "tokens") {
      const shape = [c.kvLength, c.kvHeads, c.headDim];
      return { ...upload(gpu, randn(random, c.kvLength * c.kvHeads * c.headDim), shape, dtype), shape };
    }
    const capacity = c.kvLength + SPARE;
    const shape = [c.kvHeads, capacity, c.headDim];
    const values = randn(random, c.kvHeads * capacity * c.headDim);
    for (let g = 0; g < c.kvHeads; g++) {
      values.fill(NaN, (g * capacity + c.kvLength) * c.headDim, (g + 1) * capacity * c.headDim);
    }
    return { ...upload(gpu, values, shape, dtype), shape };
  }

  function inputs(c: Case, dtypes: Dtypes) {
    const qShape = [c.queries, c.heads, c.headDim];
    const q = { ...upload(gpu, randn(random, c.queries * c.heads * c.headDim), qShape, dtypes.q), shape: qShape };
    const k = kvInput(c, dtypes.kv);
    const v = kvInput(c, dtypes.kv);
    const layout = c.layout === "tokens" ? { layout: "tokens" as const } : { layout: "cache" as const, length: c.kvLength };
    const options: AttentionOptions = { ...layout, causal: c.causal, queryOffset: c.queryOffset, scale: c.scale, window: c.window, outDtype: dtypes.out };
    const expected = attentionReference(q, k, v, options);
    return { q, k, v, options, expected };
  }

  /** Runs every version (or just `only`) on one case and compares each with the reference. */
  async function checkVersions(c: Case, dtypes: Dtypes, only?: (keyof typeof ATTENTION_VERSIONS)[]): Promise<void> {
    const { q, k, v, options, expected } = inputs(c, dtypes);
    const tolerance = attentionTolerance(dtypes.out);
    for (const name of versions) {
      if (only && !only.includes(name)) continue;
      if (name === "v4_subgroup" && c.headDim > SUBGROUP_MAX_HEAD_DIM) continue;
      const out = ATTENTION_VERSIONS[name](q.t, k.t, v.t, options);
      expect(out.shape).toEqual([c.queries, c.heads, c.headDim]);
      expect(out.dtype).toBe(dtypes.out);
      expectClose(await out.read(), expected, tolerance, `${name} ${describeCase(c)} ${JSON.stringify(dtypes)}`);
    }
  }

  for (const dtype of floatDtypes(gpu)) {
    const same = { q: dtype, kv: dtype, out: dtype };
    for (const c of gridCases()) {
      it(`every version, ${dtype}, ${describeCase(c)}`, () => checkVersions(c, same));
    }

    it(`prefill after existing cache content, ${dtype}`, () =>
      checkVersions(
        { queries: 17, kvLength: 37, queryOffset: 20, headDim: 64, heads: 6, kvHeads: 2, causal: true, layout: "cache" },
        same,
      ));

    for (const kvLength of [129, 600]) {
      it(`decode one token over ${kvLength} cached keys, ${dtype}`, () =>
        checkVersions({ queries: 1, kvLength, headDim: 128, heads: 4, kvHeads: 2, causal: true, layout: "cache" }, same));
    }

    // Sliding windows (Mistral): 1 key, a few, exactly the context, more than it; prefill and
    // decode far past the window, where the kernels skip the keys before it.
    for (const window of [1, 3, 37, 100]) {
      it(`sliding window ${window}: prefill, prefill after cached content, decode, ${dtype}`, async () => {
        await checkVersions({ queries: 37, kvLength: 37, headDim: 17, heads: 6, kvHeads: 2, causal: true, layout: "tokens", window }, same);
        await checkVersions({ queries: 9, kvLength: 37, queryOffset: 25, headDim: 64, heads: 4, kvHeads: 2, causal: true, layout: "cache", window }, same);
        await checkVersions({ queries: 1, kvLength: 600, headDim: 128, heads: 8, kvHeads: 1, causal: true, layout: "cache", window }, same);
      });
    }
  }

  it("a window of 1 gives each query its own value; a window past the context changes nothing", () => {
    const [S, H, D] = [5, 2, 3];
    const q = { values: randn(random, S * H * D), shape: [S, H, D] };
    const k = { values: randn(random, S * H * D), shape: [S, H, D] };
    const v = { values: randn(random, S * H * D), shape: [S, H, D] };
    const own = attentionReference(q, k, v, { layout: "tokens", causal: true, window: 1 });
    for (let e = 0; e < own.length; e++) expect(own[e]).toBeCloseTo(v.values[e], 12);
    expect(attentionReference(q, k, v, { layout: "tokens", causal: true, window: S })).toEqual(attentionReference(q, k, v, { layout: "tokens", causal: true }));
    expect(() => attentionReference(q, k, v, { layout: "tokens", window: 2 })).toThrow(/a sliding window needs causal attention/);
    expect(() => attentionReference(q, k, v, { layout: "tokens", causal: true, window: 0 })).toThrow(/window 0 must be a positive integer/);
  });

  it("a window skips the keys before it: v1's score rows and v3's chunks are as wide as the window", async () => {
    // Decoding one token at position 599 with a window of 3: 3 keys, whatever the cache holds
    // before them (NaN here: a version that read one of them would fail).
    const c: Case = { queries: 1, kvLength: 600, headDim: 8, heads: 4, kvHeads: 2, causal: true, layout: "cache", window: 3 };
    const { q, k, v, options, expected } = inputs(c, { q: "f32", kv: "f32", out: "f32" });
    const poisoned = (x: { values: Float64Array }) => {
      const values = Float64Array.from(x.values);
      for (let g = 0; g < c.kvHeads; g++) values.fill(NaN, g * (c.kvLength + SPARE) * c.headDim, (g * (c.kvLength + SPARE) + c.kvLength - 3) * c.headDim);
      return gpu.tensor(values, [c.kvHeads, c.kvLength + SPARE, c.headDim], "f32");
    };
    const [kNaN, vNaN] = [poisoned(k), poisoned(v)];
    for (const name of versions) {
      const { result, kernels } = launchesOf(gpu, () => ATTENTION_VERSIONS[name](q.t, kNaN, vNaN, options));
      expectClose(await result.read(), expected, TOLERANCE.f32, `${name}: window 3 at position 599, the keys before it NaN`);
      expect(kernels.length).toBeGreaterThan(0);
    }
    const shapes: Record<string, number[]> = {};
    const previous = gpu.launchObserver;
    gpu.launchObserver = (launch) => {
      for (const [binding, t] of Object.entries(launch.tensors)) shapes[`${launch.kernel.name}.${binding}`] = [...t.shape];
    };
    try {
      ATTENTION_VERSIONS.v1_unfused(q.t, k.t, v.t, options);
      splitKAttention(q.t, k.t, v.t, { ...options, chunkSize: 2 });
    } finally {
      gpu.launchObserver = previous;
    }
    expect(shapes["attention_v1_scores.scores"]).toEqual([4, 1, 3]); // [H, S, window], not [H, S, 600]
    expect(shapes["attention_v3_partial.partial_acc"]).toEqual([4 * 2, 8]); // ceil(3 / 2) chunks per head
  });

  it("split-K with a window and any chunk size: chunks counted from each query's window, a partial last one", async () => {
    // Prefill of 9 queries at positions 31..39: windows [27, 32) .. [35, 40).
    for (const window of [1, 5, 40]) {
      const c: Case = { queries: 9, kvLength: 40, headDim: 8, heads: 4, kvHeads: 1, causal: true, layout: "cache", window };
      const { q, k, v, options, expected } = inputs(c, { q: "f32", kv: "f32", out: "f32" });
      for (const chunkSize of [1, 2, 3, 7, 256]) {
        const out = splitKAttention(q.t, k.t, v.t, { ...options, chunkSize });
        expectClose(await out.read(), expected, TOLERANCE.f32, `split-K window ${window}, chunk ${chunkSize}`);
      }
    }
  });

  it("head dims 200 and 256", async () => {
    const f32 = { q: "f32", kv: "f32", out: "f32" } as const;
    await checkVersions({ queries: 3, kvLength: 17, headDim: 200, heads: 2, kvHeads: 1, causal: true, layout: "cache" }, f32);
    await checkVersions({ queries: 17, kvLength: 3, headDim: 256, heads: 2, kvHeads: 2, causal: false, layout: "tokens" }, f32);
  });

  it("causal queries placed before the end of the keys, and an explicit scale", async () => {
    // Queries at positions 5..7 of 40 keys: the keys after them are valid but masked.
    await checkVersions(
      { queries: 3, kvLength: 40, queryOffset: 5, scale: 0.3, headDim: 17, heads: 4, kvHeads: 2, causal: true, layout: "tokens" },
      { q: "f32", kv: "f32", out: "f32" },
    );
  });

  it("non-causal attention ignores the query offset", async () => {
    const c: Case = { queries: 3, kvLength: 17, headDim: 8, heads: 2, kvHeads: 2, causal: false, layout: "tokens" };
    const { q, k, v, options } = inputs(c, { q: "f32", kv: "f32", out: "f32" });
    const plain = await attention(q.t, k.t, v.t, options).read();
    expectClose(await attention(q.t, k.t, v.t, { ...options, queryOffset: 2 }).read(), plain, TOLERANCE.f32, "offset ignored");
  });

  if (gpu.hasF16) {
    it("mixed dtypes: f32 queries over an f16 cache, and f16 inputs with an f32 output", async () => {
      const decode: Case = { queries: 1, kvLength: 129, headDim: 64, heads: 6, kvHeads: 2, causal: true, layout: "cache" };
      await checkVersions(decode, { q: "f32", kv: "f16", out: "f32" });
      // The output dtype is chosen the same way in every version; flash and v4 (which reads f16
      // queries in its own way) are enough here.
      const prefill: Case = { queries: 17, kvLength: 17, headDim: 17, heads: 4, kvHeads: 2, causal: true, layout: "tokens" };
      await checkVersions(prefill, { q: "f16", kv: "f16", out: "f32" }, ["v2_flash", "v4_subgroup"]);
      const aligned: Case = { ...prefill, headDim: 64 };
      await checkVersions(aligned, { q: "f16", kv: "f16", out: "f32" }, ["v2_flash", "v4_subgroup"]);
    });
  }

  it("split-K with any chunk size, including chunks a causal query never reaches", async () => {
    const c: Case = { queries: 3, kvLength: 40, headDim: 8, heads: 4, kvHeads: 1, causal: true, layout: "cache" };
    const { q, k, v, options, expected } = inputs(c, { q: "f32", kv: "f32", out: "f32" });
    for (const chunkSize of [1, 7, 38, 256]) {
      const out = splitKAttention(q.t, k.t, v.t, { ...options, chunkSize });
      expectClose(await out.read(), expected, TOLERANCE.f32, `split-K chunk ${chunkSize}`);
    }
  });

  it.skipIf(!gpu.adapter.isFallbackAdapter || !attentionVersionSupported(gpu, "v4_subgroup"))(
    "attention() picks v4 on lavapipe up to its largest head dim",
    () => {
      for (const [queries, keys] of [[1, 600], [1, 17], [577, 577]]) expect(chooseAttentionVersion(gpu, queries, keys, 128)).toBe("v4_subgroup");
      // Beyond v4's head dims, the rule for other devices.
      expect(chooseAttentionVersion(gpu, 1, 600, 200)).toBe("v3_split_k");
      expect(chooseAttentionVersion(gpu, 17, 17, 256)).toBe("v2_flash");
    },
  );

  it("without subgroups, attention() picks split-K for decoding over a long context, flash otherwise", async () => {
    const plain = await Gpu.create({ disableFeatures: ["subgroups"], poison: true });
    try {
      expect(attentionVersionSupported(plain, "v4_subgroup")).toBe(false);
      expect(chooseAttentionVersion(plain, 1, 600, 128)).toBe("v3_split_k");
      expect(chooseAttentionVersion(plain, 1, 17, 128)).toBe("v2_flash");
      expect(chooseAttentionVersion(plain, 577, 577, 64)).toBe("v2_flash");
      const qkv = (shape: number[]) => upload(plain, randn(random, shape.reduce((a, b) => a * b, 1)), shape, "f32");
      for (const c of [
        { queries: 1, kvLength: 300, headDim: 64, heads: 4, kvHeads: 4, causal: true },
        { queries: 17, kvLength: 17, headDim: 64, heads: 4, kvHeads: 4, causal: false },
      ]) {
        const q = qkv([c.queries, c.heads, c.headDim]);
        const k = qkv([c.kvLength, c.kvHeads, c.headDim]);
        const v = qkv([c.kvLength, c.kvHeads, c.headDim]);
        const options: AttentionOptions = { layout: "tokens", causal: c.causal };
        const expected = attentionReference({ values: q.values, shape: q.t.shape }, { values: k.values, shape: k.t.shape }, { values: v.values, shape: v.t.shape }, options);
        expectClose(await attention(q.t, k.t, v.t, options).read(), expected, TOLERANCE.f32, `attention() without subgroups, S=${c.queries} T=${c.kvLength}`);
      }
      const q = plain.tensor(new Float32Array(8), [1, 1, 8]);
      expect(() => ATTENTION_VERSIONS.v4_subgroup(q, q, q, { layout: "tokens" })).toThrow(/needs the 'subgroups' feature/);
    } finally {
      plain.destroy();
    }
  });

  it("rejects invalid shapes and arguments before any dispatch", () => {
    const t = (shape: number[], dtype: DType = "f32") => gpu.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
    const q = t([3, 4, 8]);
    const kv = t([5, 2, 8]);
    const cache = t([2, 10, 8]);
    const tokens = { layout: "tokens" } as const;
    const bad: [string, Tensor, Tensor, Tensor, AttentionOptions, RegExp][] = [
      ["H not a multiple of H_kv", t([3, 5, 8]), kv, kv, tokens, /not a multiple of 2 kv heads/],
      ["head dim mismatch", t([3, 4, 16]), kv, kv, tokens, /head dim of k .* is 8/],
      ["k and v differ", q, kv, t([6, 2, 8]), tokens, /must have the same shape/],
      ["q not rank 3", t([12, 8]), kv, kv, tokens, /must be \[S, H, D\]/],
      ["integer q", t([3, 4, 8], "i32"), kv, kv, tokens, /must be f32 or f16/],
      ["kv length over capacity", q, cache, cache, { layout: "cache", length: 11 }, /capacity of the cache/],
      ["kv length 0", q, cache, cache, { layout: "cache", length: 0 }, /must be an integer in \[1, 10\]/],
      ["causal queries past the keys", q, kv, kv, { ...tokens, causal: true, queryOffset: 3 }, /reach past the 5 keys/],
      ["more causal queries than keys", t([6, 4, 8]), kv, kv, { ...tokens, causal: true }, /positions \[0, 6\) reach past the 5 keys/],
      ["fractional offset", q, kv, kv, { ...tokens, causal: true, queryOffset: 0.5 }, /query offset 0.5/],
      ["bad scale", q, kv, kv, { ...tokens, scale: NaN }, /scale NaN/],
      ["integer output", q, kv, kv, { ...tokens, outDtype: "u32" }, /output dtype/],
      // A window counts back from each query's position: without causal masking there is none.
      ["window without causal", q, kv, kv, { ...tokens, window: 2 }, /a sliding window needs causal attention/],
      ["window 0", q, kv, kv, { ...tokens, causal: true, window: 0 }, /window 0 must be a positive integer/],
      ["fractional window", q, kv, kv, { ...tokens, causal: true, window: 2.5 }, /window 2.5 must be a positive integer/],
      ["window past u32", q, kv, kv, { ...tokens, causal: true, window: 2 ** 32 }, /window 4294967296 must be a positive integer/],
    ];
    const wide = t([1, 1, 257]);
    const beyondV4 = t([1, 1, SUBGROUP_MAX_HEAD_DIM + 1]);
    const before = gpu.dispatchCount;
    for (const [what, qq, kk, vv, options, message] of bad) {
      const runs: [string, typeof attention][] = [["attention", attention], ...versions.map((v): [string, typeof attention] => [v, ATTENTION_VERSIONS[v]])];
      for (const [name, run] of runs) {
        expect(() => run(qq, kk, vv, options), `${name}: ${what}`).toThrow(ShapeError);
        expect(() => run(qq, kk, vv, options), `${name}: ${what}`).toThrow(message);
      }
    }
    expect(() => ATTENTION_VERSIONS.v2_flash(wide, wide, wide, tokens)).toThrow(/head dim 257 .* is over 256/);
    expect(() => splitKAttention(wide, wide, wide, tokens)).toThrow(/head dim 257 .* is over 256/);
    if (versions.includes("v4_subgroup")) expect(() => ATTENTION_VERSIONS.v4_subgroup(beyondV4, beyondV4, beyondV4, tokens)).toThrow(/head dim 129 .* is over 128/);
    for (const chunkSize of [0, 257, 2.5]) {
      expect(() => splitKAttention(q, kv, kv, { ...tokens, chunkSize })).toThrow(/chunkSize .* must be an integer in \[1, 256\]/);
    }
    expect(gpu.dispatchCount).toBe(before);
  });
});

/**
 * Several sequences decoded in one batch share one q and one output [R, H, D], a sequence's
 * rows one after another; attention runs once per sequence over its own cache (`rows`, `out`).
 * Each version must read its queries from those rows (the others hold NaN), write the same
 * rows of `out` and no others (out starts poisoned: a row written by mistake stops being NaN),
 * and give exactly what it gives for the same queries alone in their own tensor.
 */
describe("attention over rows of a shared q and out", async () => {
  const gpu = await testGpu();
  const random = rng();
  const versions = (Object.keys(ATTENTION_VERSIONS) as AttentionVersion[]).filter((name) => attentionVersionSupported(gpu, name));
  const [R, H, Hkv, CAPACITY] = [5, 4, 2, 12];

  /** A cache [H_kv, CAPACITY, D] with `valid` random positions, NaN after. */
  function cacheOf(D: number, valid: number, dtype: DType) {
    const values = randn(random, Hkv * CAPACITY * D);
    for (let g = 0; g < Hkv; g++) values.fill(NaN, (g * CAPACITY + valid) * D, (g + 1) * CAPACITY * D);
    return upload(gpu, values, [Hkv, CAPACITY, D], dtype);
  }
  const host = (x: { t: Tensor; values: Float64Array }) => ({ values: x.values, shape: x.t.shape });

  /** Elements of rows [start, start + count) of an [R, H, D] array. */
  const rowsOf = (values: ArrayLike<number>, start: number, count: number, D: number) =>
    Array.from(values).slice(start * H * D, (start + count) * H * D);

  /** Every element outside rows [start, start + count) of `values` is NaN (never written). */
  function expectUntouched(values: ArrayLike<number>, start: number, count: number, D: number, what: string) {
    const written = new Set(Array.from({ length: count * H * D }, (_, e) => start * H * D + e));
    const touched = Array.from(values).findIndex((x, e) => !written.has(e) && !Number.isNaN(x));
    expect(touched, `${what}: element ${touched} outside rows [${start}, ${start + count}) was written`).toBe(-1);
  }

  interface RowsCase {
    start: number;
    count: number;
    D: number;
    /** Valid cache positions; query i sits at queryOffset + i, the keys after the last query are masked. */
    length: number;
    queryOffset: number;
    window?: number;
  }

  const CASES: RowsCase[] = [
    { start: 1, count: 1, D: 8, length: 7, queryOffset: 4 },
    { start: 1, count: 3, D: 8, length: 9, queryOffset: 3 },
    { start: 1, count: 1, D: 17, length: 6, queryOffset: 5 },
    { start: 1, count: 3, D: 17, length: 11, queryOffset: 2 },
    // The window counts back from each query's run-time position.
    { start: 1, count: 1, D: 8, length: 10, queryOffset: 9, window: 4 },
    { start: 2, count: 3, D: 17, length: 11, queryOffset: 6, window: 2 },
  ];

  /**
   * One version on one case, the cache length and query offset as numbers or (`dynamic`) as
   * StepValues from one state element, as the decode loop has them.
   */
  async function checkRows(version: AttentionVersion, c: RowsCase, dtype: DType, dynamic: boolean) {
    const what = `${version} ${dtype} rows [${c.start}, ${c.start + c.count}) of ${R}, D=${c.D}, length ${c.length}, offset ${c.queryOffset}${c.window ? `, window ${c.window}` : ""}${dynamic ? ", step values" : ""}`;
    // The other sequences' rows of q hold NaN: a version that reads one of them fails.
    const qValues = randn(random, R * H * c.D);
    qValues.fill(NaN, 0, c.start * H * c.D).fill(NaN, (c.start + c.count) * H * c.D);
    const q = upload(gpu, qValues, [R, H, c.D], dtype);
    const [k, v] = [cacheOf(c.D, c.length, dtype), cacheOf(c.D, c.length, dtype)];
    const numeric: AttentionOptions = { layout: "cache", length: c.length, causal: true, queryOffset: c.queryOffset, window: c.window };
    let options: AttentionOptions<U32Source> = numeric;
    if (dynamic) {
      // state[1] - 2 is the offset, the length `ahead` keys past it; the max leaves room to spare.
      const ahead = c.length - c.queryOffset;
      const state = gpu.tensor([0xdeadbeef, c.queryOffset + 2, 0xdeadbeef], [3], "u32");
      const position: StepValue = { tensor: state, index: 1, plus: -2, max: CAPACITY - ahead };
      options = { ...numeric, queryOffset: position, length: { ...position, plus: position.plus + ahead, max: position.max + ahead } };
    }
    const rows = { start: c.start, count: c.count };
    const out = gpu.empty([R, H, c.D], dtype, { name: "shared attention output" });
    expect(ATTENTION_VERSIONS[version](q.t, k.t, v.t, { ...options, rows, out }), what).toBe(out);
    const values = await out.read();

    const expected = attentionReference(host(q), host(k), host(v), { ...numeric, rows });
    const sliced = Float64Array.from(rowsOf(q.values, c.start, c.count, c.D));
    expect(expected, `${what}: the reference with rows is the reference on the sliced q`).toEqual(
      attentionReference({ values: sliced, shape: [c.count, H, c.D] }, host(k), host(v), numeric),
    );
    const taken = rowsOf(values, c.start, c.count, c.D);
    expectClose(taken, expected, attentionTolerance(dtype), what);
    expectUntouched(values, c.start, c.count, c.D, what);

    const alone = ATTENTION_VERSIONS[version](gpu.tensor(sliced, [c.count, H, c.D], dtype), k.t, v.t, options);
    expect(taken, `${what}: the same as the sliced q alone`).toEqual(Array.from(await alone.read()));
  }

  for (const version of versions) {
    it(`${version}: rows in the middle of a shared q, causal, numbers and step values`, async () => {
      for (const dtype of floatDtypes(gpu)) {
        for (const c of CASES) {
          for (const dynamic of [false, true]) await checkRows(version, c, dtype, dynamic);
        }
      }
    });

    it(`${version}: two sequences over their own caches fill one shared out, as a batch does`, async () => {
      const D = 8;
      const q = upload(gpu, randn(random, R * H * D), [R, H, D], "f32");
      // Sequence A decodes 2 positions from 4 (6 keys); sequence B prefills 3 from 0 over tokens-layout keys.
      const [kA, vA] = [cacheOf(D, 6, "f32"), cacheOf(D, 6, "f32")];
      const [kB, vB] = [0, 1].map(() => upload(gpu, randn(random, 3 * Hkv * D), [3, Hkv, D], "f32"));
      const a: AttentionOptions = { layout: "cache", length: 6, causal: true, queryOffset: 4, rows: { start: 0, count: 2 } };
      const b: AttentionOptions = { layout: "tokens", causal: true, rows: { start: 2, count: 3 } };
      const out = gpu.empty([R, H, D], "f32");
      ATTENTION_VERSIONS[version](q.t, kA.t, vA.t, { ...a, out });
      ATTENTION_VERSIONS[version](q.t, kB.t, vB.t, { ...b, out });
      const expected = [...attentionReference(host(q), host(kA), host(vA), a), ...attentionReference(host(q), host(kB), host(vB), b)];
      expectClose(await out.read(), expected, TOLERANCE.f32, `${version}: two sequences`);
    });

    it(`${version}: an out without rows is written instead of a new tensor`, async () => {
      const [S, D] = [3, 17];
      const q = upload(gpu, randn(random, S * H * D), [S, H, D], "f32");
      const [k, v] = [0, 1].map(() => upload(gpu, randn(random, 4 * Hkv * D), [4, Hkv, D], "f32"));
      const options: AttentionOptions = { layout: "tokens" };
      const out = gpu.empty([S, H, D], "f32");
      expect(ATTENTION_VERSIONS[version](q.t, k.t, v.t, { ...options, out })).toBe(out);
      expectClose(await out.read(), attentionReference(host(q), host(k), host(v), options), TOLERANCE.f32, `${version}: given out`);
    });
  }

  it("attention() picks its version for the rows taken, and writes them", async () => {
    const D = 8;
    const q = upload(gpu, randn(random, R * H * D), [R, H, D], "f32");
    const [k, v] = [cacheOf(D, 9, "f32"), cacheOf(D, 9, "f32")];
    const options: AttentionOptions = { layout: "cache", length: 9, causal: true, rows: { start: 3, count: 2 } };
    const out = gpu.empty([R, H, D], "f32");
    expect(attention(q.t, k.t, v.t, { ...options, out })).toBe(out);
    const values = await out.read();
    expectClose(rowsOf(values, 3, 2, D), attentionReference(host(q), host(k), host(v), options), TOLERANCE.f32, "attention() rows");
    expectUntouched(values, 3, 2, D, "attention() rows");
  });

  it("rejects bad rows and outs, naming the op and the argument, before any dispatch", () => {
    const t = (shape: number[], dtype: DType = "f32") => gpu.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
    const q = t([R, H, 8]);
    const cache = t([Hkv, CAPACITY, 8]);
    const out = t([R, H, 8]);
    const base: AttentionOptions = { layout: "cache", length: 6, causal: true };
    const bad: [string, Tensor, AttentionOptions, RegExp][] = [
      ["rows past q", q, { ...base, rows: { start: 3, count: 3 }, out }, /rows \[3, 6\) are outside the 5 rows of q f32\[5x4x8\]/],
      ["no rows", q, { ...base, rows: { start: 1, count: 0 }, out }, /rows start 1, count 0 must be integers, start >= 0 and count >= 1/],
      ["negative start", q, { ...base, rows: { start: -1, count: 2 }, out }, /rows start -1, count 2/],
      ["fractional start", q, { ...base, rows: { start: 0.5, count: 2 }, out }, /rows start 0.5, count 2/],
      ["fractional count", q, { ...base, rows: { start: 0, count: 1.5 }, out }, /rows start 0, count 1.5/],
      ["causal rows past the keys", q, { ...base, queryOffset: 4, rows: { start: 0, count: 3 }, out }, /causal queries at positions \[4, 7\) reach past the 6 keys/],
      ["rows without out", q, { ...base, rows: { start: 1, count: 2 } }, /rows \[1, 3\) of f32\[5x4x8\] need an out tensor/],
      ["out shaped like the rows taken", q, { ...base, rows: { start: 1, count: 2 }, out: t([2, H, 8]) }, /out f32\[2x4x8\] must be \[5, 4, 8\], the rows of f32\[5x4x8\]/],
      ["out without rows shaped like q's rows", t([2, H, 8]), { ...base, out }, /out f32\[5x4x8\] must be \[2, 4, 8\]/],
      ["out of rank 2", q, { ...base, rows: { start: 1, count: 2 }, out: t([R, H * 8]) }, /out f32\[5x32\] must be \[5, 4, 8\]/],
      ["out not in the output dtype", q, { ...base, rows: { start: 1, count: 2 }, out, outDtype: "f16" }, /out f32\[5x4x8\] must be f16, the output dtype/],
      ["out is q", q, { ...base, rows: { start: 1, count: 2 }, out: q }, /out f32\[5x4x8\] shares a buffer with q f32\[5x4x8\]/],
      ["out is the cache", t([Hkv, CAPACITY, 8]), { ...base, rows: { start: 0, count: 1 }, out: cache.reshape([Hkv, CAPACITY, 8]) }, /shares a buffer with k/],
    ];
    const before = gpu.dispatchCount;
    const runs: [string, typeof attention][] = [["attention", attention], ...versions.map((v): [string, typeof attention] => [v, ATTENTION_VERSIONS[v]])];
    for (const [what, qq, options, message] of bad) {
      for (const [name, run] of runs) {
        expect(() => run(qq, cache, cache, options), `${name}: ${what}`).toThrow(ShapeError);
        expect(() => run(qq, cache, cache, options), `${name}: ${what}`).toThrow(message);
        expect(() => run(qq, cache, cache, options), `${name}: ${what}`).toThrow(name === "attention" ? /^attention/ : new RegExp(`^attention ${name}`));
      }
    }
    expect(gpu.dispatchCount).toBe(before);
    const hostQ = { values: new Float64Array(R * H * 8), shape: [R, H, 8] };
    const hostKV = { values: new Float64Array(Hkv * CAPACITY * 8), shape: [Hkv, CAPACITY, 8] };
    expect(() => attentionReference(hostQ, hostKV, hostKV, { ...base, rows: { start: 4, count: 2 } })).toThrow(/attentionReference: rows \[4, 6\) are outside/);
    expect(() => attentionReference(hostQ, hostKV, hostKV, { ...base, out })).toThrow(/attentionReference: out is for the GPU versions/);
  });
});

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
import type { DType } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import { Gpu } from "../src/tensor/gpu.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { AWKWARD, expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

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
    (c.queryOffset === undefined ? "" : ` offset=${c.queryOffset}`)
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
    const options: AttentionOptions = { ...layout, causal: c.causal, queryOffset: c.queryOffset, scale: c.scale, outDtype: dtypes.out };
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
  }

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

/**
 * The K-quant reference quantizers (src/kernels/quant/quantize_k.ts) against ggml.
 *
 * Bit-exactness, two ways:
 * - the committed fixture (test/fixtures/ggml-quants.safetensors, made by
 *   scripts/ggml-quant-fixtures from ggml's own quantize_row_q{4,5,6}_K_ref) must come out
 *   byte for byte;
 * - a set of edge-case super-blocks built here from arithmetic alone (no Math.log or cos, whose
 *   last bits may differ between engines) must hash to the SHA-256 prefixes of the blocks that
 *   ggml d99724f2's quantize_row_*_ref produced for the same float32 input (compiled with gcc
 *   -O1 on x86-64, as make-fixtures.sh does, and checked both with and without NDEBUG).
 *
 * The error bound of dequantize(quantize(x)), derived from what the blocks store. Q4_K/Q5_K,
 * sub-block j: D = d·sc_j and M = dmin·m_j, quants 0…nmax. ggml first fits a float scale s and
 * minimum m to the sub-block, with quants L, then rounds s to sc_j against d' = max s / 63 and
 * m likewise, and d' to the half d. So |s − D| ≤ d'/2 + sc_j·|d' − d| ≤ d/2 + 64·e_d, where
 * e_d is the most a half rounding can move a value onto d (half an ulp of d's binade; 2^-25
 * for subnormal halves), and |m − M| ≤ dmin/2 + 64·e_dmin. The final quants are the nearest
 * points of the final grid, so no worse than the fit's L on it:
 *   |x − x̂| ≤ |x − (s·L − m)| + L·|s − D| + |m − M|
 *          ≤ 1.5·s + nmax·(d/2 + 64·e_d) + dmin/2 + 64·e_dmin
 *          ≤ 1.5·D + (nmax + 1.5)·(d/2 + 64·e_d) + dmin/2 + 64·e_dmin.
 * The 1.5·s is the one figure not derived: the fit is weighted least squares, so an element may
 * sit beyond s/2 of its grid (ggml clamps); 40 000 random sub-blocks of many shapes gave at most
 * 1.15·s. Q6_K: D = d·sc_j, quants −32…31, sc_j = round(s/d') with d' = max|s|/128 (clamped to
 * 127, so off by up to one step): |s − D| ≤ |d| + 129·e_d, and the x²-weighted fit came within
 * 0.63·|s| (1.0 allowed), so |x − x̂| ≤ |D| + 33·(|d| + 129·e_d). Halves that overflow (inputs
 * far beyond 65504·15) are outside this, as they are outside ggml's.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BLOCK_LAYOUT, dequantize, kScaleMin } from "../src/kernels/quant/blocks.js";
import { QUANTIZABLE_TYPES, quantize } from "../src/kernels/quant/quantize.js";
import { K_QUANTIZABLE_TYPES, nearestInt, quantizeK, quantizeQ4K, quantizeQ5K, quantizeQ6K, type KQuantizableType } from "../src/kernels/quant/quantize_k.js";
import { f16BitsToF32 } from "../src/tensor/dtype.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { randn, rng, SEED } from "./helpers.js";

const FIXTURE = join(import.meta.dirname, "fixtures", "ggml-quants.safetensors");
const QUANTIZER = { Q4_K: quantizeQ4K, Q5_K: quantizeQ5K, Q6_K: quantizeQ6K } as const;
const NMAX = { Q4_K: 15, Q5_K: 31, Q6_K: 32 } as const;

/** mulberry32, and a bell-shaped value from it by arithmetic only (sum of four uniforms, −2…2). */
function bell(seed: number): () => number {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => next() + next() + next() + next() - 2;
}

/** One super-block each; the values are rounded to float32 on the way in. */
const EDGE_CASES: Record<string, (i: number, n: () => number) => number> = {
  zeros: () => 0,
  "negative zeros": () => -0,
  "constant 0.75": () => 0.75,
  "constant -3.25": () => -3.25,
  "a constant per sub-block": (i) => ((i >> 5) - 3.5) * 0.5,
  "one huge outlier": (i, n) => (i === 100 ? 1e4 : 0.01 * n()),
  "negative only": (i, n) => -Math.abs(n()) * 0.5,
  "positive, away from 0": (i, n) => 5 + 0.1 * n(),
  "tiny (subnormal half scales)": (i, n) => 1e-3 * n(),
  "tinier (scales round to 0)": (i, n) => 1e-6 * n(),
  "uniform in ±65504": (i, n) => (n() / 2) * 65504,
  "alternating ±65504": (i) => (i % 2 ? -65504 : 65504),
  "65504 among small values": (i, n) => (i === 7 ? 65504 : n()),
  "small integers": (i) => (i % 7) - 3,
  "halfway values": (i) => (i % 16) - 7.5,
  "sub-blocks of very different sizes": (i, n) => n() * 10 ** ((i >> 5) - 4),
  "mostly zeros": (i, n) => (i % 9 === 0 ? n() : 0),
  "float32 subnormals": (i, n) => 1e-40 * n(),
};

function edgeInput(name: string): Float32Array {
  const n = bell(0x5eed + name.length * 7919);
  return Float32Array.from({ length: 256 }, (_, i) => EDGE_CASES[name](i, n));
}

/** The first 16 hex digits of SHA-256 of ggml's Q4_K, Q5_K and Q6_K blocks for each edge case. */
const GGML_DIGESTS: Record<string, [string, string, string]> = {
  zeros: ["81c611f35bff7949", "86d2cf5b090f43ee", "9e33403d6e41598a"],
  "negative zeros": ["81c611f35bff7949", "86d2cf5b090f43ee", "9e33403d6e41598a"],
  "constant 0.75": ["5fabdc90319837bf", "0b37a1096d26c980", "4175dc18369c0b4c"],
  "constant -3.25": ["8f2eaa570d08ff1b", "fb3b5f1e83e8f538", "5ae2ca0644e289d0"],
  "a constant per sub-block": ["811a2c93efe81c5e", "4b28546fd357d927", "166c4016f81fcfed"],
  "one huge outlier": ["5672252ba85a37e8", "bcdaa5812e75eaee", "6d6dc6cdd43662c6"],
  "negative only": ["a36ec7cd9f9b3614", "9c57e95b1dfd8eab", "13e17c41d11ec202"],
  "positive, away from 0": ["aa273fa413315454", "c97fcf65630a75b6", "33a914bf8c976d9a"],
  "tiny (subnormal half scales)": ["87a9e01ebf853635", "a1c4bf7898a90f76", "a00641abe8eaf641"],
  "tinier (scales round to 0)": ["0a93f95d8c9c4e22", "1c909352a630c6ea", "cc2707f9871fe236"],
  "uniform in ±65504": ["742452fccb863cc8", "ea19566708679dec", "2618b7a15ff247fb"],
  "alternating ±65504": ["ea5983f074bd8787", "4577304084e35e25", "e2211812e62ee766"],
  "65504 among small values": ["c6500c1a3934857b", "5722037835ba3cff", "d0469fe1483cd8a7"],
  "small integers": ["41d037fc67306880", "2adf43fe91cdcb84", "5813b39d3508e384"],
  "halfway values": ["50c28dc514f752ba", "58bfe5ada116f59d", "aec6780dd34ead95"],
  "sub-blocks of very different sizes": ["7ed07801238fdbb2", "30470581d46a7d14", "dad38a1c7530ca5b"],
  "mostly zeros": ["2b88466a462660a1", "9946e4337f92bec6", "ea1f84c9b8b5b047"],
};

const digest = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex").slice(0, 16);

/** The most a half rounding can have moved a value that became `h`: half an ulp of h's binade. */
function halfRoundingError(h: number): number {
  const a = Math.abs(h);
  return a < 2 ** -14 ? 2 ** -25 : 2 ** (Math.floor(Math.log2(a)) - 11);
}

/** What super-block `b` of `q` stores: d (and dmin), and each sub-block's grid step D and offset M (x̂ = D·q − M). */
function superBlock(type: KQuantizableType, q: Uint8Array, b: number) {
  const at = b * BLOCK_LAYOUT[type].bytes;
  const view = new DataView(q.buffer, q.byteOffset + at, BLOCK_LAYOUT[type].bytes);
  if (type === "Q6_K") {
    const d = f16BitsToF32(view.getUint16(208, true));
    const sc = Array.from({ length: 16 }, (_, j) => view.getInt8(192 + j));
    return { d, dmin: 0, sc, m: sc.map(() => 0), D: sc.map((s) => d * s), M: sc.map((s) => 32 * d * s), size: 16 };
  }
  const d = f16BitsToF32(view.getUint16(0, true));
  const dmin = f16BitsToF32(view.getUint16(2, true));
  const pairs = Array.from({ length: 8 }, (_, j) => kScaleMin(q.subarray(at + 4, at + 16), j));
  const sc = pairs.map(([s]) => s);
  const m = pairs.map(([, mm]) => mm);
  return { d, dmin, sc, m, D: sc.map((s) => d * s), M: m.map((mm) => dmin * mm), size: 32 };
}

/** The bound of the file header for every element of `q`. */
function errorBounds(type: KQuantizableType, q: Uint8Array, count: number): Float64Array {
  const out = new Float64Array(count);
  for (let b = 0; b < count / 256; b++) {
    const { d, dmin, D, size } = superBlock(type, q, b);
    for (let j = 0; j < 256 / size; j++) {
      const bound =
        type === "Q6_K"
          ? Math.abs(D[j]) + 33 * (Math.abs(d) + 129 * halfRoundingError(d))
          : 1.5 * D[j] + (NMAX[type] + 1.5) * (d / 2 + 64 * halfRoundingError(d)) + dmin / 2 + 64 * halfRoundingError(dmin);
      out.fill(bound, b * 256 + j * size, b * 256 + (j + 1) * size);
    }
  }
  return out;
}

function expectWithinBound(type: KQuantizableType, x: Float32Array, what: string): { q: Uint8Array; y: Float64Array } {
  const q = quantize(type, x);
  const y = dequantize(type, q, x.length);
  const bounds = errorBounds(type, q, x.length);
  for (let i = 0; i < x.length; i++) {
    const error = Math.abs(x[i] - y[i]);
    if (!(error <= bounds[i] * (1 + 2 ** -20))) {
      expect.fail(`${what} ${type}: element ${i} (super-block ${i >> 8}) is ${y[i]} for ${x[i]}: off by ${error}, over the bound ${bounds[i]}`);
    }
  }
  return { q, y };
}

describe("K-quants as ggml's reference quantizers make them", async () => {
  const file = await SafetensorsFile.open(FIXTURE);
  const input = Float32Array.from((await file.readFloat32("input")).data);

  for (const type of K_QUANTIZABLE_TYPES) {
    it(`${type}: the fixture's blocks, byte for byte`, async () => {
      const want = await file.readBytes(`${type}.blocks`);
      const { bytes } = BLOCK_LAYOUT[type];
      for (const got of [QUANTIZER[type](input), quantizeK(type, input), quantize(type, input)]) {
        expect(got.byteLength).toBe(want.byteLength);
        for (let i = 0; i < got.byteLength; i++) {
          if (got[i] !== want[i]) expect(got[i], `${type} byte ${i} (block ${Math.floor(i / bytes)}, byte ${i % bytes} of it)`).toBe(want[i]);
        }
      }
    });
  }

  it("the edge cases hash as ggml's blocks do", () => {
    const got: Record<string, string[]> = {};
    for (const name of Object.keys(GGML_DIGESTS)) got[name] = K_QUANTIZABLE_TYPES.map((type) => digest(quantize(type, edgeInput(name))));
    expect(got).toEqual(GGML_DIGESTS);
  });

  it("values too small for float32's normal range give all-zero blocks", () => {
    // ggml's debug build stops here on nearest_int's range assertion (the first scale search
    // divides by a subnormal range and gets infinity); a release build, like this, writes zeros.
    for (const type of K_QUANTIZABLE_TYPES) {
      const q = quantize(type, edgeInput("float32 subnormals"));
      expect(q.every((byte) => byte === 0), type).toBe(true);
    }
  });

  it("lists the K-quants among the quantizable types", () => {
    expect(QUANTIZABLE_TYPES).toEqual(["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]);
  });
});

describe("nearest_int", () => {
  it("rounds to nearest, ties to even, as the float32 magic-number trick does", () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 0.49999997, 62.5, 63.4].map(nearestInt)).toEqual([0, 2, 2, 4, 0, -2, -2, 0, 62, 63]);
    expect(nearestInt(-0)).toBe(0);
    expect(nearestInt(4194303)).toBe(4194303);
    expect(nearestInt(-4194303)).toBe(-4194303);
    // The argument is a float32: 2.5000002 is the float32 just above 2.5.
    expect(nearestInt(Math.fround(2.5000002))).toBe(3);
    expect(nearestInt(NaN)).toBe(0);
  });
});

describe("dequantize(quantize(x)) is within the bound of the header", () => {
  const random = rng(SEED);
  const shapes: Record<string, (count: number, scale: number) => Float32Array> = {
    normal: (count, scale) => Float32Array.from(randn(random, count, scale)),
    uniform: (count, scale) => Float32Array.from({ length: count }, () => (2 * random() - 1) * scale),
    "outliers every 97": (count, scale) => Float32Array.from(randn(random, count, scale), (v, i) => (i % 97 === 0 ? 30 * v : v)),
    "positive only": (count, scale) => Float32Array.from(randn(random, count, scale), (v) => Math.abs(v) + scale),
  };
  for (const type of K_QUANTIZABLE_TYPES) {
    it(`${type} (seed ${SEED})`, () => {
      for (const [shape, make] of Object.entries(shapes)) {
        for (const scale of [1e-3, 0.02, 1, 300]) {
          const x = make(8 * 256, scale);
          const { q, y } = expectWithinBound(type, x, `${shape} ×${scale}`);
          // And the bound is not all there is: where the halves are normal (subnormal ones
          // have few bits, so the sub-block grids move further), most values are within half
          // their grid step.
          let within = 0;
          let counted = 0;
          for (let b = 0; b < x.length / 256; b++) {
            const { d, D, size } = superBlock(type, q, b);
            if (Math.abs(d) < 2 ** -14) continue;
            counted += 256;
            for (let i = b * 256; i < (b + 1) * 256; i++) if (Math.abs(x[i] - y[i]) <= (Math.abs(D[Math.floor((i & 255) / size)]) / 2) * (1 + 2 ** -16)) within++;
          }
          if (counted) expect(within / counted, `${shape} ×${scale} ${type}: the share within half a step`).toBeGreaterThan(0.9);
        }
      }
    });
  }
});

describe("edge cases", () => {
  for (const type of K_QUANTIZABLE_TYPES) {
    it(`${type}: zeros, constants, an outlier, one sign, tiny and huge values`, () => {
      for (const name of ["zeros", "negative zeros"]) {
        const q = quantize(type, edgeInput(name));
        expect(q.every((byte) => byte === 0), `${name}: every byte 0`).toBe(true);
        expect(dequantize(type, q, 256).every((v) => v === 0), `${name}: exact zeros back`).toBe(true);
      }
      for (const name of ["constant 0.75", "constant -3.25"]) {
        const x = edgeInput(name);
        const { y } = expectWithinBound(type, x, name);
        // One value throughout comes back as that value to about a half's precision: every
        // sub-block has the largest scale, so the 6- or 8-bit integers lose nothing.
        for (let i = 0; i < 256; i++) expect(Math.abs(y[i] - x[i]), `${name} element ${i}`).toBeLessThanOrEqual(Math.abs(x[i]) * 2 ** -10);
      }
      {
        const x = edgeInput("one huge outlier");
        const { q, y } = expectWithinBound(type, x, "one huge outlier");
        // The outlier's own sub-block has the largest scale (6-bit scale 63, or Q6_K's −128)
        // and keeps it within half a step.
        const { D, sc, size } = superBlock(type, q, 0);
        const j = Math.floor(100 / size);
        expect(Math.abs(sc[j])).toBe(type === "Q6_K" ? 128 : 63);
        expect(Math.abs(y[100] - 1e4)).toBeLessThanOrEqual(Math.abs(D[j]) / 2);
      }
      for (const name of ["a constant per sub-block", "negative only", "positive, away from 0", "uniform in ±65504", "alternating ±65504", "65504 among small values", "small integers", "halfway values", "sub-blocks of very different sizes", "mostly zeros"]) {
        const { q, y } = expectWithinBound(type, edgeInput(name), name);
        const { d, dmin } = superBlock(type, q, 0);
        expect(Number.isFinite(d) && Number.isFinite(dmin) && y.every(Number.isFinite), `${name}: finite halves`).toBe(true);
      }
      {
        const x = edgeInput("tiny (subnormal half scales)");
        const { q } = expectWithinBound(type, x, "tiny");
        const { d } = superBlock(type, q, 0);
        expect(Math.abs(d), "d is a subnormal half").toBeGreaterThan(0);
        expect(Math.abs(d), "d is a subnormal half").toBeLessThan(2 ** -14);
      }
      {
        const x = edgeInput("tinier (scales round to 0)");
        const q = quantize(type, x);
        const { d, dmin } = superBlock(type, q, 0);
        expect([d, dmin]).toEqual([0, 0]);
        expect(dequantize(type, q, 256).every((v) => v === 0)).toBe(true);
      }
    });
  }

  it("refuses lengths that are not whole super-blocks", () => {
    for (const type of K_QUANTIZABLE_TYPES) {
      expect(() => quantize(type, new Float32Array(300))).toThrow(new RegExp(`300 values are not whole ${type} blocks of 256`));
      expect(() => QUANTIZER[type](new Float32Array(32))).toThrow(new RegExp(`32 values are not whole ${type} blocks of 256`));
      expect(quantize(type, new Float32Array(0)).byteLength).toBe(0);
    }
  });
});

describe("ggml's scheme holds on random matrices", () => {
  const random = rng(SEED + 1);
  for (const type of K_QUANTIZABLE_TYPES) {
    it(`${type} (seed ${SEED + 1})`, () => {
      const { bytes } = BLOCK_LAYOUT[type];
      const nmax = NMAX[type];
      for (const [rows, k] of [[3, 1], [2, 3], [5, 2]]) {
        const cols = 256 * k;
        const scale = 10 ** (random() * 4 - 3);
        const x = Float32Array.from(randn(random, rows * cols, scale), (v, i) => v * (1 + ((i >> 5) % 5)) + (i % 3 === 0 ? scale : 0));
        const q = quantize(type, x);
        expect(q.byteLength).toBe(rows * k * bytes);
        // Rows are independent: the matrix's blocks are its rows' blocks, one after another.
        for (let r = 0; r < rows; r++) {
          expect(digest(quantize(type, x.subarray(r * cols, (r + 1) * cols))), `row ${r}`).toBe(digest(q.subarray(r * k * bytes, (r + 1) * k * bytes)));
        }
        const y = dequantize(type, q, x.length);
        for (let b = 0; b < rows * k; b++) {
          const { d, dmin, sc, m, D, M, size } = superBlock(type, q, b);
          // The sub-block with the largest scale (and the one with the largest minimum) sets the
          // super-block's half, so it gets the largest 6-bit integer, 63; Q6_K's gets −128.
          if (type === "Q6_K") expect(sc.includes(-128), `block ${b}: a scale of −128`).toBe(true);
          else {
            expect(Math.max(...sc), `block ${b}: a scale of 63`).toBe(63);
            if (dmin > 0) expect(Math.max(...m), `block ${b}: a minimum of 63`).toBe(63);
          }
          for (let j = 0; j < 256 / size; j++) {
            const step = Math.abs(D[j]);
            // The grid is {D·q − M : q = 0…top} (Q6_K: D·(q − 32) for q = 0…63, so M = 32·D).
            const top = type === "Q6_K" ? 63 : nmax;
            const lo = Math.min(-M[j], D[j] * top - M[j]);
            const hi = Math.max(-M[j], D[j] * top - M[j]);
            for (let i = b * 256 + j * size; i < b * 256 + (j + 1) * size; i++) {
              // Each value got the grid point nearest to it (ggml rounds (x + M)/D in float32, so
              // allow a few float32 roundings of the magnitudes involved).
              const slack = 2 ** -20 * (Math.abs(x[i]) + Math.abs(M[j]) + top * step);
              const nearest = x[i] < lo ? lo - x[i] : x[i] > hi ? x[i] - hi : step / 2;
              const what = `block ${b} sub-block ${j} element ${i}: ${x[i]} → ${y[i]} (D ${D[j]}, M ${M[j]}, d ${d})`;
              expect(Math.abs(x[i] - y[i]), what).toBeLessThanOrEqual(nearest + slack);
            }
          }
        }
        expectWithinBound(type, x, `matrix [${rows}, ${cols}]`);
      }
    });
  }
});

/**
 * ggml's K-quants made on the CPU exactly as its reference quantizers (quantize_row_q4_K_ref,
 * quantize_row_q5_K_ref, quantize_row_q6_K_ref in ggml-quants.c) make them, byte for byte.
 *
 * A K-quant block is a super-block of 256 values cut into sub-blocks, each with its own small
 * integer scale, and one or two half-precision factors for the whole super-block that turn
 * those small integers into real scales (the layouts are in blocks.ts).
 *
 * Q4_K and Q5_K: 8 sub-blocks of 32, w = d·sc_j·q − dmin·m_j with q in [0, 15] (Q4_K) or
 *   [0, 31] (Q5_K) and sc_j, m_j 6-bit integers.
 *   1. Each sub-block gets a float scale s_j and minimum m_j by a small search: the values are
 *      weighted by how large they are (the sub-block's RMS plus |x|, so big values count
 *      more), and for a sweep of candidate steps (range/(nmax + rmin + k·0.1) for k = 0…nstep,
 *      around the plain range/nmax) the values are rounded onto that grid and a weighted least
 *      squares fit gives the best scale and minimum for those quants (the minimum is never
 *      allowed above 0, so the grid always reaches 0 or below); the candidate with the
 *      smallest weighted squared error wins, the plain range/nmax grid being the one to beat.
 *      (A quirk that matters for the bytes: once a candidate wins, the later ones take their
 *      range and their offset from its fitted minimum instead of the data's.)
 *   2. The super-block's d is the largest s_j / 63 and dmin the largest m_j / 63, each rounded
 *      to a half; s_j and m_j become 6-bit integers against the unrounded factors (rounded to
 *      nearest, at most 63), packed into 12 bytes.
 *   3. With the scales now fixed to what a reader will see (half times 6-bit integer), every
 *      value is rounded once more onto its sub-block's final grid. A sub-block whose final
 *      scale is 0 keeps the quants of step 1.
 *
 * Q6_K: 16 sub-blocks of 16, w = d·sc_j·(q − 32) with q in [0, 63] and sc_j a signed byte.
 *   1. Each sub-block gets a symmetric scale: start from the step that maps the value of
 *      largest magnitude (its sign kept) to −32, then try 18 nearby steps (32 ± 0.1…0.9) and
 *      keep the one whose quants give the best x²-weighted least-squares fit.
 *   2. d is the scale of largest magnitude / −128 as a half (so it carries that sign), and
 *      each sub-block's scale becomes round(s_j / d) (against the unrounded d), at most 127,
 *      in a signed byte.
 *   3. Every value is rounded again onto its final grid, as for Q4_K.
 *
 * ggml does all of this in float32, so every operation here is rounded to float32
 * (Math.fround) in the order C evaluates it; rounding to an integer uses ggml's nearest_int
 * trick (add 1.5·2^23 in float32 and read the low mantissa bits: to nearest, ties to even),
 * and the conversions to integers (6-bit scales through a byte, Q6_K's scales through a
 * signed byte) wrap and clamp as C's do. Halves are rounded to nearest even, as ggml's
 * software conversion does.
 */
import { f16BitsToF32, f32ToF16Bits } from "../../tensor/dtype.js";
import { BLOCK_LAYOUT, kScaleMin } from "./blocks.js";

export const K_QUANTIZABLE_TYPES = ["Q4_K", "Q5_K", "Q6_K"] as const;
export type KQuantizableType = (typeof K_QUANTIZABLE_TYPES)[number];

const f = Math.fround;
/** ggml's threshold below which a group counts as all zeros (1e-15f). */
const GROUP_MAX_EPS = f(1e-15);
const TENTH = f(0.1);
const QK_K = 256;

const scratchF32 = new Float32Array(1);
const scratchI32 = new Int32Array(scratchF32.buffer);

/**
 * ggml's nearest_int: `v` (a float32) plus 1.5·2^23, rounded to float32, whose low 23 bits then
 * hold the integer: round to nearest, ties to even, for |v| < 2^22 (ggml asserts that range;
 * outside it this returns what the same bits give in C).
 */
export function nearestInt(v: number): number {
  // A NaN (from an infinite scale) gives 0, as the default NaN of x86 and Arm does in C (a NaN
  // input's payload aside); a JS engine need not keep NaN bits, so this is not left to them.
  if (v !== v) return 0;
  // Rounding the float64 sum to float32 gives the float32 sum: float64 has more than twice
  // float32's precision, so the double rounding is harmless.
  scratchF32[0] = v + 12582912;
  return (scratchI32[0] & 0x007fffff) - 0x00400000;
}

/**
 * The scale and minimum of one Q4_K/Q5_K sub-block (ggml's make_qkx2_quants with use_mad off):
 * writes the quants to `L` and returns [scale, −min], the second never below zero.
 */
function fitScaleMin(
  x: Float32Array,
  weights: Float32Array,
  L: Uint8Array,
  Laux: Uint8Array,
  nmax: number,
  rmin: number,
  rdelta: number,
  nstep: number,
): [number, number] {
  const n = x.length;
  let min = x[0];
  let max = x[0];
  let sumW = weights[0];
  let sumX = f(sumW * x[0]);
  for (let i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const w = weights[i];
    sumW = f(sumW + w);
    sumX = f(sumX + f(w * x[i]));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0);
    return [0, -min];
  }
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = nearestInt(f(iscale * f(x[i] - min)));
    L[i] = l < 0 ? 0 : l > nmax ? nmax : l;
    let diff = f(f(f(scale * L[i]) + min) - x[i]);
    diff = f(diff * diff);
    bestError = f(bestError + f(weights[i] * diff));
  }
  if (nstep < 1) return [scale, -min];
  // Note that `min` is the best candidate's from here on: ggml's later candidates take their
  // range, and the offset of their quants, from it rather than from the data's minimum.
  for (let step = 0; step <= nstep; step++) {
    iscale = f(f(f(rmin + f(rdelta * step)) + nmax) / f(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      let l = nearestInt(f(iscale * f(x[i] - min)));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      Laux[i] = l;
      const wl = f(weights[i] * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * x[i]));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (!(D > 0)) continue;
    let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
    let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = f(sumXL / sumL2);
    }
    let error = 0;
    for (let i = 0; i < n; i++) {
      let diff = f(f(f(thisScale * Laux[i]) + thisMin) - x[i]);
      diff = f(diff * diff);
      error = f(error + f(weights[i] * diff));
    }
    if (error < bestError) {
      L.set(Laux);
      bestError = error;
      scale = thisScale;
      min = thisMin;
    }
  }
  return [scale, -min];
}

/**
 * The symmetric scale of one Q6_K sub-block (ggml's make_qx_quants with nmax 32, weights x²):
 * writes the quants, offset by 32, to `L` and returns the scale (0, with all quants 0, for a
 * group of zeros).
 */
function fitSymmetricScale(x: Float32Array, L: Uint8Array): number {
  const nmax = 32;
  const n = x.length;
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0);
    return 0;
  }
  const clamp = (l: number) => (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l);
  let iscale = f(-nmax / max);
  let sumLX = 0;
  let sumL2 = 0;
  for (let i = 0; i < n; i++) {
    const l = clamp(nearestInt(f(iscale * x[i])));
    L[i] = l + nmax;
    const w = f(x[i] * x[i]);
    sumLX = f(sumLX + f(f(w * x[i]) * l));
    sumL2 = f(sumL2 + f(f(w * l) * l));
  }
  let scale = sumL2 ? f(sumLX / sumL2) : 0;
  let best = f(scale * sumLX);
  for (let step = -9; step <= 9; step++) {
    if (step === 0) continue;
    iscale = f(-f(nmax + f(TENTH * step)) / max);
    sumLX = 0;
    sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const l = clamp(nearestInt(f(iscale * x[i])));
      const w = f(x[i] * x[i]);
      sumLX = f(sumLX + f(f(w * x[i]) * l));
      sumL2 = f(sumL2 + f(f(w * l) * l));
    }
    if (sumL2 > 0 && f(sumLX * sumLX) > f(best * sumL2)) {
      for (let i = 0; i < n; i++) L[i] = nmax + clamp(nearestInt(f(iscale * x[i])));
      scale = f(sumLX / sumL2);
      best = f(scale * sumLX);
    }
  }
  return scale;
}

function checkLength(type: KQuantizableType, values: Float32Array): number {
  if (values.length % QK_K !== 0) {
    throw new RangeError(`quantize: ${values.length} values are not whole ${type} blocks of ${QK_K}`);
  }
  return values.length / QK_K;
}

/** Q4_K (nmax 15) or Q5_K (nmax 31): the shared scale search, then each type's packing. */
function quantizeScaleMin(type: "Q4_K" | "Q5_K", values: Float32Array): Uint8Array {
  const blocks = checkLength(type, values);
  const five = type === "Q5_K";
  const nmax = five ? 31 : 15;
  const [rmin, nstep] = five ? [-0.5, 15] : [-1, 20];
  const { bytes } = BLOCK_LAYOUT[type];
  const out = new Uint8Array(blocks * bytes);
  const view = new DataView(out.buffer);
  const L = new Uint8Array(QK_K);
  const Laux = new Uint8Array(32);
  const weights = new Float32Array(32);
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  for (let b = 0; b < blocks; b++) {
    const x = values.subarray(b * QK_K, (b + 1) * QK_K);
    const at = b * bytes;
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 8; j++) {
      const xs = x.subarray(32 * j, 32 * j + 32);
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f(xs[l] * xs[l]));
      const avX = f(Math.sqrt(f(sumX2 / 32)));
      for (let l = 0; l < 32; l++) weights[l] = avX + Math.abs(xs[l]); // rounded to float32 by the store
      [scales[j], mins[j]] = fitScaleMin(xs, weights, L.subarray(32 * j, 32 * j + 32), Laux, nmax, rmin, TENTH, nstep);
      if (scales[j] > maxScale) maxScale = scales[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
    const packed = out.subarray(at + 4, at + 16);
    for (let j = 0; j < 8; j++) {
      // C stores nearest_int's int into a uint8_t (so modulo 256) before clamping to 63.
      const ls = Math.min(63, nearestInt(f(invScale * scales[j])) & 255);
      const lm = Math.min(63, nearestInt(f(invMin * mins[j])) & 255);
      if (j < 4) {
        packed[j] = ls;
        packed[j + 4] = lm;
      } else {
        packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        packed[j - 4] |= (ls >> 4) << 6;
        packed[j] |= (lm >> 4) << 6;
      }
    }
    const dBits = f32ToF16Bits(f(maxScale / 63));
    const dminBits = f32ToF16Bits(f(maxMin / 63));
    view.setUint16(at, dBits, true);
    view.setUint16(at + 2, dminBits, true);
    const d = f16BitsToF32(dBits);
    const dmin = f16BitsToF32(dminBits);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = kScaleMin(packed, j);
      const dj = f(d * sc);
      if (dj === 0) continue; // C's `!d`: a NaN scale (from an infinite half) does not skip
      const mj = f(dmin * m);
      for (let i = 32 * j; i < 32 * j + 32; i++) {
        const l = nearestInt(f(f(x[i] + mj) / dj));
        L[i] = l < 0 ? 0 : l > nmax ? nmax : l;
      }
    }
    // Groups of 64: element g·64 + l in the low nibble of byte g·32 + l, g·64 + 32 + l in its
    // high nibble; Q5_K's fifth bits in bit 2g (and 2g + 1) of qh[l].
    const qh = five ? out.subarray(at + 16, at + 48) : null;
    const qs = out.subarray(at + (five ? 48 : 16), at + bytes);
    for (let g = 0; g < 4; g++) {
      for (let l = 0; l < 32; l++) {
        const lo = L[64 * g + l];
        const hi = L[64 * g + 32 + l];
        qs[32 * g + l] = (lo & 0xf) | ((hi & 0xf) << 4);
        if (qh) qh[l] |= ((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1));
      }
    }
  }
  return out;
}

/** ggml's Q4_K blocks (144 bytes per 256 values) for `values`, a whole number of blocks. */
export function quantizeQ4K(values: Float32Array): Uint8Array {
  return quantizeScaleMin("Q4_K", values);
}

/** ggml's Q5_K blocks (176 bytes per 256 values) for `values`, a whole number of blocks. */
export function quantizeQ5K(values: Float32Array): Uint8Array {
  return quantizeScaleMin("Q5_K", values);
}

/** ggml's Q6_K blocks (210 bytes per 256 values) for `values`, a whole number of blocks. */
export function quantizeQ6K(values: Float32Array): Uint8Array {
  const blocks = checkLength("Q6_K", values);
  const { bytes } = BLOCK_LAYOUT.Q6_K;
  const out = new Uint8Array(blocks * bytes);
  const view = new DataView(out.buffer);
  const L = new Uint8Array(QK_K);
  const scales = new Float32Array(16);
  for (let b = 0; b < blocks; b++) {
    const x = values.subarray(b * QK_K, (b + 1) * QK_K);
    const at = b * bytes;
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let s = 0; s < 16; s++) {
      const scale = fitSymmetricScale(x.subarray(16 * s, 16 * s + 16), L.subarray(16 * s, 16 * s + 16));
      scales[s] = scale;
      const abs = Math.abs(scale);
      if (abs > maxAbsScale) {
        maxAbsScale = abs;
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) continue; // an all-zero block: every byte 0, d = +0
    const iscale = f(-128 / maxScale);
    const dBits = f32ToF16Bits(f(1 / iscale));
    view.setUint16(at + 208, dBits, true);
    const d = f16BitsToF32(dBits);
    for (let s = 0; s < 16; s++) {
      // Into an int8_t, as C does (setInt8 wraps modulo 256).
      view.setInt8(at + 192 + s, Math.min(127, nearestInt(f(iscale * scales[s]))));
    }
    for (let s = 0; s < 16; s++) {
      const ds = f(d * view.getInt8(at + 192 + s));
      if (ds === 0) continue; // as above: a NaN scale does not skip
      for (let i = 16 * s; i < 16 * s + 16; i++) {
        const l = nearestInt(f(x[i] / ds));
        L[i] = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
      }
    }
    // Halves of 128: four runs of 32 (elements h·128 + r·32 + l), low nibbles of runs 0 and 2
    // in ql[h·64 + l], of runs 1 and 3 in ql[h·64 + 32 + l]; their top two bits in qh[h·32 + l].
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const q1 = L[128 * h + l];
        const q2 = L[128 * h + 32 + l];
        const q3 = L[128 * h + 64 + l];
        const q4 = L[128 * h + 96 + l];
        out[at + 64 * h + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        out[at + 64 * h + 32 + l] = (q2 & 0xf) | ((q4 & 0xf) << 4);
        out[at + 128 + 32 * h + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
  return out;
}

/** The blocks of K-quant `type` for `values` (a whole number of 256-value super-blocks). */
export function quantizeK(type: KQuantizableType, values: Float32Array): Uint8Array {
  switch (type) {
    case "Q4_K":
      return quantizeQ4K(values);
    case "Q5_K":
      return quantizeQ5K(values);
    case "Q6_K":
      return quantizeQ6K(values);
  }
}

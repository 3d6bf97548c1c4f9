/**
 * randomBlocks: fill a QuantizedMatrix's packed words with seeded random blocks, on the GPU.
 *
 * What `bench e2e --dtype q4_k` (src/bench/random_model.ts) builds a quantized model of real
 * size from, as randomFill builds a float one: a 7B decoder's 3.8 GB of Q4_K blocks are written here
 * in seconds, with no host memory and no quantizer run.
 *
 * Every byte of the matrix is random, byte i of its stream (the matrix's bytes, row after row)
 * being the top 8 bits of the sampler's hash of (seed, i) (random.ts: the PCG hash applied
 * twice), except the f16 halves of each block (BLOCK_LAYOUT[type].halves: its scale, and its
 * minimum where it has one), which all hold one fixed value chosen so that the dequantized
 * weights have the spread transformers initialises with (std 0.02 by default) and a mean near 0.
 * A matrix stored as row parts gets, part by part (each with its rowStart), exactly the bytes it
 * would get whole, since part i's bytes are bytes rowStart·rowBytes + ... of the one stream.
 *
 * The halves, from the quants' distribution (every bit random: a 6-bit value uniform on 0..63,
 * an int8 on −128..127, n equally likely integers having variance (n² − 1)/12):
 *
 *   Q8_0  w = d·q, q uniform on [−128, 127]: mean −0.5·d, std √((256² − 1)/12)·d = 73.9·d
 *   Q4_0  w = d·(q − 8), q on [0, 15]: mean −0.5·d, std √(255/12)·d = 4.61·d
 *   Q5_0  w = d·(q − 16), q on [0, 31]: mean −0.5·d, std √(1023/12)·d = 9.23·d
 *   Q4_1  w = d·q + m, m = −7.5·d (the mean of q times d): mean 0, std 4.61·d
 *   Q5_1  w = d·q + m, m = −15.5·d: mean 0, std 9.23·d
 *   Q4_K  w = d·s·q − dmin·m, with s, m (a sub-block's 6-bit scale and min) uniform on 0..63,
 *         independent of each other and of q (on 0..15; mean μq = 7.5, E[q²] = 77.5). With
 *         dmin = μq·d the mean is d·(E[s]·μq − μq·E[m]) = 0, and
 *           E[w²] = d²·(E[s²]·E[q²] − 2·μq²·E[s]² + μq²·E[s²]),  E[s] = 31.5, E[s²] = 1333.5,
 *         = 66727.5·d²: std 258.3·d
 *   Q5_K  the same with q on 0..31 (μq = 15.5, E[q²] = 325.5), dmin = 15.5·d: std 526.9·d
 *   Q6_K  w = d·s·(q − 32), s int8 on [−128, 127], q on 0..63: mean 0.25·d,
 *         E[w²] = E[s²]·E[(q − 32)²]·d² = 5461.5 · 341.5 · d²: std 1365.7·d
 *
 * so d = std / spread, rounded to the nearest f16, and the minimum computed from that rounded d
 * and rounded in turn (randomBlockHalves). Q4_0's and Q5_0's means, −0.5·d, are 11% and 5% of
 * their std: their formats have no minimum to cancel it. At std 0.02, Q5_K's d (3.8e-5) and
 * Q6_K's (1.5e-5) are f16 subnormals, as the scales of real Q5_K and Q6_K files of weights this
 * small are: the kernels must read them (test/quant_random_blocks.test.ts runs a product).
 * Within a K-quant sub-block the weights share s and m, so they are correlated there: what
 * matters for timing is only that they are finite and of a realistic size.
 *
 * One thread per u32 word, its 4 bytes hashed at once (vec4); a byte knows its place in its
 * block from its index, so blocks that straddle words (Q8_0's 34 bytes, Q6_K's 210) need
 * nothing special. The bytes of the last word past the matrix's end are 0.
 */
import { f16BitsToF32, f32ToF16Bits } from "../../tensor/dtype.js";
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import { uniform, uniformWgsl } from "../random.js";
import { BLOCK_LAYOUT, type QuantizedType } from "./blocks.js";
import { checkQuantizedMatrix, quantizedRowBytes, type QuantizedMatrix } from "./matvec_common.js";

export interface RandomBlocksOptions {
  /** Selects the stream: any integer in [0, 2^32). */
  seed: number;
  /** The matrix's row at row 0 of this one (for one row part of a bigger matrix). Default 0. */
  rowStart?: number;
  /** Standard deviation of the dequantized weights (default 0.02, as transformers initialises). */
  std?: number;
}

/** The mean and variance of an integer uniform on n consecutive values from `from`. */
function uniformInt(from: number, n: number): { mean: number; square: number } {
  const mean = from + (n - 1) / 2;
  return { mean, square: (n * n - 1) / 12 + mean * mean };
}

/**
 * The std of the dequantized weights for d = 1, and the minimum (Q4_1, Q5_1) or dmin (K-quants)
 * as a multiple of d: the derivation at the top of this file.
 */
export function randomBlockSpread(type: QuantizedType): { std: number; minPerD: number | null } {
  const bits6 = uniformInt(0, 64);
  const moments = (q: { mean: number; square: number }) => Math.sqrt(q.square - q.mean * q.mean); // the std of q
  switch (type) {
    case "Q8_0":
      return { std: moments(uniformInt(-128, 256)), minPerD: null };
    case "Q4_0":
      return { std: moments(uniformInt(-8, 16)), minPerD: null };
    case "Q5_0":
      return { std: moments(uniformInt(-16, 32)), minPerD: null };
    case "Q4_1":
    case "Q5_1": {
      const q = uniformInt(0, type === "Q4_1" ? 16 : 32);
      return { std: moments(q), minPerD: -q.mean };
    }
    case "Q4_K":
    case "Q5_K": {
      const q = uniformInt(0, type === "Q4_K" ? 16 : 32);
      const square = bits6.square * q.square - 2 * q.mean ** 2 * bits6.mean ** 2 + q.mean ** 2 * bits6.square;
      return { std: Math.sqrt(square), minPerD: q.mean };
    }
    case "Q6_K":
      return { std: Math.sqrt(uniformInt(-128, 256).square * uniformInt(-32, 64).square), minPerD: null };
  }
}

/** The f16 bits every block's halves hold, in the order of BLOCK_LAYOUT[type].halves: d, then the minimum or dmin. */
export function randomBlockHalves(type: QuantizedType, std = 0.02): number[] {
  check(Number.isFinite(std) && std > 0, () => `randomBlocks: std must be finite and > 0, not ${std}`);
  const { std: spread, minPerD } = randomBlockSpread(type);
  const d = f32ToF16Bits(std / spread);
  const value = f16BitsToF32(d);
  check(value > 0 && Number.isFinite(value), () => `randomBlocks: std ${std} gives a ${type} scale of ${std / spread}, which f16 does not hold`);
  const halves = [d];
  if (minPerD !== null) halves.push(f32ToF16Bits(minPerD * value));
  check(halves.length === BLOCK_LAYOUT[type].halves.length, () => `randomBlocks: ${type} has ${BLOCK_LAYOUT[type].halves.length} halves`);
  return halves;
}

function checkOptions(type: QuantizedType, rows: number, cols: number, options: RandomBlocksOptions): { rowStart: number; halves: number[]; offset: number; bytes: number } {
  const { seed, rowStart = 0, std = 0.02 } = options;
  check(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32, () => `randomBlocks: seed must be an integer in [0, 2^32), got ${seed}`);
  check(Number.isInteger(rowStart) && rowStart >= 0, () => `randomBlocks: rowStart must be an integer >= 0, got ${rowStart}`);
  check(cols % BLOCK_LAYOUT[type].elements === 0, () => `randomBlocks: rows of ${cols} are not whole ${type} blocks of ${BLOCK_LAYOUT[type].elements}`);
  const rowBytes = quantizedRowBytes(type, cols);
  const offset = rowStart * rowBytes;
  const bytes = rows * rowBytes;
  check(offset + Math.ceil(bytes / 4) * 4 <= 2 ** 32, () => `randomBlocks: bytes up to ${offset + bytes} of the stream are past 2^32`);
  return { rowStart, halves: randomBlockHalves(type, std), offset, bytes };
}

// ------------------------------------------------------------------ CPU reference (float64)

/**
 * The bytes randomBlocks writes for rows [rowStart, rowStart + rows) of a `type` matrix of
 * `cols` columns: rows × rowBytes bytes, then zeros up to a whole number of u32 words.
 */
export function randomBlocksReference(type: QuantizedType, rows: number, cols: number, options: RandomBlocksOptions): Uint8Array {
  const { halves, offset, bytes } = checkOptions(type, rows, cols, options);
  const { bytes: blockBytes, halves: at } = BLOCK_LAYOUT[type];
  const out = new Uint8Array(Math.ceil(bytes / 4) * 4);
  for (let i = 0; i < bytes; i++) out[i] = Math.floor(uniform(options.seed, offset + i) * 256);
  for (let block = 0; block < bytes / blockBytes; block++) {
    at.forEach((half, j) => {
      out[block * blockBytes + half] = halves[j] & 255;
      out[block * blockBytes + half + 1] = halves[j] >> 8;
    });
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

const randomBlocksKernel = defineKernel({
  name: "random_blocks",
  params: { words: "u32", bytes: "u32", offset: "u32", seed: "u32", half0: "u32", half1: "u32" },
  bindings: { data: "read_write" },
  elementType: () => "u32",
  wgsl: ({ type }: { type: QuantizedType }) => {
    const { bytes, halves } = BLOCK_LAYOUT[type];
    const place = halves.flatMap((h, j) => [
      `v = select(v, vec4u(params.half${j} & 255u), at == vec4u(${h}u));`,
      `v = select(v, vec4u(params.half${j} >> 8u), at == vec4u(${h + 1}u));`,
    ]);
    return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${uniformWgsl(true)}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let w = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (w >= params.words) { return; }
  let local = w * 4u + vec4u(0u, 1u, 2u, 3u); // this part's bytes; a part starts at a block
  var v = pcg_hash(pcg_hash(params.offset + local) ^ vec4u(params.seed)) >> vec4u(24u);
  let at = local % vec4u(${bytes}u); // the byte's place in its block
  ${place.join("\n  ")}
  v = select(v, vec4u(0u), local >= vec4u(params.bytes));
  data[w] = v.x | (v.y << 8u) | (v.z << 16u) | (v.w << 24u);
}`;
  },
});

// ------------------------------------------------------------------ launch

/** Overwrites every word of `w` with random blocks of its type (see the top of this file); returns w. */
export function randomBlocks(w: QuantizedMatrix, options: RandomBlocksOptions): QuantizedMatrix {
  checkQuantizedMatrix("randomBlocks", w);
  const { halves, offset, bytes } = checkOptions(w.type, w.rows, w.cols, options);
  const words = w.data.size;
  if (words === 0) return w;
  w.data.gpu.record(randomBlocksKernel, {
    params: { words, bytes, offset, seed: options.seed, half0: halves[0], half1: halves[1] ?? 0 },
    tensors: { data: w.data },
    workgroups: flatGrid(Math.ceil(words / WORKGROUP)),
    spec: { type: w.type },
  });
  return w;
}

/**
 * Quantized matvec v1: C = A·Wᵀ for 1 to 4 rows of A (decoding), W held as ggml's packed
 * blocks (blocks.ts) exactly as the GGUF file stores them, dequantized in the kernel.
 *
 * Decoding reads every weight once per token, so the fewer bytes a weight takes the faster
 * the token: Q4_0 is 4.5 bits a weight against f16's 16. Nothing is expanded in GPU memory;
 * each weight is turned back into a float in registers, just before it is multiplied.
 *
 * The layout is matvec's (matmul/matvec.ts): 8 outputs per workgroup, 32 lanes per output
 * walking along its row. The unit of work is 32 consecutive weights (a block of the 32-element
 * types, a sub-block with its own scale of the 256-element K-quants), so every lane of a row
 * has work even when K is only a few blocks long. A block's bytes are not 4-byte aligned (a
 * Q8_0 block is 34 bytes), so the row is read as bytes picked out of u32 words; its halves
 * (scales, minimums) always start at an even byte and come from one word. This first version
 * reads byte by byte: simple, and what later versions are measured against.
 */
import { check } from "../../tensor/errors.js";
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { BLOCK_LAYOUT, type QuantizedType } from "./blocks.js";

/** A weight matrix [rows, cols] in ggml's packed blocks: its bytes, row after row, as u32 words. */
export interface QuantizedMatrix {
  type: QuantizedType;
  rows: number;
  cols: number;
  /** u32 words holding rows × (cols / block elements) × block bytes bytes (the last word padded). */
  data: Tensor;
}

/** The most rows of A one launch handles. */
export const QMATVEC_MAX_ROWS = 4;
const LANES = 32;
const OUTPUTS = 8;

/** WGSL: the weight of element `l` (0 to 31) of 32-element unit `unit` of the row starting at byte `row`, for each type. */
function unitWeightWgsl(type: QuantizedType): string {
  switch (type) {
    case "Q8_0":
      return `let base = row + unit * 34u;
    let d = half_at(base);
    for (var l = 0u; l < 32u; l++) { w[l] = d * f32(signed_byte(base + 2u + l)); }`;
    case "Q4_0":
    case "Q4_1":
    case "Q5_0":
    case "Q5_1": {
      const withMin = type === "Q4_1" || type === "Q5_1";
      const five = type === "Q5_0" || type === "Q5_1";
      const { bytes } = BLOCK_LAYOUT[type];
      const high = withMin ? 4 : 2;
      const qs = high + (five ? 4 : 0);
      const offset = withMin ? 0 : five ? 16 : 8;
      return `let base = row + unit * ${bytes}u;
    let d = half_at(base);
    let m = ${withMin ? "half_at(base + 2u)" : "0.0"};
    let qh = ${five ? `byte_at(base + ${high}u) | (byte_at(base + ${high + 1}u) << 8u) | (byte_at(base + ${high + 2}u) << 16u) | (byte_at(base + ${high + 3}u) << 24u)` : "0u"};
    for (var l = 0u; l < 16u; l++) {
      let q = byte_at(base + ${qs}u + l);
      let lo = (q & 15u) | (((qh >> l) & 1u) << 4u);
      let hi = (q >> 4u) | (((qh >> (l + 16u)) & 1u) << 4u);
      w[l] = d * (f32(lo) - ${offset}.0) + m;
      w[l + 16u] = d * (f32(hi) - ${offset}.0) + m;
    }`;
    }
    case "Q4_K":
    case "Q5_K": {
      const five = type === "Q5_K";
      return `let base = row + (unit / 8u) * ${BLOCK_LAYOUT[type].bytes}u;
    let s = unit % 8u; // the sub-block: group s / 2 of 64, its low (even s) or high nibbles
    let g = s / 2u;
    let sm = k_scale_min(base + 4u, s);
    let scale = half_at(base) * f32(sm.x);
    let minimum = half_at(base + 2u) * f32(sm.y);
    let shift = (s % 2u) * 4u;
    for (var l = 0u; l < 32u; l++) {
      var q = (byte_at(base + ${five ? 48 : 16}u + 32u * g + l) >> shift) & 15u;
      ${five ? "q += ((byte_at(base + 16u + l) >> s) & 1u) << 4u;" : ""}
      w[l] = scale * f32(q) - minimum;
    }`;
    }
    case "Q6_K":
      return `let base = row + (unit / 8u) * 210u;
    let s = unit % 8u; // 32 elements: half n = s / 4 of 128, quarter r = s % 4 of it
    let n = s / 4u;
    let r = s % 4u;
    let d = half_at(base + 208u);
    let low = base + 64u * n + (r % 2u) * 32u; // quarters 0 and 2 share bytes, as do 1 and 3
    let shift = (r / 2u) * 4u;
    for (var l = 0u; l < 32u; l++) {
      let q = ((byte_at(low + l) >> shift) & 15u) | (((byte_at(base + 128u + 32u * n + l) >> (2u * r)) & 3u) << 4u);
      let sc = f32(signed_byte(base + 192u + 8u * n + l / 16u + 2u * r));
      w[l] = d * sc * (f32(q) - 32.0);
    }`;
  }
}

const kernel = defineKernel({
  name: "qmatvec_v1_blocks",
  params: { M: "u32", N: "u32", K: "u32", row_bytes: "u32" },
  bindings: { a: "read", b: "read", c: "read_write" },
  elementType: (binding) => (binding === "b" ? "u32" : "f32"),
  wgsl: ({ type, rows }: { type: QuantizedType; rows: number }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}

const ROWS = ${rows}u;
const LANES = ${LANES}u;
var<workgroup> partial: array<array<f32, ${LANES}>, ${OUTPUTS * rows}>;

fn byte_at(i: u32) -> u32 { return (b[i >> 2u] >> ((i & 3u) * 8u)) & 255u; }
fn signed_byte(i: u32) -> i32 { return (i32(byte_at(i)) << 24u) >> 24u; }
// A half at an even byte: within one word.
fn half_at(i: u32) -> f32 { return unpack2x16float(b[i >> 2u] >> ((i & 2u) * 8u)).x; }
// The 6-bit scale (x) and minimum (y) of K-quant sub-block j from the 12 bytes at \`at\`.
fn k_scale_min(at: u32, j: u32) -> vec2u {
  if (j < 4u) { return vec2u(byte_at(at + j) & 63u, byte_at(at + j + 4u) & 63u); }
  return vec2u((byte_at(at + j + 4u) & 15u) | ((byte_at(at + j - 4u) >> 6u) << 4u),
               (byte_at(at + j + 4u) >> 4u) | ((byte_at(at + j) >> 6u) << 4u));
}

@compute @workgroup_size(${LANES}, ${OUTPUTS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let out = flat_workgroup(wid, nwg) * ${OUTPUTS}u + lid.y;
  let lane = lid.x;
  var acc: array<f32, ${rows}>;
  if (out < params.N) {
    let row = out * params.row_bytes;
    var w: array<f32, 32>;
    for (var unit = lane; unit < params.K / 32u; unit += LANES) {
      ${unitWeightWgsl(type)}
      for (var m = 0u; m < ROWS; m++) {
        var sum = 0.0;
        for (var l = 0u; l < 32u; l++) { sum += a[m * params.K + unit * 32u + l] * w[l]; }
        acc[m] += sum;
      }
    }
  }
  for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] = acc[m]; }
  workgroupBarrier();
  for (var width = LANES / 2u; width > 0u; width /= 2u) {
    if (lane < width) {
      for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] += partial[lid.y * ROWS + m][lane + width]; }
    }
    workgroupBarrier();
  }
  if (lane < ROWS && out < params.N) { c[lane * params.N + out] = partial[lid.y * ROWS + lane][0]; }
}`,
});

/** The bytes of one row of a [rows, cols] matrix of `type`. */
export function quantizedRowBytes(type: QuantizedType, cols: number): number {
  const { elements, bytes } = BLOCK_LAYOUT[type];
  return (cols / elements) * bytes;
}

/** Checks A [M, K] f32 against W [N, K]; returns M, N, K and W's bytes per row (shared by the versions). */
export function planQuantizedMatvec(a: Tensor, w: QuantizedMatrix): { M: number; N: number; K: number; rowBytes: number } {
  const { type, rows: N, cols: K } = w;
  const { elements } = BLOCK_LAYOUT[type];
  check(a.dtype === "f32" && a.rank === 2 && a.dim(1) === K, () => `quantizedMatvec: A ${a.describe()} must be f32 [M, ${K}]`);
  const M = a.dim(0);
  check(M >= 1 && M <= QMATVEC_MAX_ROWS, () => `quantizedMatvec: A ${a.describe()} has ${M} rows; it takes 1 to ${QMATVEC_MAX_ROWS}`);
  check(K % elements === 0, () => `quantizedMatvec: rows of ${K} are not whole ${type} blocks of ${elements}`);
  const rowBytes = quantizedRowBytes(type, K);
  check(
    w.data.dtype === "u32" && w.data.size === Math.ceil((N * rowBytes) / 4),
    () => `quantizedMatvec: ${type} [${N}, ${K}] is ${N * rowBytes} bytes, ${Math.ceil((N * rowBytes) / 4)} u32 words, not ${w.data.describe()}`,
  );
  return { M, N, K, rowBytes };
}

/** C [M, N] f32 = A [M, K] f32 · Wᵀ, W a [N, K] quantized matrix, 1 ≤ M ≤ 4. */
export function quantizedMatvec(gpu: Gpu, a: Tensor, w: QuantizedMatrix): Tensor {
  const { M, N, K, rowBytes } = planQuantizedMatvec(a, w);
  const type = w.type;
  const c = gpu.empty([M, N], "f32", { name: "qmatvec out" });
  gpu.record(kernel, {
    params: { M, N, K, row_bytes: rowBytes },
    tensors: { a, b: w.data, c },
    workgroups: flatGrid(Math.ceil(N / OUTPUTS)),
    spec: { type, rows: M },
  });
  return c;
}

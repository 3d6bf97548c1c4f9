/**
 * Rotary position embedding (RoPE), in Hugging Face's "rotate half" convention
 * (LlamaRotaryEmbedding + apply_rotary_pos_emb in transformers 4.40).
 *
 * Each head vector of size D is split into halves; element i of the first half and element
 * i + D/2 of the second form a 2-D point that is rotated by the angle position · inv_freq[i],
 * with inv_freq[i] = theta^(-2i/D):
 *
 *   out[i]       = x[i]·cos - x[i + D/2]·sin
 *   out[i + D/2] = x[i + D/2]·cos + x[i]·sin
 *
 * The cos/sin come from a table built once on the CPU, not from the GPU's sin/cos: angles reach
 * thousands of radians at long positions, and GPU sin/cos only promise about 2^-11 absolute
 * accuracy inside [-π, π] (Vulkan), which is far worse than the float32 model needs. The table
 * reproduces transformers' arithmetic: inv_freq in float32 (as torch computes it), the angle
 * rounded to float32 (torch multiplies in float32), then cos/sin of that float32 angle taken in
 * float64 and stored as f32. Layout: [positions, D/2, 2], the (cos, sin) pairs interleaved so
 * one thread reads its pair from one place.
 *
 * The kernel gives one thread to each rotated pair: S·H·D/2 threads over a flat grid. The
 * position offset may be read on the GPU when the launch runs (a StepValue, step_value.ts), so
 * a decode step recorded once rotates each new token by its own position.
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { checkU32Source, describeU32Source, isStepValue, maxOf, stateTensor, u32SourceParams, u32SourceWgsl, type U32Source } from "./step_value.js";
import type { Tolerance } from "./tolerance.js";

export interface RopeTableOptions {
  /** Size of one attention head (D); even. */
  headDim: number;
  /** The base of the frequencies (`rope_theta`: 10000 for LLaMA 2, 1e6 for some others). */
  theta: number;
  /** How many positions the table covers: 0 .. positions-1. */
  positions: number;
}

// ------------------------------------------------------------------ the table (CPU)

/**
 * inv_freq[i] = 1 / theta^(2i/D) as transformers computes it in float32: the exponent
 * (arange(0, D, 2).float() / D) is rounded to float32, the power and the reciprocal are each
 * rounded to float32. The power is taken in float64 and rounded once, i.e. correctly rounded,
 * which is what torch's scalar powf gives; torch's vectorized path (Sleef, 1-ulp accuracy,
 * used when there are 16 or more frequencies) can land one float32 ulp away for a few entries
 * (1 of 64 for D = 128, theta = 1e6), which moves the angle by under 2e-7 rad at position 4096.
 */
export function ropeInverseFrequencies(headDim: number, theta: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const exponent = Math.fround((2 * i) / headDim);
    inv[i] = Math.fround(1 / Math.fround(Math.pow(theta, exponent)));
  }
  return inv;
}

/** The cos/sin table as host data, [positions, D/2, 2] (cos, sin), float32 values. */
export function ropeTableData({ headDim, theta, positions }: RopeTableOptions): Float32Array {
  validateTableOptions({ headDim, theta, positions });
  const half = headDim / 2;
  const inv = ropeInverseFrequencies(headDim, theta);
  const data = new Float32Array(positions * half * 2);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * inv[i]); // float32 product, as torch's matmul gives
      data[(p * half + i) * 2] = Math.cos(angle);
      data[(p * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  return data;
}

/** Uploads the cos/sin table for `positions` positions: an f32 tensor [positions, D/2, 2]. */
export function ropeTable(gpu: Gpu, options: RopeTableOptions): Tensor {
  const data = ropeTableData(options);
  return gpu.tensor(data, [options.positions, options.headDim / 2, 2], "f32", {
    name: `rope table (theta ${options.theta})`,
    persistent: true,
  });
}

function validateTableOptions({ headDim, theta, positions }: RopeTableOptions): void {
  check(
    Number.isInteger(headDim) && headDim > 0 && headDim % 2 === 0,
    () => `ropeTable: headDim must be a positive even integer, got ${headDim}`,
  );
  check(Number.isFinite(theta) && theta > 0, () => `ropeTable: theta must be a positive number, got ${theta}`);
  check(
    Number.isInteger(positions) && positions > 0 && positions < 2 ** 24,
    () => `ropeTable: positions must be an integer in [1, 2^24), got ${positions}`,
  );
}

// ------------------------------------------------------------------ CPU reference (float64)

/**
 * The definition in float64, straight from theta (no float32 rounding anywhere): x is
 * [S, H, D] row-major, token s sits at position positionOffset + s.
 */
export function ropeReference(
  x: ArrayLike<number>,
  shape: readonly [number, number, number],
  theta: number,
  positionOffset: number,
): Float64Array {
  const [S, H, D] = shape;
  const half = D / 2;
  const out = new Float64Array(S * H * D);
  for (let s = 0; s < S; s++) {
    const position = positionOffset + s;
    for (let h = 0; h < H; h++) {
      const base = (s * H + h) * D;
      for (let i = 0; i < half; i++) {
        const angle = position * Math.pow(theta, (-2 * i) / D);
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        const first = x[base + i];
        const second = x[base + i + half];
        out[base + i] = first * cos - second * sin;
        out[base + i + half] = second * cos + first * sin;
      }
    }
  }
  return out;
}

/**
 * How far RoPE may be from its float64 reference, which takes angles straight from theta.
 *
 * The table follows transformers' float32 arithmetic: exponent 2i/D, theta^exponent, its
 * reciprocal and position·inv_freq are each rounded to float32 (relative error 2^-24 each), and
 * the exponent's rounding is amplified by ln(theta)·exponent in theta^exponent. So the float32
 * angle of position p differs from the exact one by at most
 *   p·theta^-e·(ln(theta)·e + 3)·2^-24 ≤ p·(1/e + 3)·2^-24 < 3.4·p·2^-24,
 * because x·exp(-x) ≤ 1/e. That is up to 8e-4 rad at position 4096: far above float32
 * rounding, so it has to be in the tolerance. cos and sin move by at most the angle error, and
 * storing them as f32 and the kernel's f32 arithmetic add a few 2^-24, so each output
 * (x_i·cos ∓ x_j·sin) is off by at most (|x_i| + |x_j|)·(3.4·p + 4)·2^-24.
 */
export function ropeTolerance(base: Tolerance, values: ArrayLike<number>, maxPosition: number): Tolerance {
  let maxAbs = 0;
  for (let i = 0; i < values.length; i++) maxAbs = Math.max(maxAbs, Math.abs(values[i]));
  return { atol: base.atol + 2 * maxAbs * (3.4 * maxPosition + 4) * 2 ** -24, rtol: base.rtol };
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

const ropeKernel = defineKernel({
  name: "rope",
  params: { pairs: "u32", heads: "u32", half: "u32", position_offset: "u32", position_offset_index: "u32" },
  bindings: { x: "read", table: "read", out: "read_write", state: "read" },
  gathers: ["table", "state"],
  wgsl: ({ dynamic }: { dynamic: boolean }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${u32SourceWgsl("position_offset", dynamic)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let pair = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (pair >= params.pairs) { return; }
  let i = pair % params.half;
  let head_row = pair / params.half;       // s * heads + h
  let s = head_row / params.heads;
  let first = head_row * 2u * params.half + i;
  let second = first + params.half;
  let entry = ((position_offset_value() + s) * params.half + i) * 2u;
  let cos_a = f32(table[entry]);
  let sin_a = f32(table[entry + 1u]);
  let a = f32(x[first]);
  let b = f32(x[second]);
  out[first] = out_t(a * cos_a - b * sin_a);
  out[second] = out_t(b * cos_a + a * sin_a);
}`,
});

// ------------------------------------------------------------------ launch

/**
 * Rotates x [S, H, D] (tokens, heads, head size): token s gets position positionOffset + s,
 * whose cos/sin must be in `table` (from `ropeTable`, with the same head size). A StepValue
 * offset is read when the launch runs; its max + S must fit the table.
 */
export function rope(x: Tensor, table: Tensor, positionOffset: U32Source = 0, outDtype: DType = x.dtype): Tensor {
  check(x.rank === 3, () => `rope: x ${x.describe()} must be [tokens, heads, headDim]`);
  check(isFloat(x.dtype), () => `rope: x ${x.describe()} must be f32 or f16`);
  check(isFloat(outDtype), () => `rope: output dtype ${outDtype} must be f32 or f16`);
  const [S, H, D] = x.shape;
  check(D % 2 === 0 && D > 0, () => `rope: head size ${D} of x ${x.describe()} must be even`);
  check(
    table.rank === 3 && table.dim(2) === 2 && isFloat(table.dtype),
    () => `rope: table ${table.describe()} must be a float [positions, headDim/2, 2] table from ropeTable`,
  );
  check(
    table.dim(1) * 2 === D,
    () => `rope: table ${table.describe()} is for head size ${table.dim(1) * 2}, but x ${x.describe()} has ${D}`,
  );
  if (isStepValue(positionOffset)) checkU32Source(positionOffset, "rope: positionOffset");
  else {
    check(
      Number.isInteger(positionOffset) && positionOffset >= 0,
      () => `rope: positionOffset must be an integer >= 0, got ${positionOffset}`,
    );
  }
  const first = maxOf(positionOffset);
  check(
    first + S <= table.dim(0),
    () =>
      `rope: positions ${first}..${first + S - 1} of x ${x.describe()}` +
      `${isStepValue(positionOffset) ? ` (positionOffset ${describeU32Source(positionOffset)})` : ""} ` +
      `are outside table ${table.describe()} (${table.dim(0)} positions)`,
  );
  const state = stateTensor("rope", [positionOffset], x);
  const out = x.gpu.empty(x.shape, outDtype, { name: "rope" });
  const pairs = S * H * (D / 2);
  x.gpu.record(ropeKernel, {
    params: { pairs, heads: H, half: D / 2, ...u32SourceParams("position_offset", positionOffset) },
    tensors: { x, table, out, state },
    workgroups: flatGrid(Math.ceil(pairs / WORKGROUP)),
    spec: { dynamic: isStepValue(positionOffset) },
  });
  return out;
}

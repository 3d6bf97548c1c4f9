/**
 * argmax over the last axis: for each row of x [rows, n], the index of its largest value.
 *
 * Ties go to the first index, and NaN counts as larger than everything (the first NaN wins),
 * which is torch.argmax's rule; greedy decoding picks its token with it, so matching the rule
 * exactly matters when two logits are equal.
 *
 * One workgroup per row. Each thread walks the row with a stride of the workgroup size, keeping
 * its best (value, index) pair; then the pairs are reduced in workgroup memory by halving, each
 * step keeping the better of two pairs. Since "better" compares indices on ties, the result
 * does not depend on which thread saw which element.
 *
 * NaN is recognised from its bits, not with `v != v`: WGSL lets compilers assume floats are
 * never NaN, and such a comparison may be folded away.
 */
import { isFloat } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";

// ------------------------------------------------------------------ CPU reference

/** Row-wise argmax of x [rows, n] row-major, by torch's rule (first NaN, else first maximum). */
export function argmaxReference(x: ArrayLike<number>, rows: number, n: number): Uint32Array {
  const out = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 0; j < n; j++) {
      const v = x[r * n + j];
      if (Number.isNaN(v)) {
        best = j;
        break;
      }
      if (v > x[r * n + best]) best = j;
    }
    out[r] = best;
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

/**
 * WGSL: torch.argmax's order on (value, index) pairs. \`beats(va, ia, vb, ib)\`: an empty pair
 * (index NO_INDEX: nothing seen yet) loses to any element; NaN beats numbers (found from the bit
 * pattern: WGSL lets compilers assume floats are never NaN, so v != v may fold away); a larger
 * number beats a smaller one; otherwise (equal numbers, or both NaN) the lower index wins.
 */
export const ARGMAX_ORDER_WGSL = /* wgsl */ `
const NO_INDEX = 0xffffffffu;

fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn beats(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
  if (ia == NO_INDEX || ib == NO_INDEX) { return ia < ib; }
  let a_nan = is_nan(va);
  let b_nan = is_nan(vb);
  if (a_nan != b_nan) { return a_nan; }
  if (!a_nan && va != vb) { return va > vb; }
  return ia < ib;
}`;

const argmaxKernel = defineKernel({
  name: "argmax",
  params: { rows: "u32", n: "u32" },
  bindings: { x: "read", out: "read_write" },
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${ARGMAX_ORDER_WGSL}

var<workgroup> best_values: array<f32, ${WORKGROUP}>;
var<workgroup> best_indices: array<u32, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = flat_workgroup(wid, nwg);
  // The whole workgroup leaves together (the barriers below need uniform control flow).
  if (row >= params.rows) { return; }
  let base = row * params.n;

  var value = 0.0;
  var index = NO_INDEX;
  for (var j = lid; j < params.n; j += ${WORKGROUP}u) {
    let v = f32(x[base + j]);
    if (beats(v, j, value, index)) {
      value = v;
      index = j;
    }
  }
  best_values[lid] = value;
  best_indices[lid] = index;
  workgroupBarrier();

  for (var stride = ${WORKGROUP / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let other = lid + stride;
      if (beats(best_values[other], best_indices[other], best_values[lid], best_indices[lid])) {
        best_values[lid] = best_values[other];
        best_indices[lid] = best_indices[other];
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[row] = best_indices[0]; }
}`,
});

// ------------------------------------------------------------------ launch

/** The index of the largest value in each row of x [rows, n] (f32 or f16) → u32 [rows]. */
export function argmax(x: Tensor): Tensor {
  check(x.rank === 2, () => `argmax: x ${x.describe()} must be [rows, n]`);
  check(isFloat(x.dtype), () => `argmax: x ${x.describe()} must be f32 or f16`);
  const [rows, n] = x.shape;
  check(n > 0, () => `argmax: rows of x ${x.describe()} are empty`);
  const out = x.gpu.empty([rows], "u32", { name: "argmax" });
  x.gpu.run(argmaxKernel, {
    params: { rows, n },
    tensors: { x, out },
    workgroups: rows === 0 ? [0] : flatGrid(rows),
  });
  return out;
}

/**
 * argmax over the last axis: for each row of x [rows, n], the index of its largest value.
 *
 * Ties go to the first index, and NaN counts as larger than everything (the first NaN wins),
 * which is torch.argmax's rule; greedy decoding picks its token with it, so matching the rule
 * exactly matters when two logits are equal.
 *
 * One workgroup per row. Each thread walks the row with a stride of the workgroup size, keeping
 * its best (value, index) pair; then the pairs are reduced across the workgroup (a tree in
 * workgroup memory), each step keeping the better of two pairs. Since "better" compares
 * indices on ties, the result does not depend on which thread saw which element.
 *
 * NaN is recognised from its bits, not with `v != v`: WGSL lets compilers assume floats are
 * never NaN, and such a comparison may be folded away.
 */
import { isFloat } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { workgroupReduceWgsl } from "./wgsl/reduce.js";

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
 * WGSL: torch.argmax's order on (value, index) pairs, as a struct `Best` and `better(a, b)`,
 * the better of two. An empty pair (index NO_INDEX: nothing seen yet) loses to any element; NaN
 * beats numbers (found from the bit pattern: WGSL lets compilers assume floats are never NaN,
 * so v != v may fold away); a larger number beats a smaller one; otherwise (equal numbers, or
 * both NaN) the lower index wins. That is a total order, so a tree reduction of `better` gives
 * the same pair whichever thread saw which element.
 */
export const ARGMAX_ORDER_WGSL = /* wgsl */ `
const NO_INDEX = 0xffffffffu;

struct Best {
  value: f32,
  index: u32,
}

fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn beats(a: Best, b: Best) -> bool {
  if (a.index == NO_INDEX || b.index == NO_INDEX) { return a.index < b.index; }
  let a_nan = is_nan(a.value);
  let b_nan = is_nan(b.value);
  if (a_nan != b_nan) { return a_nan; }
  if (!a_nan && a.value != b.value) { return a.value > b.value; }
  return a.index < b.index;
}

fn better(a: Best, b: Best) -> Best {
  if (beats(a, b)) { return a; }
  return b;
}`;

/** WGSL: `fn workgroup_best(lid, best) -> Best`, the best pair of the workgroup (needs `const T`). */
export const WORKGROUP_BEST_WGSL = workgroupReduceWgsl("workgroup_best", "Best", (a, b) => `better(${a}, ${b})`);

const argmaxKernel = defineKernel({
  name: "argmax",
  params: { rows: "u32", n: "u32" },
  bindings: { x: "read", out: "read_write" },
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
const T = ${WORKGROUP}u;
${ARGMAX_ORDER_WGSL}
${WORKGROUP_BEST_WGSL}

@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = flat_workgroup(wid, nwg);
  // The whole workgroup leaves together (the reduction's barriers need uniform control flow).
  if (row >= params.rows) { return; }
  let base = row * params.n;

  var best = Best(0.0, NO_INDEX);
  for (var j = lid; j < params.n; j += T) {
    best = better(Best(f32(x[base + j]), j), best);
  }
  let row_best = workgroup_best(lid, best);
  if (lid == 0u) { out[row] = row_best.index; }
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
  x.gpu.record(argmaxKernel, {
    params: { rows, n },
    tensors: { x, out },
    workgroups: rows === 0 ? [0] : flatGrid(rows),
  });
  return out;
}

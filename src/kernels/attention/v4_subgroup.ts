/**
 * Attention version 4: fused online softmax in one subgroup, no workgroup memory (for lavapipe).
 *
 * A workgroup is one subgroup of W lanes (8 on lavapipe) and takes W query rows (one when
 * there is only one: decoding without grouped heads) that share a kv head g. Row r stands for
 * query position r / G and head gG + r % G (G = H / H_kv), so with grouped-query attention the
 * heads of a group are computed together from one read of their keys and values (decoding
 * TinyLlama, one position × 8 heads fills a subgroup of 8 exactly). Like v2 it walks the keys,
 * W at a time, keeping for each row the running maximum m, the running sum l and an
 * unnormalised output, rescaled by exp(m - m') when the maximum rises.
 *
 * For a block of keys j0 .. j0 + W - 1, lane l:
 * 1. computes the scores of key j0 + l against every row: it walks the head dim a quad (4 dims)
 *    at a time, reading that quad of the key and of its own row's query, and subgroupBroadcast
 *    hands each row's query quad to every lane;
 * 2. takes each row's block maximum and sum with subgroupMax and subgroupAdd (every lane ends
 *    with every row's m and l) and keeps the weight of its own key for each row;
 * 3. walks the block's value rows: lane l reads dims 4(l + Wt) .. + 3 of value row j0 + j, the
 *    ones it accumulates, and takes each row's weight for key j0 + j from lane j with
 *    subgroupShuffle.
 * Each key and value element is read once per W rows; nothing goes through workgroup memory
 * and there are no barriers.
 *
 * A sliding window (Mistral): row i sees keys [start_i, limit_i), both in position order, so
 * the walk over key blocks starts at the first row's window start (start0) and the keys before
 * it are skipped; within a block a key outside a row's range is a masked score (weight 0).
 * Decoding far past the window reads W keys (plus up to a block), not the whole cache.
 *
 * Why: on lavapipe a load whose address differs between lanes costs some 8 instructions per
 * 32-bit component, workgroup memory is read the same way, and each barrier suspends and
 * resumes every SIMD group (see matmul v5). v2 stages tiles in workgroup memory between 4
 * barriers per key block and has 4 threads share each score through workgroup memory.
 * bench/RESULTS.md has what that costs there.
 *
 * The loops over dims and keys stay loops: written out in full, their loads made lavapipe's
 * LLVM take several times as long to compile one pipeline. Only the rows of the block and
 * each lane's output quads are written out (the head dim is bucketed to 64 or 128 for that;
 * quads past the real head dim read as zeros and are never stored). On a GPU (W = 32) the
 * same code gives 32 rows per subgroup and one key per lane, its broadcasts and shuffles are
 * register exchanges; there v2 and v3 remain the runtime's choice (see index.ts).
 */
import { check } from "../../tensor/errors.js";
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { requireFixedSubgroupSize } from "../subgroups.js";
import { quadElementType, quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { range } from "../wgsl/unroll.js";
import type { U32Source } from "../step_value.js";
import { ATTENTION_PARAMS, attentionOutput, attentionParams, attentionSpec, attentionTensors, attentionWgsl, type AttentionOptions, type AttentionSpec } from "./problem.js";

/** The largest head dim this version handles. */
export const SUBGROUP_MAX_HEAD_DIM = 128;

type SubgroupSpec = AttentionSpec & {
  lanes: number;
  rows: number;
  maxD: number;
  qMode: QuadMode;
  kMode: QuadMode;
  vMode: QuadMode;
  /** The output is written a quad at a time (head dim a multiple of 4). */
  outVec4: boolean;
  subgroups: true;
};

/** WGSL `fn store_quad(base, d, value)`: output dims d .. d + 3 of the row at `base`, those below the head dim. */
/** Rows are head_dim long, and a lane's output quads may lie past the head dim (they read as zeros). */
const HEAD_DIM_QUADS = { length: "params.head_dim", pastEnd: true };

function storeQuadWgsl(vec4: boolean): string {
  if (vec4) {
    return /* wgsl */ `
fn store_quad(base: u32, d: u32, value: vec4f) {
  if (d < params.head_dim) { out[(base + d) / 4u] = vec4<out_t>(value); }
}`;
  }
  return /* wgsl */ `
fn store_quad(base: u32, d: u32, value: vec4f) {
  for (var e = 0u; e < 4u; e++) {
    if (d + e < params.head_dim) { out[base + d + e] = out_t(value[e]); }
  }
}`;
}

function subgroupWgsl(spec: SubgroupSpec): string {
  const { lanes: W, rows: R, maxD, qMode, kMode, vMode, outVec4 } = spec;
  const owned = Math.ceil(maxD / 4 / W); // output quads per lane and row
  const rowPosition = (i: number) => `min(first_row + ${i}u, rows - 1u) / params.group_size`;
  const dots = range(R).map((i) => `s${i} += dot(subgroupBroadcast(q, ${i}u), k);`);
  const steps = range(R).map((i) => `let p${i} = softmax_step(${i}u, s${i} * params.scale, key < limit${i} && key >= start${i});`);
  const rescales = range(R).map((i) => `{ let corr = exp(m_old[${i}] - m[${i}]); ${range(owned).map((t) => `acc[${i * owned + t}] *= corr;`).join(" ")} }`);
  const weighted = range(R).map((i) => `{ let w = subgroupShuffle(p${i}, j); ${range(owned).map((t) => `acc[${i * owned + t}] += w * v${t};`).join(" ")} }`);
  const stores = range(R).map((i) =>
    [
      `if (first_row + ${i}u < rows) {`,
      `  let r = first_row + ${i}u;`,
      `  let base = row_index(r / params.group_size, g * params.group_size + r % params.group_size);`,
      ...range(owned).map((t) => `  store_quad(base, ${4 * W * t}u + 4u * lane, acc[${i * owned + t}] / l[${i}]);`),
      `}`,
    ].join("\n  "),
  );
  return /* wgsl */ `
${attentionWgsl(spec)}
${quadFetchWgsl("q", qMode, HEAD_DIM_QUADS)}
${quadFetchWgsl("k", kMode, HEAD_DIM_QUADS)}
${quadFetchWgsl("v", vMode, HEAD_DIM_QUADS)}

// Per row of the block: running maximum, its value before this key block, running sum.
var<private> m: array<f32, ${R}>;
var<private> m_old: array<f32, ${R}>;
var<private> l: array<f32, ${R}>;

// One online-softmax step for row i over this lane's key (score s, visible or not): raises the
// row's maximum to include the block, adds the block's weights to the sum, and returns the
// weight of this lane's key (0 when it is masked or past the end).
fn softmax_step(i: u32, s: f32, visible: bool) -> f32 {
  let score = select(MASKED, s, visible);
  m_old[i] = m[i];
  m[i] = max(m[i], subgroupMax(score));
  let p = select(0.0, exp(score - m[i]), visible);
  l[i] = l[i] * exp(m_old[i] - m[i]) + subgroupAdd(p);
  return p;
}

${storeQuadWgsl(outVec4)}

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let g = wid.y; // kv head
  let rows = params.queries * params.group_size;
  let first_row = wid.x * ${R}u;
  // This lane's query row, clamped: rows past the end compute values that are never stored.
  let my_row = min(first_row + lane, rows - 1u);
  let my_q = row_index(my_row / params.group_size, g * params.group_size + my_row % params.group_size);
  // Keys [0, limit_i) are visible to row i; rows are in position order, so the last sees the most.
  ${range(R).map((i) => `let limit${i} = key_limit(${rowPosition(i)});`).join("\n  ")}
  let kv_end = limit${R - 1};
  // With a sliding window, keys [start_i, limit_i): the first row's window starts first.
  ${range(R).map((i) => `let start${i} = key_start(${rowPosition(i)});`).join("\n  ")}
  for (var i = 0u; i < ${R}u; i++) { m[i] = MASKED; }
  var acc: array<vec4f, ${R * owned}>; // acc[i * ${owned} + t]: row i, dims 4(lane + ${W}t) .. + 3
  let quads = (params.head_dim + 3u) / 4u;
  let kv_length = key_count();
  for (var j0 = start0; j0 < kv_end; j0 += ${W}u) {
    // Scores of this lane's key against every row, a quad of dims at a time.
    let key = j0 + lane;
    let k_at = kv_index(g, min(key, kv_length - 1u));
    ${range(R).map((i) => `var s${i} = 0.0;`).join("\n    ")}
    for (var c = 0u; c < quads; c++) {
      let q = quad_q(my_q, 4u * c);
      let k = quad_k(k_at, 4u * c);
      ${dots.join("\n      ")}
    }
    ${steps.join("\n    ")}
    ${rescales.join("\n    ")}
    // The values, one key at a time (up to the last key): this lane's dims of value row j0 + j,
    // weighted by each row's probability for that key, which lane j holds.
    let block = min(${W}u, kv_length - j0);
    for (var j = 0u; j < block; j++) {
      let v_at = kv_index(g, j0 + j);
      ${range(owned).map((t) => `let v${t} = quad_v(v_at, ${4 * W * t}u + 4u * lane);`).join("\n      ")}
      ${weighted.join("\n      ")}
    }
  }
  ${stores.join("\n  ")}
}`;
}

const kernel = defineKernel({
  name: "attention_v4_subgroup",
  params: ATTENTION_PARAMS,
  bindings: { q: "read", k: "read", v: "read", out: "read_write", state: "read" },
  gathers: ["state"],
  elementType: (binding, dtype, spec: SubgroupSpec) => {
    if (binding === "q") return quadElementType(spec.qMode, dtype);
    if (binding === "k") return quadElementType(spec.kMode, dtype);
    if (binding === "v") return quadElementType(spec.vMode, dtype);
    return binding === "out" && spec.outVec4 ? `vec4<${dtype}>` : dtype;
  },
  wgsl: subgroupWgsl,
});

/** Fused attention in one subgroup per block of query rows (see the top of this file). */
export function subgroupAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions<U32Source>): Tensor {
  const op = "attention v4_subgroup";
  const p = attentionTensors(op, q, k, v, options);
  check(p.headDim <= SUBGROUP_MAX_HEAD_DIM, () => `${op}: head dim ${p.headDim} of ${q.describe()} is over ${SUBGROUP_MAX_HEAD_DIM}`);
  const lanes = requireFixedSubgroupSize(q.gpu, op);
  const maxD = p.headDim <= 64 ? 64 : 128;
  // One row when there is only one (decoding without grouped heads): no lanes' work wasted on
  // rows that do not exist. Otherwise a row per lane.
  const rowCount = p.queries * p.groupSize;
  const rows = rowCount === 1 ? 1 : lanes;
  const out = attentionOutput(p, q, options);
  // Quads of out are whole vec4s when rows are (a given out may be a view: it must start on one).
  const outVec4 = quadMode(out, p.headDim, false) === "vec4";
  q.gpu.record(kernel, {
    params: attentionParams(p),
    tensors: { q, k, v, out, state: p.state },
    workgroups: [Math.ceil(rowCount / rows), p.kvHeads],
    spec: { ...attentionSpec(p), lanes, rows, maxD, qMode: quadMode(q, p.headDim, true), kMode: quadMode(k, p.headDim, true), vMode: quadMode(v, p.headDim, true), outVec4, subgroups: true },
  });
  return out;
}

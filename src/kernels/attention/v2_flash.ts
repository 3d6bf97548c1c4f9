/**
 * Attention version 2: fused, with an online softmax (the flash-attention idea).
 *
 * One workgroup computes a block of BQ queries of one head. It streams the keys and values
 * through workgroup memory in blocks of BK positions and never stores a whole row of scores:
 * each query row keeps a running maximum m, a running sum l of exp(score - m) and an
 * unnormalised output accumulator acc. When a new block raises the maximum from m to m', the
 * old terms were all exponentiated against m, so l and acc are multiplied by exp(m - m') to
 * put them against m' before the block's terms are added. At the end out = acc / l. Memory
 * does not grow with S·T, and k and v are read once per query block instead of once per query.
 *
 * Threads: 256 per workgroup, seen as BQ rows × LANES threads. For one key block:
 * 1. all threads load the BK×D key and value tiles (the query tile, pre-scaled, was loaded once);
 * 2. all threads compute the BQ×BK scores: when there are fewer scores than threads, SPLIT
 *    threads share one dot product (each takes every SPLIT-th dim) and a second step sums
 *    their parts;
 * 3. the LANES threads of a row each read the row's scores (a broadcast) to update m and l,
 *    and each owns 4 output dims of the accumulator (d ≡ lane mod LANES), kept in registers.
 *
 * Masking never needs -inf: query i sees keys [0, key_limit(i)), so within a block it uses a
 * prefix of the keys (possibly empty, when a causal row ends before the block starts); masked
 * scores are simply not read. m starts at MASKED (the lowest finite f32), so the first rescale
 * is exp(MASKED - m') = 0 applied to zeros, and a block with no visible keys rescales by
 * exp(0) = 1. With causal masking the workgroup stops at the last key its last query sees.
 *
 * A sliding window (Mistral) makes what a row sees a range, [key_start, key_limit): within a
 * block the row reads the scores from its window's start (`skipped` of them before it are not
 * read), and the workgroup starts its walk at the block holding its first query's window start
 * (that query's window starts first), so the keys before every window are never loaded: a
 * block of BQ queries reads at most W + BQ - 1 keys, and decoding far past the window O(W).
 *
 * Tile sizes follow the head dim, bucketed to maxD = 64, 128 or 256, so that workgroup memory
 * (q, k and v tiles of 1024 floats each, plus 256 partial and BQ×BK scores) stays under
 * 16 KiB: BQ = BK = 1024 / maxD, LANES = maxD / 4, SPLIT = maxD² / 4096.
 */
import { check } from "../../tensor/errors.js";
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { U32Source } from "../step_value.js";
import { ATTENTION_PARAMS, attentionOutput, attentionParams, attentionSpec, attentionTensors, attentionWgsl, type AttentionOptions, type AttentionSpec } from "./problem.js";

const THREADS = 256;
/** Output dims each thread accumulates. */
const DIMS_PER_THREAD = 4;
/** The largest head dim this version handles. */
export const FLASH_MAX_HEAD_DIM = 256;

interface FlashTiles {
  /** Head dim capacity of the tiles: 64, 128 or 256. */
  maxD: number;
  /** Queries per workgroup (and keys per streamed block). */
  block: number;
  /** Threads per query row. */
  lanes: number;
  /** Threads per score. */
  split: number;
}

function flashTiles(headDim: number): FlashTiles {
  const maxD = headDim <= 64 ? 64 : headDim <= 128 ? 128 : 256;
  const block = 1024 / maxD;
  return { maxD, block, lanes: maxD / DIMS_PER_THREAD, split: THREADS / (block * block) };
}

const flashKernel = defineKernel({
  name: "attention_v2_flash",
  params: ATTENTION_PARAMS,
  bindings: { q: "read", k: "read", v: "read", out: "read_write", state: "read" },
  gathers: ["state"],
  wgsl: ({ maxD, ...spec }: AttentionSpec & { maxD: number }) => {
    const { block, lanes, split } = flashTiles(maxD);
    return /* wgsl */ `
${attentionWgsl(spec)}
const BQ = ${block}u;
const BK = ${block}u;
const LANES = ${lanes}u;
const SPLIT = ${split}u;
const THREADS = ${THREADS}u;

var<workgroup> q_tile: array<f32, ${block * maxD}>;  // [BQ, D], times scale
var<workgroup> k_tile: array<f32, ${block * maxD}>;  // [BK, D]
var<workgroup> v_tile: array<f32, ${block * maxD}>;  // [BK, D]
var<workgroup> s_part: array<f32, THREADS>;         // [BQ, BK, SPLIT] parts of the dot products
var<workgroup> s_tile: array<f32, ${block * block}>; // [BQ, BK] scores of the current block

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let D = params.head_dim;
  let head = wid.y;
  let kv_head = head / params.group_size;
  let first_query = wid.x * BQ;
  let rows = min(BQ, params.queries - first_query);

  for (var index = lid; index < rows * D; index += THREADS) {
    q_tile[index] = f32(q[row_index(first_query + index / D, head) + index % D]) * params.scale;
  }

  // This thread's query row, and how many keys it sees (none for rows past the end).
  let row = lid / LANES;
  let lane = lid % LANES;
  let query = first_query + row;
  let seen = select(0u, key_limit(query), row < rows);
  let start = key_start(query);
  // The workgroup's last query sees the most keys.
  let kv_end = key_limit(first_query + rows - 1u);
  // The score this thread helps with in step 2, and its share of the dims.
  let score_row = lid / SPLIT / BK;
  let score_key = lid / SPLIT % BK;
  let part = lid % SPLIT;

  var m = MASKED;
  var l = 0.0;
  var acc: array<f32, ${DIMS_PER_THREAD}>;

  // The first query's window starts first (0 without one): blocks before it are skipped.
  for (var block = key_start(first_query); block < kv_end; block += BK) {
    let n = min(BK, kv_end - block);
    workgroupBarrier(); // the previous block's tiles are no longer being read (and q_tile is complete)
    for (var index = lid; index < n * D; index += THREADS) {
      let at = kv_index(kv_head, block + index / D) + index % D;
      k_tile[index] = f32(k[at]);
      v_tile[index] = f32(v[at]);
    }
    workgroupBarrier();
    if (score_row < rows && score_key < n) {
      var dot = 0.0;
      for (var d = part; d < D; d += SPLIT) {
        dot += q_tile[score_row * D + d] * k_tile[score_key * D + d];
      }
      s_part[lid] = dot;
    }
    workgroupBarrier();
    if (lid < BQ * BK) {
      var score = 0.0;
      for (var p = 0u; p < SPLIT; p++) {
        score += s_part[lid * SPLIT + p];
      }
      s_tile[lid] = score;
    }
    workgroupBarrier();

    // Online softmax update for this row over the keys of the block it sees.
    let visible = select(0u, min(n, seen - block), seen > block);
    let skipped = select(0u, start - block, start > block); // before this row's window
    var block_max = MASKED;
    for (var j = skipped; j < visible; j++) {
      block_max = max(block_max, s_tile[row * BK + j]);
    }
    let m_new = max(m, block_max);
    let rescale = exp(m - m_new);
    l *= rescale;
    for (var c = 0u; c < ${DIMS_PER_THREAD}u; c++) {
      acc[c] *= rescale;
    }
    for (var j = skipped; j < visible; j++) {
      let weight = exp(s_tile[row * BK + j] - m_new);
      l += weight;
      for (var c = 0u; c < ${DIMS_PER_THREAD}u; c++) {
        let d = lane + c * LANES;
        if (d >= D) { break; }
        acc[c] += weight * v_tile[j * D + d];
      }
    }
    m = m_new;
  }

  if (row < rows) {
    let out_row = row_index(query, head);
    for (var c = 0u; c < ${DIMS_PER_THREAD}u; c++) {
      let d = lane + c * LANES;
      if (d >= D) { break; }
      out[out_row + d] = out_t(acc[c] / l);
    }
  }
}`;
  },
});

/** Fused attention with an online softmax (see the top of this file). */
export function flashAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions<U32Source>): Tensor {
  const op = "attention v2_flash";
  const p = attentionTensors(op, q, k, v, options);
  check(p.headDim <= FLASH_MAX_HEAD_DIM, () => `${op}: head dim ${p.headDim} of ${q.describe()} is over ${FLASH_MAX_HEAD_DIM}`);
  const tiles = flashTiles(p.headDim);
  const out = attentionOutput(p, q, options);
  q.gpu.record(flashKernel, {
    params: attentionParams(p),
    tensors: { q, k, v, out, state: p.state },
    workgroups: [Math.ceil(p.queries / tiles.block), p.heads],
    spec: { maxD: tiles.maxD, ...attentionSpec(p) },
  });
  return out;
}

/**
 * Quantized matmul v2: matmul v5's shape (matmul/v5_subgroup_broadcast.ts) for weights in
 * ggml's packed blocks. C = A·Wᵀ for any number of rows of A, no workgroup memory.
 *
 * A workgroup is one subgroup of W lanes (the device's fixed subgroup size, 8 on lavapipe)
 * and computes a (W·G) × (W·T) tile of C (qmatmulV2Tile: 16 or 8 rows × 32 outputs on
 * lavapipe): lane l owns the T outputs n0 + l, n0 + W + l, ..., and all W·G rows of the tile.
 * It walks K one unit (32 weights: a block, or a K-quant's sub-block with its own scale) at a
 * time. At each step each lane dequantizes the unit of
 * each of its T weight rows straight into registers (matvec v3's unrolled unpack,
 * matvec_v3_unrolled.ts: every quant a constant shift and mask of a named register), and
 * loads the unit's 32 values of A for rows m0 + gW + l, g < G (8 vec4 each). Every lane needs
 * every row of A, so those values travel between lanes: subgroupBroadcast(quad, r) hands lane
 * r's quad to the whole subgroup, and each lane adds its dot with each of its T dequantized
 * quads into the sum of that row and output.
 *
 * Why it beats the tiled v1 (matmul_v1_tiled.ts) on lavapipe: there reading workgroup memory
 * is the cost (every component of a load is read lane by lane, and each barrier suspends and
 * resumes every SIMD group), and v1 reads 12 staged vec4s per quad for 32 dot products and
 * passes two barriers per unit. Here the weights never leave the registers they are unpacked
 * into, and a broadcast from a register is 2 to 3 instructions: per unit and lane, T units
 * unpacked, 8·G vec4 loads of A, 8·W·G broadcasts for 8·W·G·T dot products, no barriers.
 * Each unit of W is dequantized once per tile of W·G rows (v1: once per 64 rows), a cost the
 * broadcasts more than repay. Measured in index.ts.
 *
 * Tiles overhang C's edges: past the last row of A or of W the loads are clamped to that row
 * (real data, never stored), and only sums inside C are stored, through the epilogue all the
 * quantized products share (matvec_common.ts).
 */
import { check } from "../../tensor/errors.js";
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { range } from "../wgsl/unroll.js";
import { requireFixedSubgroupSize } from "../subgroups.js";
import type { QuantizedType } from "./blocks.js";
import { planQuantizedMatmul, QUANTIZED_BINDINGS, QUANTIZED_EPILOGUE_WGSL, QUANTIZED_PARAMS, quantizedElementType, type QuantizedMatmulOptions, type QuantizedMatrix } from "./matvec_common.js";
import { K_SCALE_MIN_OF_WORDS_WGSL, unrolledUnitWgsl } from "./matvec_v3_unrolled.js";

/** A tile: W lanes, G row groups of W rows, T output groups of W outputs. */
export type QuantizedBroadcastTile = { rowGroups: number; columnGroups: number };

type Spec = QuantizedBroadcastTile & { type: QuantizedType; lanes: number; subgroups: true };

/**
 * The tile for `type` and `rows` rows of A on a subgroup of `lanes`: 64 sums per lane, T = 4
 * output groups, and G = 2 row groups (1 where A has no more than W rows, or for Q4_0): on
 * lavapipe (W = 8) 16 rows × 32 outputs. Measured there (2 cores, N = K = 2048, M = 64, min
 * of interleaved runs, ms, G×T):
 *
 *            2×2    2×4    1×2    1×4
 *   Q8_0     23.1   20.3   18.9   25.8
 *   Q4_0     17.5   18.6   16.3   14.6
 *   Q4_K     25.5   20.6   21.5   26.2
 *   Q6_K     33.6   27.5   40.7   43.3
 *
 * (M = 640 ranks them the same.) Q4_0's unit is the cheapest to unpack, so it gains most
 * from more outputs per broadcast and least from unpacking once for more rows; 2×4 is best
 * or close for the others, one pipeline per type either way.
 */
export function qmatmulV2Tile(type: QuantizedType, lanes: number, rows: number): QuantizedBroadcastTile {
  const groups = Math.max(1, Math.floor(64 / lanes));
  const columnGroups = Math.min(4, groups);
  const rowGroups = Math.max(1, Math.min(Math.ceil(rows / lanes), Math.floor(groups / columnGroups), type === "Q4_0" ? 1 : 2));
  return { rowGroups, columnGroups };
}

function broadcastWgsl({ type, lanes: W, rowGroups: G, columnGroups: T }: Spec): string {
  const rows = W * G;
  const unit = unrolledUnitWgsl(type);
  const dequantize = range(T).map(
    (j) => `{
      let row = row${j};
      ${unit}
      ${range(8).map((q) => `w${j}_${q} = vec4f(w${4 * q}, w${4 * q + 1}, w${4 * q + 2}, w${4 * q + 3});`).join("\n      ")}
    }`,
  );
  const updates = range(rows).map((i) =>
    range(8)
      .map((q) => `{ let x = subgroupBroadcast(a${Math.floor(i / W)}_${q}, ${i % W}u); ${range(T).map((j) => `acc[${i * T + j}] += dot(x, w${j}_${q});`).join(" ")} }`)
      .join("\n    "),
  );
  const stores = range(rows).map((i) => range(T).map((j) => `store_inside(m0 + ${i}u, n0 + ${j * W}u + lane, acc[${i * T + j}]);`).join(" "));
  return /* wgsl */ `
${QUANTIZED_EPILOGUE_WGSL}
${K_SCALE_MIN_OF_WORDS_WGSL}

// Tiles overhang C's edges; only sums inside it are stored.
fn store_inside(m: u32, n: u32, sum: f32) {
  if (m < params.M && n < params.N) { store_c(m, n, sum); }
}

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let m0 = wid.y * ${rows}u;
  let n0 = wid.x * ${W * T}u;
  // The rows this lane loads (clamped: past the edge they load real data that is never stored).
  ${range(G).map((g) => `let a_row${g} = min(m0 + ${g * W}u + lane, params.M - 1u) * params.K;`).join("\n  ")}
  ${range(T).map((j) => `let row${j} = min(n0 + ${j * W}u + lane, params.N - 1u) * params.row_bytes;`).join("\n  ")}
  // acc[i·${T} + j]: row m0 + i, output n0 + ${W}j + lane.
  var acc: array<f32, ${rows * T}>;
  for (var unit = 0u; unit < params.K / 32u; unit++) {
    ${range(G).map((g) => `let at${g} = (a_row${g} + unit * 32u) / 4u;\n    ${range(8).map((q) => `let a${g}_${q} = a[at${g} + ${q}u];`).join(" ")}`).join("\n    ")}
    ${range(T).map((j) => range(8).map((q) => `var w${j}_${q}: vec4f;`).join(" ")).join("\n    ")}
    ${dequantize.join("\n    ")}
    ${updates.join("\n    ")}
  }
  ${stores.join("\n  ")}
}`;
}

const kernel = defineKernel({
  name: "qmatmul_v2_subgroup",
  params: QUANTIZED_PARAMS,
  bindings: QUANTIZED_BINDINGS,
  elementType: quantizedElementType(true),
  wgsl: broadcastWgsl,
});

/**
 * C [..., N] f32 = A [..., K] f32 · Wᵀ (+ bias) (+ residual), W a [N, K] quantized matrix, for
 * any number of rows of A (its leading dimensions fold into M); `options` as matmul's
 * MatmulOptions (matvec_common.ts). Needs a fixed subgroup size (subgroups.ts). `tile`
 * defaults to qmatmulV2Tile's; setting it is for measuring.
 */
export function quantizedMatmulSubgroup(gpu: Gpu, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}, tile?: QuantizedBroadcastTile): Tensor {
  const lanes = requireFixedSubgroupSize(gpu, "quantized matmul_v2_subgroup");
  const call = planQuantizedMatmul("quantizedMatmulSubgroup", a, w, options);
  const { rowGroups, columnGroups } = tile ?? qmatmulV2Tile(w.type, lanes, call.M);
  const grid: [number, number, number] = [Math.ceil(call.N / (lanes * columnGroups)), Math.ceil(call.M / (lanes * rowGroups)), 1];
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  check(grid[0] <= max && grid[1] <= max, () => `quantizedMatmulSubgroup: C [${call.M}, ${call.N}] needs ${grid[1]}×${grid[0]} tiles, over ${max} per dimension`);
  gpu.record(kernel, { params: call.params, tensors: call.tensors, workgroups: grid, spec: { type: w.type, lanes, rowGroups, columnGroups, subgroups: true } });
  return call.c;
}

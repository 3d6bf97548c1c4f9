/**
 * matmul v5: register tiles shared through subgroup broadcasts, no workgroup memory.
 *
 * A workgroup is one subgroup of W lanes (W = 8 on lavapipe, one lane per AVX2 SIMD slot). It
 * computes a (W·G) × (W·T) tile of C: lane l owns T columns, n0 + l, n0 + W + l, ..., and all
 * W·G rows of the tile, so it keeps W·G·T sums in registers (G = T = 2 on lavapipe: a 16×16
 * tile, 32 sums per lane).
 *
 * Each step along K reads one quad (4 K-values, see quads.ts) per lane and operand: lane l
 * reads row m0 + gW + l of A for each row group g, and row n0 + jW + l of B for each column
 * group j. Every lane needs every row of A, so the A quads travel between lanes instead of
 * being loaded again: subgroupBroadcast(a_g, r) hands lane r's quad to the whole subgroup,
 * and each lane adds dot(that quad, its B quad) into the sum for row gW + r and column group
 * j. Per step a lane thus makes G + T loads and W·G·T dot products: 8 vec4 dot products per
 * load on lavapipe, against 2 in v4.
 *
 * Why this shape wins on lavapipe (Mesa 25.0): llvmpipe runs the W
 * lanes as one AVX2 vector, and every storage load whose address differs between lanes is
 * done lane by lane, each 32-bit component with its own bounds check and branch: some 8
 * instructions per float loaded, against one instruction for 8 multiply-adds. A broadcast
 * from a register is 2 to 3 instructions. So loads are the cost to cut, workgroup memory does
 * not help (it is read lane by lane too, and each barrier suspends and resumes every SIMD
 * group), and the sums may spill to the stack: a spilled sum costs a load and a store per
 * step, still far less than the loads it saves. It runs two to three times as fast as v4
 * there (bench/RESULTS.md).
 *
 * On a GPU (W = 32 or 64) the same code runs with one row group (G = 1) and a tile of W·T
 * columns; each broadcast is a register shuffle, about as costly as a workgroup-memory load,
 * so it is roughly v3's balance without the barriers. The runtime still prefers v3 there (see
 * index.ts): it is the shape GPUs are tuned for, and this one is only measured on lavapipe.
 */
import type { Tensor } from "../../tensor/tensor.js";
import { defineKernel } from "../../tensor/kernel.js";
import { FLAGGED_EPILOGUE_WGSL, FLAGGED_PARAMS, flaggedParams } from "./bias_flag.js";
import { MATMUL_BINDINGS, matmulTensors, matmulQuadElementType, planMatmul, type MatmulOptions } from "./common.js";
import { quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { range } from "../wgsl/unroll.js";
import { requireFixedSubgroupSize } from "../subgroups.js";

/** A tile: W lanes, G row groups of W rows, T column groups of W columns. */
type BroadcastTile = {
  lanes: number;
  rowGroups: number;
  columnGroups: number;
};

/**
 * Sums per lane. On lavapipe (W = 8) 32 sums make a 16×16 tile. A 32×32 tile (128 sums, spilled
 * to the stack) is a little faster but several times slower for lavapipe's LLVM to compile,
 * for each dtype combination the first time it is used; 8×32 and 16×32 tiles were slower than
 * 16×16 (bench/RESULTS.md). On a GPU, 32 sums is a modest share of its registers.
 */
const SUMS_PER_LANE = 32;

/**
 * The tile for a subgroup of `lanes` and A of `rows` rows: as square as the budget of sums
 * allows, but no taller than A. Decoding several sequences together gives A a handful of rows
 * (one per sequence); a 16-row tile over 8 rows would spend half its sums, and half the
 * arithmetic, on rows past A's edge. With one row group the same 32 sums make an 8×32 tile,
 * every sum used, each A quad broadcast to 4 B quads instead of 2: at 8 rows against
 * TinyLlama's 2048×2048 weight in f16 the launch takes 3.9 ms instead of 7.0 (bench/RESULTS.md).
 */
function broadcastTile(lanes: number, rows: number): BroadcastTile {
  const groups = Math.max(1, Math.floor(SUMS_PER_LANE / lanes)); // G·T
  const neededRowGroups = Math.ceil(rows / lanes);
  const columnGroups = Math.min(4, neededRowGroups === 1 ? groups : Math.ceil(Math.sqrt(groups)));
  const rowGroups = Math.max(1, Math.min(neededRowGroups, Math.floor(groups / columnGroups)));
  return { lanes, rowGroups, columnGroups };
}

type BroadcastSpec = BroadcastTile & {
  aMode: QuadMode;
  bMode: QuadMode;
  subgroups: true;
};

/** The kernel body; the loop body and the stores are written out in full for every row. */
function broadcastWgsl({ aMode, bMode, lanes: W, rowGroups: G, columnGroups: T }: BroadcastSpec): string {
  const rows = W * G;
  const aRows = range(G).map((g) => `let a_row${g} = z * params.a_batch_stride + min(m0 + ${g * W}u + lane, params.M - 1u) * params.K;`);
  const bRows = range(T).map((j) => `let b_row${j} = z * params.b_batch_stride + min(n0 + ${j * W}u + lane, params.N - 1u) * params.K;`);
  const loads = [
    ...range(G).map((g) => `let a${g} = quad_a(a_row${g}, k);`),
    ...range(T).map((j) => `let b${j} = quad_b(b_row${j}, k);`),
  ];
  const updates = range(rows).map((i) => {
    const a = `subgroupBroadcast(a${Math.floor(i / W)}, ${i % W}u)`;
    return `{ let a = ${a}; ${range(T).map((j) => `acc[${i * T + j}] += dot(a, b${j});`).join(" ")} }`;
  });
  const stores = range(rows).map((i) => range(T).map((j) => `store_inside(z, m0 + ${i}u, n0 + ${j * W}u + lane, acc[${i * T + j}]);`).join(" "));
  return /* wgsl */ `
${quadFetchWgsl("a", aMode, { length: "params.K" })}
${quadFetchWgsl("b", bMode, { length: "params.K" })}

${FLAGGED_EPILOGUE_WGSL}

// Tiles overhang C's edges; only sums inside it are stored.
fn store_inside(z: u32, m: u32, n: u32, sum: f32) {
  if (m < params.M && n < params.N) { store_c(z, m, n, sum); }
}

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let z = wid.z;
  let m0 = wid.y * ${rows}u;
  let n0 = wid.x * ${W * T}u;
  // The rows this lane loads (clamped: past the edge they load real data that is never stored).
  ${aRows.join("\n  ")}
  ${bRows.join("\n  ")}
  // acc[i·${T} + j]: row m0 + i, column n0 + ${W}j + lane.
  var acc: array<f32, ${rows * T}>;
  let quads = (params.K + 3u) / 4u;
  for (var q = 0u; q < quads; q++) {
    let k = q * 4u;
    ${loads.join("\n    ")}
    ${updates.join("\n    ")}
  }
  ${stores.join("\n  ")}
}`;
}

/** The v5 kernel, or (with another name) v6's, which differs only in how it reads f16. */
export function defineBroadcastKernel(name: string) {
  return defineKernel({
    name,
    params: FLAGGED_PARAMS,
    bindings: MATMUL_BINDINGS,
    elementType: matmulQuadElementType,
    wgsl: broadcastWgsl,
  });
}

type BroadcastKernel = ReturnType<typeof defineBroadcastKernel>;

/** Checks, plans and records one launch of a broadcast kernel. */
export function launchBroadcast(
  kernel: BroadcastKernel,
  version: string,
  packF16: boolean,
  a: Tensor,
  b: Tensor,
  options: MatmulOptions,
): Tensor {
  const lanes = requireFixedSubgroupSize(a.gpu, `matmul ${version}`);
  const call = planMatmul(version, a, b, options);
  const { M, N, K, batch } = call.shape;
  const tile = broadcastTile(lanes, M);
  a.gpu.record(kernel, {
    params: flaggedParams(call),
    tensors: matmulTensors(call),
    workgroups: [Math.ceil(N / (lanes * tile.columnGroups)), Math.ceil(M / (lanes * tile.rowGroups)), batch],
    spec: {
      ...tile,
      aMode: quadMode(a, K, packF16),
      bMode: quadMode(b, K, packF16),
      subgroups: true,
    },
  });
  return call.c;
}

const kernel = defineBroadcastKernel("matmul_v5_subgroup_broadcast");

export function matmulSubgroupBroadcast(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  return launchBroadcast(kernel, "v5_subgroup_broadcast", false, a, b, options);
}

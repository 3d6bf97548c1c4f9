/**
 * Quantized matmul v1: C = A·Wᵀ for any number of rows of A (prefill, the vision tower), W
 * held as ggml's packed blocks and never expanded into a dequantized matrix in memory.
 *
 * A matvec (matvec_v*.ts) turns every weight back into a float once per launch, and a launch
 * takes at most 4 rows of A: M rows cost M/4 launches, each unpacking all of W again, and
 * unpacking is several instructions per weight against one multiply-add per row.
 *
 * Here a workgroup computes a tile of C: 64 outputs by up to 64 rows of A. It walks K one unit
 * (32 weights: a block, or a K-quant's sub-block with its own scale) at a time. At each step 64
 * tasks dequantize the unit of each of the tile's 64 weight rows into workgroup memory (matvec
 * v3's unrolled unpack, matvec_v3_unrolled.ts), and one task per row of the tile copies that
 * row's 32 values of A beside them; after a barrier every thread adds its block of 4 rows × 8
 * outputs from the two staged units, a quad of K at a time, and a second barrier frees the
 * tiles for the next step. Each weight is dequantized once per workgroup and used by all its
 * rows of A, and each value read from workgroup memory is used 4 or 8 times from a register.
 *
 * The shape is lavapipe's. There reading workgroup memory is the cost: every component of a
 * load is read lane by lane, even when all lanes of a SIMD group read the same address, so
 * what counts is the loads per multiply-add. Per quad a thread here loads 4 + 8 vec4s for 32
 * dot products. A 4×4 block (8 loads for 16) took 1.9 times as long at M = 64, N = K = 2048
 * (Q4_0); an 8×8 block (16 for 64) ran no faster than this 4×8 one, its 64 sums spilling, and
 * took 8 s to compile (20 s with its quads unrolled) instead of 2 to 3: each type and tile
 * height is a pipeline of its own, compiled the first time it runs. Dequantizing and staging
 * are under a seventh of the time. The 64 + 64 staged units of 8 vec4s fill the 16 KiB of
 * workgroup memory every WebGPU device has.
 *
 * The tile's height follows M: 16, 32 or 64 rows of A (4, 8 or 16 rows of threads), the
 * smallest that holds M, else 64, since rows past A's edge cost as much as real ones: with up
 * to 16 rows the 16-row tile takes about a quarter of the 64-row tile's time (12 ms against 44
 * at N = K = 2048).
 *
 * Tiles overhang C's edges: past the last row of A or of W the loads are clamped to that row
 * (real data, never stored), and only sums inside C are stored, through the epilogue all the
 * quantized products share (matvec_common.ts).
 */
import { check } from "../../tensor/errors.js";
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { QuantizedType } from "./blocks.js";
import { planQuantizedMatmul, QUANTIZED_BINDINGS, QUANTIZED_EPILOGUE_WGSL, QUANTIZED_PARAMS, quantizedElementType, type QuantizedMatmulOptions, type QuantizedMatrix } from "./matvec_common.js";
import { K_SCALE_MIN_OF_WORDS_WGSL, unrolledUnitWgsl } from "./matvec_v3_unrolled.js";

/** Rows of A and outputs in a thread's register block. */
const BLOCK_M = 4;
const BLOCK_N = 8;
/** Threads along N: the tile is 64 outputs wide. */
const THREADS_N = 8;
const TILE_N = BLOCK_N * THREADS_N;
/** Rows of threads a tile may have: tiles of 16, 32 or 64 rows of A. */
const THREADS_M = [4, 8, 16] as const;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The kernel for tiles of 4·threadsM rows. */
function tiledWgsl({ type, threadsM }: { type: QuantizedType; threadsM: number }): string {
  const tileM = BLOCK_M * threadsM;
  const threads = threadsM * THREADS_N;
  // Thread (tx, ty) owns rows ty + threadsM·i and outputs tx + 8j of the tile: s{i}_{j}.
  const sums = range(BLOCK_M).flatMap((i) => range(BLOCK_N).map((j) => `s${i}_${j}`));
  const stores = range(BLOCK_M).flatMap((i) => range(BLOCK_N).map((j) => `store_inside(m0 + ty + ${i * threadsM}u, n0 + tx + ${j * THREADS_N}u, s${i}_${j});`));
  return /* wgsl */ `
${QUANTIZED_EPILOGUE_WGSL}
${K_SCALE_MIN_OF_WORDS_WGSL}

// Tiles overhang C's edges; only sums inside it are stored.
fn store_inside(m: u32, n: u32, sum: f32) {
  if (m < params.M && n < params.N) { store_c(m, n, sum); }
}

// One unit (32 K-values: 8 quads) of the tile's rows of A and of its weight rows, quad-major
// so that neighbouring threads read neighbouring vec4s.
var<workgroup> a_tile: array<array<vec4f, ${tileM}>, 8>;
var<workgroup> w_tile: array<array<vec4f, ${TILE_N}>, 8>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let m0 = wid.y * ${tileM}u;
  let n0 = wid.x * ${TILE_N}u;
  let tx = t % ${THREADS_N}u;
  let ty = t / ${THREADS_N}u;
  ${sums.map((s) => `var ${s} = 0.0;`).join(" ")}
  for (var unit = 0u; unit < params.K / 32u; unit++) {
    // Tasks 0 .. ${TILE_N - 1} dequantize the unit of one weight row of the tile, the next ${tileM} copy it for one row of A.
    for (var task = t; task < ${TILE_N + tileM}u; task += ${threads}u) {
      if (task < ${TILE_N}u) {
        let row = min(n0 + task, params.N - 1u) * params.row_bytes;
        ${unrolledUnitWgsl(type).replaceAll("\n      ", "\n        ")}
        ${range(8).map((q) => `w_tile[${q}][task] = vec4f(w${4 * q}, w${4 * q + 1}, w${4 * q + 2}, w${4 * q + 3});`).join("\n        ")}
      } else {
        let r = task - ${TILE_N}u;
        let at = (min(m0 + r, params.M - 1u) * params.K + unit * 32u) / 4u;
        ${range(8).map((q) => `a_tile[${q}][r] = a[at + ${q}u];`).join("\n        ")}
      }
    }
    workgroupBarrier();
    // Left as a loop: unrolled, lavapipe's LLVM took three times as long to compile it, and it ran slower.
    for (var q = 0u; q < 8u; q++) {
      ${range(BLOCK_N).map((j) => `let w${j} = w_tile[q][tx + ${j * THREADS_N}u];`).join(" ")}
      ${range(BLOCK_M).map((i) => `{ let x = a_tile[q][ty + ${i * threadsM}u]; ${range(BLOCK_N).map((j) => `s${i}_${j} += dot(x, w${j});`).join(" ")} }`).join("\n      ")}
    }
    workgroupBarrier();
  }
  ${stores.join("\n  ")}
}`;
}

const kernel = defineKernel({
  name: "qmatmul_v1_tiled",
  params: QUANTIZED_PARAMS,
  bindings: QUANTIZED_BINDINGS,
  elementType: quantizedElementType(true),
  wgsl: tiledWgsl,
});

/** Rows of threads for M rows of A: the smallest tile that holds them, else the largest. */
function threadsFor(M: number): number {
  return THREADS_M.find((t) => BLOCK_M * t >= M) ?? THREADS_M[THREADS_M.length - 1];
}

/**
 * C [..., N] f32 = A [..., K] f32 · Wᵀ (+ bias) (+ residual), W a [N, K] quantized matrix, for
 * any number of rows of A (its leading dimensions fold into M); `options` as matmul's
 * MatmulOptions (matvec_common.ts).
 */
export function quantizedMatmulTiled(gpu: Gpu, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}): Tensor {
  const call = planQuantizedMatmul("quantizedMatmulTiled", a, w, options);
  const threadsM = threadsFor(call.M);
  const grid: [number, number, number] = [Math.ceil(call.N / TILE_N), Math.ceil(call.M / (BLOCK_M * threadsM)), 1];
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  check(grid[0] <= max && grid[1] <= max, () => `quantizedMatmulTiled: C [${call.M}, ${call.N}] needs ${grid[1]}×${grid[0]} tiles, over ${max} per dimension`);
  gpu.record(kernel, { params: call.params, tensors: call.tensors, workgroups: grid, spec: { type: w.type, threadsM } });
  return call.c;
}

/**
 * qkv matvec: up to three projections of the same rows in one launch, their outputs side by
 * side in one tensor,
 *
 *   out[m, :] = [x[m]·Wqᵀ + bq | x[m]·Wkᵀ + bk | x[m]·Wvᵀ + bv]      out: [M, Nq + Nk + Nv]
 *
 * for 1 to 4 rows of x (decoding). Each weight is still streamed once, but the three small
 * launches of a decode step (each a fraction of a GPU, with K/V heads fewer than query heads)
 * become one, whose workgroups cover all three: the grid is the concatenation of each weight's
 * own matvec grid, and each workgroup picks its weight from where its index falls (the
 * branch is the same for the whole workgroup, so nothing diverges).
 *
 * Two layouts, after the matvec versions:
 * - v2 (subgroups, matvec_v2_subgroup's): a workgroup is one subgroup and computes 4 outputs
 *   of its weight for every row of x, lanes splitting K, reduced by subgroupAdd.
 * - v1 (no subgroups, matvec's): 32 × 8 threads compute 8 outputs, 32 lanes along K each,
 *   reduced in workgroup memory.
 * The loop over K is written once per weight (the bindings differ), so the shader holds it
 * three times.
 *
 * Bindings: x, the three weights, their three biases and the output: 8 storage buffers, the
 * WebGPU default limit per stage. A missing weight or bias is bound to x as a stand-in (never
 * read: a missing weight has N = 0, a missing bias a flag of 0).
 *
 * `qkvLinear` is the one entry for prefill and decode: the fused kernel for the few rows of
 * decoding (chooseQkvVersion), otherwise one matmul per weight into its columns of the shared
 * output.
 */
import { fixedSubgroupSize, requireFixedSubgroupSize } from "../subgroups.js";
import { isFloat, type DType } from "../../tensor/dtype.js";
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { quadElementType, quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { range } from "../wgsl/unroll.js";
import { matmul, subgroupMatvecMaxRows } from "./index.js";

/** One projection: a weight [N, K] and its optional bias [N]. */
export interface ProjectionPart {
  weight: Tensor;
  bias?: Tensor | null;
}

export interface QkvOptions {
  /** Default: x's. */
  outDtype?: DType;
}

/** The most rows of x the fused versions take (their sums are unrolled per row). */
export const QKV_MAX_ROWS = 4;
const WEIGHTS = 3;

// ------------------------------------------------------------------ WGSL

const PARAMS = {
  M: "u32",
  K: "u32",
  out_stride: "u32",
  // Outputs of each weight, the first workgroup of weights 1 and 2, and each bias's flag.
  n0: "u32",
  n1: "u32",
  n2: "u32",
  first1: "u32",
  first2: "u32",
  has_bias0: "u32",
  has_bias1: "u32",
  has_bias2: "u32",
} as const;
const BINDINGS = { x: "read", w0: "read", w1: "read", w2: "read", b0: "read", b1: "read", b2: "read", out: "read_write" } as const;

type QkvSpec = { xMode: QuadMode; mode0: QuadMode; mode1: QuadMode; mode2: QuadMode; rows: number };

function elementType(binding: string, dtype: DType, spec: QkvSpec): string {
  if (binding === "x") return quadElementType(spec.xMode, dtype);
  if (binding === "w0") return quadElementType(spec.mode0, dtype);
  if (binding === "w1") return quadElementType(spec.mode1, dtype);
  if (binding === "w2") return quadElementType(spec.mode2, dtype);
  return dtype;
}

/** Quad fetches, and `store_j(m, n, sum)` for each weight j: adds its bias, writes its columns. */
function preludeWgsl(spec: QkvSpec): string {
  const modes = [spec.mode0, spec.mode1, spec.mode2];
  const column = ["0u", "params.n0", "params.n0 + params.n1"];
  return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${quadFetchWgsl("x", spec.xMode, { length: "params.K" })}
${range(WEIGHTS).map((j) => quadFetchWgsl(`w${j}`, modes[j], { length: "params.K" })).join("\n")}
${range(WEIGHTS)
  .map(
    (j) => `
fn store_${j}(m: u32, n: u32, sum: f32) {
  var value = sum;
  if (params.has_bias${j} != 0u) { value += f32(b${j}[n]); }
  out[m * params.out_stride + ${column[j]} + n] = out_t(value);
}`,
  )
  .join("")}`;
}

const V2_OUTPUTS = 4;

/** v2: `sums_j(n0, lane)`, this lane's share of x[m]·rows n0 .. n0 + 3 of weight j, for each j. */
function subgroupSumsWgsl(j: number, rows: number, lanes: number): string {
  return /* wgsl */ `
fn sums_${j}(n0: u32, lane: u32) -> array<vec4f, ${rows}> {
  // Rows past N load the last row; their sums are never stored.
  ${range(V2_OUTPUTS).map((i) => `let row${i} = min(n0 + ${i}u, params.n${j} - 1u) * params.K;`).join("\n  ")}
  var acc: array<vec4f, ${rows}>;
  let quads = (params.K + 3u) / 4u;
  for (var q = lane; q < quads; q += ${lanes}u) {
    let k = q * 4u;
    ${range(V2_OUTPUTS).map((i) => `let b${i} = quad_w${j}(row${i}, k);`).join("\n    ")}
    ${range(rows).map((m) => `{ let a = quad_x(${m}u * params.K, k); acc[${m}] += vec4f(${range(V2_OUTPUTS).map((i) => `dot(a, b${i})`).join(", ")}); }`).join("\n    ")}
  }
  return acc;
}`;
}

const subgroupKernel = defineKernel({
  name: "qkv_matvec_v2_subgroup",
  params: PARAMS,
  bindings: BINDINGS,
  elementType,
  wgsl: (spec: QkvSpec & { lanes: number; subgroups: true }) => /* wgsl */ `
${preludeWgsl(spec)}
${range(WEIGHTS).map((j) => subgroupSumsWgsl(j, spec.rows, spec.lanes)).join("\n")}

@compute @workgroup_size(${spec.lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let group = flat_workgroup(wid, nwg);
  // Which weight this workgroup serves, and its first output there.
  var j = 0u;
  var n0 = group * ${V2_OUTPUTS}u;
  var acc: array<vec4f, ${spec.rows}>;
  if (group < params.first1) {
    acc = sums_0(n0, lane);
  } else if (group < params.first2) {
    j = 1u;
    n0 = (group - params.first1) * ${V2_OUTPUTS}u;
    acc = sums_1(n0, lane);
  } else {
    j = 2u;
    n0 = (group - params.first2) * ${V2_OUTPUTS}u;
    acc = sums_2(n0, lane);
  }
  ${range(spec.rows).map((m) => `let sums${m} = subgroupAdd(acc[${m}]);`).join("\n  ")}
  if (lane == 0u) {
    for (var i = 0u; i < ${V2_OUTPUTS}u; i++) {
      let n = n0 + i;
      ${range(spec.rows)
        .map((m) => `if (j == 0u && n < params.n0) { store_0(${m}u, n, sums${m}[i]); } else if (j == 1u && n < params.n1) { store_1(${m}u, n, sums${m}[i]); } else if (j == 2u && n < params.n2) { store_2(${m}u, n, sums${m}[i]); }`)
        .join("\n      ")}
    }
  }
}`,
});

const V1_LANES = 32;
const V1_OUTPUTS = 8;

/** v1: `partial_j(n, lane)`, this lane's share of x[m]·row n of weight j. */
function plainSumsWgsl(j: number, rows: number): string {
  return /* wgsl */ `
fn partial_${j}(n: u32, lane: u32) -> array<f32, ${rows}> {
  var acc: array<f32, ${rows}>;
  if (n >= params.n${j}) { return acc; }
  let row = n * params.K;
  for (var k = lane * 4u; k < params.K; k += ${V1_LANES * 4}u) {
    let w = quad_w${j}(row, k);
    for (var m = 0u; m < ${rows}u; m++) { acc[m] += dot(quad_x(m * params.K, k), w); }
  }
  return acc;
}`;
}

const plainKernel = defineKernel({
  name: "qkv_matvec",
  params: PARAMS,
  bindings: BINDINGS,
  elementType,
  wgsl: (spec: QkvSpec) => /* wgsl */ `
${preludeWgsl(spec)}
${range(WEIGHTS).map((j) => plainSumsWgsl(j, spec.rows)).join("\n")}

const ROWS = ${spec.rows}u;
const LANES = ${V1_LANES}u;
var<workgroup> partial: array<array<f32, ${V1_LANES}>, ${V1_OUTPUTS * spec.rows}>;

@compute @workgroup_size(${V1_LANES}, ${V1_OUTPUTS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let group = flat_workgroup(wid, nwg);
  let lane = lid.x;
  var j = 0u;
  var n = group * ${V1_OUTPUTS}u + lid.y;
  var acc: array<f32, ${spec.rows}>;
  if (group < params.first1) {
    acc = partial_0(n, lane);
  } else if (group < params.first2) {
    j = 1u;
    n = (group - params.first1) * ${V1_OUTPUTS}u + lid.y;
    acc = partial_1(n, lane);
  } else {
    j = 2u;
    n = (group - params.first2) * ${V1_OUTPUTS}u + lid.y;
    acc = partial_2(n, lane);
  }
  for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] = acc[m]; }
  workgroupBarrier();
  for (var width = LANES / 2u; width > 0u; width /= 2u) {
    if (lane < width) {
      for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] += partial[lid.y * ROWS + m][lane + width]; }
    }
    workgroupBarrier();
  }
  if (lane < ROWS) {
    let sum = partial[lid.y * ROWS + lane][0];
    if (j == 0u && n < params.n0) { store_0(lane, n, sum); } else if (j == 1u && n < params.n1) { store_1(lane, n, sum); } else if (j == 2u && n < params.n2) { store_2(lane, n, sum); }
  }
}`,
});

// ------------------------------------------------------------------ launch

/** Checks x [..., K] and the parts; returns the rows, K, each part's N and the output's shape. */
function checkParts(op: string, x: Tensor, parts: readonly ProjectionPart[], options: QkvOptions) {
  check(x.rank >= 1 && isFloat(x.dtype), () => `${op}: x ${x.describe()} must be f32 or f16 [..., K]`);
  const K = x.dim(-1);
  check(K > 0, () => `${op}: x ${x.describe()} has K = 0`);
  check(parts.length >= 1 && parts.length <= WEIGHTS, () => `${op}: takes 1 to ${WEIGHTS} weights, got ${parts.length}`);
  parts.forEach(({ weight, bias }, j) => {
    check(
      weight.rank === 2 && weight.dim(1) === K && isFloat(weight.dtype),
      () => `${op}: weight ${j} ${weight.describe()} must be an f32 or f16 [N, ${K}] matrix for x ${x.describe()}`,
    );
    check(weight.dim(0) > 0, () => `${op}: weight ${j} ${weight.describe()} has no rows`);
    if (bias) {
      check(bias.rank === 1 && bias.dim(0) === weight.dim(0) && isFloat(bias.dtype), () => `${op}: bias ${j} ${bias.describe()} must be f32 or f16 [${weight.dim(0)}]`);
    }
  });
  check(!options.outDtype || isFloat(options.outDtype), () => `${op}: output dtype ${options.outDtype} must be f32 or f16`);
  const N = parts.map((p) => p.weight.dim(0));
  const total = N.reduce((a, b) => a + b, 0);
  return { M: x.size / K, K, N, outShape: [...x.shape.slice(0, -1), total] };
}

function launchFused(version: "qkv_matvec" | "qkv_matvec_v2_subgroup", x: Tensor, parts: readonly ProjectionPart[], options: QkvOptions): Tensor {
  const lanes = version === "qkv_matvec_v2_subgroup" ? requireFixedSubgroupSize(x.gpu, version) : 0;
  const { M, K, N, outShape } = checkParts(version, x, parts, options);
  check(M >= 1 && M <= QKV_MAX_ROWS, () => `${version}: x ${x.describe()} has ${M} rows; ${version} takes 1 to ${QKV_MAX_ROWS}`);
  const out = x.gpu.empty(outShape, options.outDtype ?? x.dtype, { name: "qkv" });
  const perGroup = lanes ? V2_OUTPUTS : V1_OUTPUTS;
  const n = range(WEIGHTS).map((j) => N[j] ?? 0);
  const groups = n.map((count) => Math.ceil(count / perGroup));
  const weight = (j: number) => parts[j]?.weight ?? x;
  const bias = (j: number) => parts[j]?.bias ?? x;
  const mode = (j: number) => (parts[j] ? quadMode(parts[j].weight, K, lanes > 0) : "scalar");
  const spec = { xMode: quadMode(x, K, lanes > 0), mode0: mode(0), mode1: mode(1), mode2: mode(2), rows: M };
  const launch = {
    params: {
      M,
      K,
      out_stride: outShape[outShape.length - 1],
      n0: n[0],
      n1: n[1],
      n2: n[2],
      first1: groups[0],
      first2: groups[0] + groups[1],
      has_bias0: parts[0]?.bias ? 1 : 0,
      has_bias1: parts[1]?.bias ? 1 : 0,
      has_bias2: parts[2]?.bias ? 1 : 0,
    },
    tensors: { x, w0: weight(0), w1: weight(1), w2: weight(2), b0: bias(0), b1: bias(1), b2: bias(2), out },
    workgroups: flatGrid(groups[0] + groups[1] + groups[2]),
  };
  if (lanes) x.gpu.record(subgroupKernel, { ...launch, spec: { ...spec, lanes, subgroups: true } });
  else x.gpu.record(plainKernel, { ...launch, spec });
  return out;
}

/** The fused kernel for 1 to 4 rows, without subgroups. */
export function qkvMatvec(x: Tensor, parts: readonly ProjectionPart[], options: QkvOptions = {}): Tensor {
  return launchFused("qkv_matvec", x, parts, options);
}

/** The fused kernel for 1 to 4 rows, reduced with subgroupAdd (needs a fixed subgroup size). */
export function qkvMatvecSubgroup(x: Tensor, parts: readonly ProjectionPart[], options: QkvOptions = {}): Tensor {
  return launchFused("qkv_matvec_v2_subgroup", x, parts, options);
}

/** The unfused composition: one matmul per weight into its columns of the output. */
export function qkvUnfused(x: Tensor, parts: readonly ProjectionPart[], options: QkvOptions = {}): Tensor {
  const { outShape } = checkParts("qkvLinear", x, parts, options);
  const out = x.gpu.empty(outShape, options.outDtype ?? x.dtype, { name: "qkv" });
  let column = 0;
  for (const { weight, bias } of parts) {
    matmul(x, weight, { bias, out, outColumn: column });
    column += weight.dim(0);
  }
  return out;
}

/** The versions by name, for tests and benchmarks. */
export const QKV_VERSIONS = { qkv_matvec: qkvMatvec, qkv_matvec_v2_subgroup: qkvMatvecSubgroup, unfused: qkvUnfused } as const;

/**
 * Which of QKV_VERSIONS qkvLinear runs: a fused kernel for 1 to 4 rows (with subgroups, up to
 * the rows matmul's rule gives matvec_v2: 3 on a CPU adapter), the matmuls beyond.
 */
export function chooseQkvVersion(x: Tensor): keyof typeof QKV_VERSIONS {
  const rows = x.size / Math.max(x.dim(-1), 1);
  if (rows < 1 || rows > QKV_MAX_ROWS) return "unfused";
  if (fixedSubgroupSize(x.gpu) === null) return "qkv_matvec";
  return rows <= subgroupMatvecMaxRows(x.gpu) ? "qkv_matvec_v2_subgroup" : "unfused";
}

/**
 * x [..., K] times 1 to 3 weights [N_j, K] (+ biases [N_j]) → [..., ΣN_j], each part's output
 * in its columns, in order: q, k and v of attention in one tensor. One launch for 1 to 4 rows
 * (decoding); otherwise one matmul per weight.
 */
export function qkvLinear(x: Tensor, parts: readonly ProjectionPart[], options: QkvOptions = {}): Tensor {
  checkParts("qkvLinear", x, parts, options);
  return QKV_VERSIONS[chooseQkvVersion(x)](x, parts, options);
}

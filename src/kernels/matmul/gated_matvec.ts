/**
 * gated matvec: the SwiGLU (GeGLU) projection of a decode step in one launch,
 *
 *   out[m, n] = act(x[m]·gate[n] + gate_bias[n]) · (x[m]·up[n] + up_bias[n])
 *
 * for 1 to 4 rows of x. Unfused it is three launches: matmul(gate), matmul(up), siluMul, and
 * the two [M, N] products go through memory twice each (stored by their matmul, loaded by
 * siluMul). Here one workgroup reads row n of gate and row n of up in the same loop along K,
 * every load of x serving both, keeps the two sums in registers and stores only the product:
 * one launch, and the products never exist in memory. The weights are still streamed exactly
 * once, so decoding's bound (bytes of weights read) is unchanged; what goes is the launch
 * overhead and the intermediate traffic.
 *
 * Two layouts, after the matvec versions they are modelled on:
 * - v2 (subgroups, after matvec_v2_subgroup): a workgroup is one subgroup of W lanes and
 *   computes 2 outputs, n0 and n0 + 1, for every row of x. Its lanes split K into quads; each
 *   step loads the quads of 4 weight rows (gate n0, gate n0 + 1, up n0, up n0 + 1: matvec_v2's
 *   balance of 4 rows of B per x quad) and adds their dot products with each row of x into a
 *   vec4 per row; subgroupAdd reduces those across the lanes, lane 0 applies act(g)·u.
 * - v1 (no subgroups, after matvec): a workgroup of 32 × 8 threads computes 8 outputs; the 32
 *   lanes of output n walk along K together, each keeping a gate and an up sum per row of x,
 *   reduced in workgroup memory at the end.
 *
 * `gatedLinear` is the one entry for prefill and decode: it runs the fused kernel where the
 * rows fit and the matmul rule would pick a matvec, and otherwise the two matmuls and the
 * elementwise product.
 */
import { activation as activationKernel, activationFunctionWgsl, activationReference, siluMul, type ActivationKind } from "../activations.js";
import { mul } from "../elementwise.js";
import { fixedSubgroupSize, requireFixedSubgroupSize } from "../subgroups.js";
import { isFloat, type DType } from "../../tensor/dtype.js";
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { quadElementType, quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { range } from "../wgsl/unroll.js";
import { matmul, subgroupMatvecMaxRows } from "./index.js";
import { matmulErrorBounds, matmulReference, type MatmulShape } from "./reference.js";

export interface GatedOptions {
  /** act of act(gate)·up (default "silu": LLaMA's SwiGLU). */
  activation?: ActivationKind;
  /** [N] each. */
  gateBias?: Tensor | null;
  upBias?: Tensor | null;
  /** Default: x's. */
  outDtype?: DType;
}

/** The most rows of x either fused version takes (their sums are unrolled per row). */
export const GATED_MAX_ROWS = 4;

// ------------------------------------------------------------------ CPU reference (float64)

/** act(x·gateᵀ + gate_bias) ⊙ (x·upᵀ + up_bias), x [M, K], gate and up [N, K]. */
export function gatedReference(
  x: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
  gateBias: ArrayLike<number> | null,
  upBias: ArrayLike<number> | null,
  { M, N, K }: { M: number; N: number; K: number },
  kind: ActivationKind,
): Float64Array {
  const shape: MatmulShape = { batch: 1, M, N, K, batchedB: false };
  const g = activationReference(matmulReference(x, gate, gateBias, shape), kind);
  const u = matmulReference(x, up, upBias, shape);
  return g.map((v, i) => v * u[i]);
}

/** The steepest slope of any of the activations (gelu's, 1.129; silu's is 1.100). */
const ACTIVATION_LIPSCHITZ = 1.13;

/**
 * How far a right kernel may be from gatedReference: each sum's matmul bound (matmulErrorBounds)
 * carried through act(g)·u (act moves by at most 1.13 per unit of g), the activation's own
 * approximation (within TOLERANCE.f32 of its reference, as test/activations.test.ts holds it),
 * the product's rounding and the stored output's (2^-24 in f32; 2^-11 and 2^-14 absolute in f16).
 */
export function gatedErrorBounds(
  x: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
  gateBias: ArrayLike<number> | null,
  upBias: ArrayLike<number> | null,
  dims: { M: number; N: number; K: number },
  kind: ActivationKind,
  outDtype: DType,
): Float64Array {
  const shape: MatmulShape = { batch: 1, ...dims, batchedB: false };
  const [eg, eu] = [matmulErrorBounds(x, gate, gateBias, shape, "f32"), matmulErrorBounds(x, up, upBias, shape, "f32")];
  const g = matmulReference(x, gate, gateBias, shape);
  const u = matmulReference(x, up, upBias, shape);
  const act = activationReference(g, kind);
  const [relative, absolute] = outDtype === "f16" ? [2 ** -11, 2 ** -14] : [2 ** -24, 1e-38];
  return act.map((a, i) => {
    const [ua, aa] = [Math.abs(u[i]), Math.abs(a)];
    const carried = ACTIVATION_LIPSCHITZ * eg[i] * (ua + eu[i]) + aa * eu[i];
    const activation = (1e-5 + 1e-5 * aa) * (ua + eu[i]);
    return carried + activation + (2 ** -24 + relative) * aa * ua + absolute;
  });
}

// ------------------------------------------------------------------ WGSL

const PARAMS = { M: "u32", N: "u32", K: "u32", has_gate_bias: "u32", has_up_bias: "u32" } as const;
const BINDINGS = { x: "read", gate: "read", up: "read", gate_bias: "read", up_bias: "read", out: "read_write" } as const;

type GatedSpec = { xMode: QuadMode; gateMode: QuadMode; upMode: QuadMode; rows: number; activation: ActivationKind };

function elementType(binding: string, dtype: DType, spec: GatedSpec): string {
  if (binding === "x") return quadElementType(spec.xMode, dtype);
  if (binding === "gate") return quadElementType(spec.gateMode, dtype);
  if (binding === "up") return quadElementType(spec.upMode, dtype);
  return dtype;
}

/** The shared pieces: quad fetches, the activation, and the store of act(g)·u. */
function preludeWgsl({ xMode, gateMode, upMode, activation }: GatedSpec): string {
  return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${activationFunctionWgsl(activation)}
${quadFetchWgsl("x", xMode, { length: "params.K" })}
${quadFetchWgsl("gate", gateMode, { length: "params.K" })}
${quadFetchWgsl("up", upMode, { length: "params.K" })}

fn store_gated(m: u32, n: u32, g: f32, u: f32) {
  var gv = g;
  var uv = u;
  if (params.has_gate_bias != 0u) { gv += f32(gate_bias[n]); }
  if (params.has_up_bias != 0u) { uv += f32(up_bias[n]); }
  out[m * params.N + n] = out_t(activate(gv) * uv);
}`;
}

/** Outputs per subgroup in v2: 2 outputs × (gate, up) = 4 weight rows per step. */
const V2_OUTPUTS = 2;

const subgroupKernel = defineKernel({
  name: "gated_matvec_v2_subgroup",
  params: PARAMS,
  bindings: BINDINGS,
  elementType,
  wgsl: (spec: GatedSpec & { lanes: number; subgroups: true }) => /* wgsl */ `
${preludeWgsl(spec)}

@compute @workgroup_size(${spec.lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let n0 = flat_workgroup(wid, nwg) * ${V2_OUTPUTS}u;
  // Rows past N load the last row; their sums are never stored.
  let row0 = min(n0, params.N - 1u) * params.K;
  let row1 = min(n0 + 1u, params.N - 1u) * params.K;
  var acc: array<vec4f, ${spec.rows}>; // acc[m]: this lane's part of x[m]·(gate n0, gate n0 + 1, up n0, up n0 + 1)
  let quads = (params.K + 3u) / 4u;
  for (var q = lane; q < quads; q += ${spec.lanes}u) {
    let k = q * 4u;
    let g0 = quad_gate(row0, k);
    let g1 = quad_gate(row1, k);
    let u0 = quad_up(row0, k);
    let u1 = quad_up(row1, k);
    ${range(spec.rows).map((m) => `{ let a = quad_x(${m}u * params.K, k); acc[${m}] += vec4f(dot(a, g0), dot(a, g1), dot(a, u0), dot(a, u1)); }`).join("\n    ")}
  }
  ${range(spec.rows).map((m) => `let sums${m} = subgroupAdd(acc[${m}]);`).join("\n  ")}
  if (lane == 0u) {
    ${range(spec.rows)
      .map((m) => `store_gated(${m}u, n0, sums${m}.x, sums${m}.z);\n    if (n0 + 1u < params.N) { store_gated(${m}u, n0 + 1u, sums${m}.y, sums${m}.w); }`)
      .join("\n    ")}
  }
}`,
});

const V1_LANES = 32; // threads per output
const V1_OUTPUTS = 8; // outputs per workgroup

const plainKernel = defineKernel({
  name: "gated_matvec",
  params: PARAMS,
  bindings: BINDINGS,
  elementType,
  wgsl: (spec: GatedSpec) => /* wgsl */ `
${preludeWgsl(spec)}

const ROWS = ${spec.rows}u;
const LANES = ${V1_LANES}u;
// partial[2·(output·ROWS + m)] and [... + 1]: the lanes' gate and up sums of row m of x.
var<workgroup> partial: array<array<f32, ${V1_LANES}>, ${2 * V1_OUTPUTS * spec.rows}>;

@compute @workgroup_size(${V1_LANES}, ${V1_OUTPUTS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = flat_workgroup(wid, nwg) * ${V1_OUTPUTS}u + lid.y;
  let lane = lid.x;
  var g: array<f32, ${spec.rows}>;
  var u: array<f32, ${spec.rows}>;
  if (n < params.N) {
    let row = n * params.K;
    for (var k = lane * 4u; k < params.K; k += LANES * 4u) {
      let wg = quad_gate(row, k);
      let wu = quad_up(row, k);
      for (var m = 0u; m < ROWS; m++) {
        let a = quad_x(m * params.K, k);
        g[m] += dot(a, wg);
        u[m] += dot(a, wu);
      }
    }
  }
  let base = lid.y * ROWS;
  for (var m = 0u; m < ROWS; m++) {
    partial[2u * (base + m)][lane] = g[m];
    partial[2u * (base + m) + 1u][lane] = u[m];
  }
  workgroupBarrier();
  for (var width = LANES / 2u; width > 0u; width /= 2u) {
    if (lane < width) {
      for (var i = 2u * base; i < 2u * (base + ROWS); i++) { partial[i][lane] += partial[i][lane + width]; }
    }
    workgroupBarrier();
  }
  if (lane < ROWS && n < params.N) {
    store_gated(lane, n, partial[2u * (base + lane)][0], partial[2u * (base + lane) + 1u][0]);
  }
}`,
});

// ------------------------------------------------------------------ launch

interface GatedCall {
  M: number;
  N: number;
  K: number;
  kind: ActivationKind;
  out: Tensor;
  tensors: Record<keyof typeof BINDINGS, Tensor>;
  params: Record<keyof typeof PARAMS, number>;
}

/** Checks x [..., K] (rows folded), gate and up [N, K], the biases [N]; `maxRows` for the fused kernels. */
function checkGated(op: string, x: Tensor, gate: Tensor, up: Tensor, options: GatedOptions): { M: number; N: number; K: number; outShape: number[] } {
  check(x.rank >= 1 && isFloat(x.dtype), () => `${op}: x ${x.describe()} must be f32 or f16 [..., K]`);
  const K = x.dim(-1);
  check(K > 0, () => `${op}: x ${x.describe()} has K = 0`);
  for (const [name, w] of [["gate", gate], ["up", up]] as const) {
    check(w.rank === 2 && w.dim(1) === K && isFloat(w.dtype), () => `${op}: ${name} ${w.describe()} must be an f32 or f16 [N, ${K}] weight for x ${x.describe()}`);
  }
  const N = gate.dim(0);
  check(up.dim(0) === N, () => `${op}: gate ${gate.describe()} and up ${up.describe()} differ in N`);
  for (const [name, b] of [["gateBias", options.gateBias], ["upBias", options.upBias]] as const) {
    if (b) check(b.rank === 1 && b.dim(0) === N && isFloat(b.dtype), () => `${op}: ${name} ${b.describe()} must be f32 or f16 [${N}]`);
  }
  check(!options.outDtype || isFloat(options.outDtype), () => `${op}: output dtype ${options.outDtype} must be f32 or f16`);
  return { M: x.size / K, N, K, outShape: [...x.shape.slice(0, -1), N] };
}

function planGated(op: string, x: Tensor, gate: Tensor, up: Tensor, options: GatedOptions): GatedCall {
  const { M, N, K, outShape } = checkGated(op, x, gate, up, options);
  check(M >= 1 && M <= GATED_MAX_ROWS, () => `${op}: x ${x.describe()} has ${M} rows; ${op} takes 1 to ${GATED_MAX_ROWS}`);
  const kind = options.activation ?? "silu";
  activationFunctionWgsl(kind); // checks the kind
  const out = x.gpu.empty(outShape, options.outDtype ?? x.dtype, { name: "gated" });
  const [gateBias, upBias] = [options.gateBias ?? null, options.upBias ?? null];
  return {
    M,
    N,
    K,
    kind,
    out,
    // Absent biases: x stands in (the shader never reads it).
    tensors: { x, gate, up, gate_bias: gateBias ?? x, up_bias: upBias ?? x, out },
    params: { M, N, K, has_gate_bias: gateBias ? 1 : 0, has_up_bias: upBias ? 1 : 0 },
  };
}

/** The fused kernel for 1 to 4 rows, without subgroups. */
export function gatedMatvec(x: Tensor, gate: Tensor, up: Tensor, options: GatedOptions = {}): Tensor {
  const call = planGated("gated_matvec", x, gate, up, options);
  x.gpu.record(plainKernel, {
    params: call.params,
    tensors: call.tensors,
    workgroups: flatGrid(Math.ceil(call.N / V1_OUTPUTS)),
    spec: { xMode: quadMode(x, call.K, false), gateMode: quadMode(gate, call.K, false), upMode: quadMode(up, call.K, false), rows: call.M, activation: call.kind },
  });
  return call.out;
}

/** The fused kernel for 1 to 4 rows, reduced with subgroupAdd (needs a fixed subgroup size). */
export function gatedMatvecSubgroup(x: Tensor, gate: Tensor, up: Tensor, options: GatedOptions = {}): Tensor {
  const lanes = requireFixedSubgroupSize(x.gpu, "gated_matvec_v2_subgroup");
  const call = planGated("gated_matvec_v2_subgroup", x, gate, up, options);
  x.gpu.record(subgroupKernel, {
    params: call.params,
    tensors: call.tensors,
    workgroups: flatGrid(Math.ceil(call.N / V2_OUTPUTS)),
    spec: {
      xMode: quadMode(x, call.K, true),
      gateMode: quadMode(gate, call.K, true),
      upMode: quadMode(up, call.K, true),
      rows: call.M,
      activation: call.kind,
      lanes,
      subgroups: true,
    },
  });
  return call.out;
}

/** The unfused composition: two matmuls (f32 products) and the elementwise act(g)·u: 3 launches for silu, 4 otherwise. */
export function gatedUnfused(x: Tensor, gate: Tensor, up: Tensor, options: GatedOptions = {}): Tensor {
  checkGated("gatedLinear", x, gate, up, options);
  const kind = options.activation ?? "silu";
  activationFunctionWgsl(kind);
  const outDtype = options.outDtype ?? x.dtype;
  const g = matmul(x, gate, { bias: options.gateBias, outDtype: "f32" });
  const u = matmul(x, up, { bias: options.upBias, outDtype: "f32" });
  let out: Tensor;
  if (kind === "silu") out = siluMul(g, u, outDtype);
  else {
    const activated = activationKernel(g, kind, "f32");
    out = mul(activated, u, outDtype);
    activated.dispose();
  }
  // Safe while pending: a later user of these buffers runs after the launches that read them.
  g.dispose();
  u.dispose();
  return out;
}

/** The versions by name, for tests and benchmarks. */
export const GATED_VERSIONS = { gated_matvec: gatedMatvec, gated_matvec_v2_subgroup: gatedMatvecSubgroup, unfused: gatedUnfused } as const;

/**
 * Which of GATED_VERSIONS gatedLinear runs: the fused kernel for 1 to 4 rows, v2 where the
 * device fixes its subgroup size and up to the rows matmul's rule gives matvec_v2 (3 on a CPU
 * adapter, where from 4 rows the two matmuls' v6 tiles are faster: 22.4 ms for gate and up of
 * TinyLlama's 5632×2048 at 4 rows against the fused kernel's 27.6), beyond that (more
 * sequences, prefill) the unfused composition, whose matmuls take the rule's tiled versions.
 */
export function chooseGatedVersion(x: Tensor): keyof typeof GATED_VERSIONS {
  const rows = x.size / Math.max(x.dim(-1), 1);
  const subgroups = fixedSubgroupSize(x.gpu) !== null;
  if (rows < 1 || rows > GATED_MAX_ROWS) return "unfused";
  if (subgroups) return rows <= subgroupMatvecMaxRows(x.gpu) ? "gated_matvec_v2_subgroup" : "unfused";
  return "gated_matvec";
}

/**
 * act(x·gateᵀ + gateBias) ⊙ (x·upᵀ + upBias): x [..., K], gate and up [N, K] → [..., N].
 * One launch for the few rows of decoding (chooseGatedVersion); otherwise two matmuls and the
 * elementwise product.
 */
export function gatedLinear(x: Tensor, gate: Tensor, up: Tensor, options: GatedOptions = {}): Tensor {
  checkGated("gatedLinear", x, gate, up, options);
  return GATED_VERSIONS[chooseGatedVersion(x)](x, gate, up, options);
}

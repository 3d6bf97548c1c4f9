/**
 * Activation functions, elementwise, and LLaMA's fused SwiGLU product.
 *
 *   gelu        0.5·x·(1 + erf(x/√2))                      exact GELU (LLaVA's projector)
 *   gelu_tanh   0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))  the tanh approximation
 *   quick_gelu  x·σ(1.702·x)                                CLIP's activation
 *   silu        x·σ(x)                                      LLaMA's activation (swish)
 *   siluMul(gate, up) = silu(gate)·up                       LLaMA's MLP: down(silu(gate(h))·up(h))
 *
 * One thread per element; math in f32 whatever the storage dtype.
 *
 * Large |x| never produces Inf or NaN. WGSL lets an implementation assume that no infinities
 * occur, and tanh or exp of a large argument would overflow (1/(1 + exp(-t)) at t = -1000 forms
 * exp(1000)), so everything is written with exp of a non-positive argument only, which can
 * underflow to 0 but never overflow:
 * - σ(t) = 1/(1 + e^(-t)) for t ≥ 0 and e^t/(1 + e^t) for t < 0, both from e = exp(-|t|);
 * - 0.5·(1 + tanh(u)) = σ(2u), so gelu_tanh(x) = x·σ(2u) needs no tanh at all (and, unlike
 *   1 + tanh(u), does not cancel for negative x).
 *
 * WGSL has no erf; `erf_f32` below is our own, accurate to 1.6 f32 ulps (measured on lavapipe
 * by test/activations.test.ts), and is described where it is defined.
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";

export type ActivationKind = "gelu" | "gelu_tanh" | "quick_gelu" | "silu";

const KINDS: readonly ActivationKind[] = ["gelu", "gelu_tanh", "quick_gelu", "silu"];

/**
 * transformers' ACT2FN names → the function they compute.
 * gelu_fast is `0.5·x·(1 + tanh(0.7978845608·x·(1 + 0.044715·x²)))`: 0.7978845608 is √(2/π)
 * to the precision of f32 and x·(1 + 0.044715·x²) = x + 0.044715·x³, so it is gelu_tanh again,
 * like gelu_new and gelu_pytorch_tanh (which differ only in how torch evaluates them).
 */
const CONFIG_NAMES: Record<string, ActivationKind> = {
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  quick_gelu: "quick_gelu",
  silu: "silu",
  swish: "silu",
};

/** The activation a model config's `hidden_act` / `projector_hidden_act` names. */
export function activationFromConfig(name: string): ActivationKind {
  const kind = Object.hasOwn(CONFIG_NAMES, name) ? CONFIG_NAMES[name] : undefined;
  if (kind === undefined) {
    throw new Error(`unsupported activation "${name}": supported names are ${Object.keys(CONFIG_NAMES).join(", ")}`);
  }
  return kind;
}

// ------------------------------------------------------------------ CPU reference (float64)

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/**
 * erf in float64, to about 1e-15 relative, by two classical expansions:
 * - |x| < 2.5: erf(x) = (2/√π)·e^(-x²)·Σₙ 2ⁿ·x^(2n+1) / (1·3·5···(2n+1)), a series whose terms
 *   are all positive, so summing it loses nothing to cancellation;
 * - |x| ≥ 2.5: erfc(x) = e^(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))),
 *   Laplace's continued fraction, evaluated from the 60th level backwards (it converges fast
 *   for large x), and erf = 1 - erfc.
 */
export function erfReference(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const a = Math.abs(x);
  let r: number;
  if (a < 2.5) {
    let term = a;
    let sum = a;
    for (let n = 1; term > sum * 1e-17; n++) {
      term *= (2 * a * a) / (2 * n + 1);
      sum += term;
    }
    r = TWO_OVER_SQRT_PI * Math.exp(-a * a) * sum;
  } else {
    let fraction = a;
    for (let k = 60; k >= 1; k--) fraction = a + k / 2 / fraction;
    r = 1 - Math.exp(-a * a) / (Math.sqrt(Math.PI) * fraction);
  }
  return x < 0 ? -r : r;
}

function sigmoidReference(t: number): number {
  return t >= 0 ? 1 / (1 + Math.exp(-t)) : Math.exp(t) / (1 + Math.exp(t));
}

function activationValue(v: number, kind: ActivationKind): number {
  switch (kind) {
    case "gelu":
      return 0.5 * v * (1 + erfReference(v / Math.SQRT2));
    case "gelu_tanh":
      return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    case "quick_gelu":
      return v * sigmoidReference(1.702 * v);
    case "silu":
      return v * sigmoidReference(v);
  }
}

export function activationReference(x: ArrayLike<number>, kind: ActivationKind): Float64Array {
  return Float64Array.from(x, (v) => activationValue(v, kind));
}

export function siluMulReference(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  return Float64Array.from(gate, (g, i) => g * sigmoidReference(g) * up[i]);
}

// ------------------------------------------------------------------ WGSL

/**
 * erf(x) in f32, to within 1.6 ulps over the whole real line. erf is odd, so work with
 * a = |x| and put the sign back; three regions:
 *
 * - a < 1: erf(x) = x + x·P(x²), where P (degree 6 in x²) approximates erf(x)/x - 1 with
 *   absolute error 1.2e-9. Writing x + x·P rather than x·(1 + P) keeps the leading term exact:
 *   the rounding errors of the polynomial land on the correction x·P, under 19% of the result.
 * - 1 ≤ a < 3.92: erfc(a) = e^(-a²)·Q(1/a), where Q (degree 8 in t = 1/a) approximates the
 *   slowly varying erfc(a)·e^(a²) ≈ 1/(a√π) with relative error 5.9e-8; erf = 1 - erfc.
 *   Since erfc ≤ 0.16 here, relative errors in e^(-a²) (including the rounding of a² and the
 *   looser accuracy WGSL allows exp at larger arguments) shrink at least five-fold in erf.
 * - a ≥ 3.92 (Inf included): erfc(a) < 2^-25, half an ulp of 1, so erf = ±1 exactly.
 *
 * The coefficients are our own weighted least-squares fits, refined towards minimax (Lawson's
 * iteration) against mpmath's erf on 4000 Chebyshev points, then rounded to f32. Measured on
 * lavapipe against a float64 erf over a dense grid of [-10, 10], tiny arguments and every 97th
 * f32 in [2^-30, 4]: at most 1.43 ulps for a < 1, 1.56 ulps for 1 ≤ a < 3.92, 0.5 beyond.
 */
const ERF_WGSL = /* wgsl */ `
fn erf_f32(x: f32) -> f32 {
  let a = abs(x);
  if (a < 1.0) {
    let z = x * x;
    let p = 0.12837917 + z * (-0.37612626 + z * (0.112836 + z * (-0.026854448 + z * (0.005189542
          + z * (-0.0008020895 + z * 7.889285e-05)))));
    return x + x * p;
  }
  if (a >= 3.92) { return select(1.0, -1.0, x < 0.0); }
  let t = 1.0 / a;
  let q = 0.00026498162 + t * (0.55913174 + t * (0.04136671 + t * (-0.46904808 + t * (0.49057695
        + t * (-0.23224682 + t * (0.014981592 + t * (0.032928612 + t * -0.010372125)))))));
  let r = 1.0 - exp(-a * a) * q;
  return select(r, -r, x < 0.0);
}`;

const SIGMOID_WGSL = /* wgsl */ `
// The logistic function from exp(-|t|) only, which never overflows.
fn sigmoid(t: f32) -> f32 {
  let e = exp(-abs(t));
  let r = 1.0 / (1.0 + e);
  return select(e * r, r, t >= 0.0);
}`;

/** Each op as a WGSL expression of the f32 value `v`. "erf" is there for the tests. */
type Op = ActivationKind | "erf";
const EXPRESSIONS: Record<Op, string> = {
  gelu: "0.5 * v * (1.0 + erf_f32(v * 0.70710678118654752))",
  // 0.5·(1 + tanh(u)) = σ(2u), with 2u = 2·√(2/π)·v·(1 + 0.044715·v²)
  gelu_tanh: "v * sigmoid(1.5957691216057308 * v * (1.0 + 0.044715 * v * v))",
  quick_gelu: "v * sigmoid(1.702 * v)",
  silu: "v * sigmoid(v)",
  erf: "erf_f32(v)",
};

/**
 * WGSL `fn <name>(v: f32) -> f32`: activation `kind` exactly as the activation kernel computes
 * it (same erf, same sigmoid), for kernels that apply it in their epilogue (matmul/gated_matvec.ts).
 */
export function activationFunctionWgsl(kind: ActivationKind, name = "activate"): string {
  check(KINDS.includes(kind), () => `activation: unknown kind "${kind}" (expected one of ${KINDS.join(", ")})`);
  return `${ERF_WGSL}\n${SIGMOID_WGSL}\nfn ${name}(v: f32) -> f32 { return ${EXPRESSIONS[kind]}; }`;
}

const WORKGROUP = 256;

const activationKernel = defineKernel({
  name: "activation",
  params: { count: "u32" },
  bindings: { x: "read", out: "read_write" },
  wgsl: ({ op }: { op: Op }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${ERF_WGSL}
${SIGMOID_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i >= params.count) { return; }
  let v = f32(x[i]);
  out[i] = out_t(${EXPRESSIONS[op]});
}`,
});

const siluMulKernel = defineKernel({
  name: "silu_mul",
  params: { count: "u32" },
  bindings: { gate: "read", up: "read", out: "read_write" },
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${SIGMOID_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i >= params.count) { return; }
  let g = f32(gate[i]);
  out[i] = out_t(g * sigmoid(g) * f32(up[i]));
}`,
});

// ------------------------------------------------------------------ launch

function elementwise(op: Op, x: Tensor, outDtype: DType): Tensor {
  check(isFloat(x.dtype), () => `${op}: x ${x.describe()} is not f32 or f16`);
  check(isFloat(outDtype), () => `${op}: output dtype ${outDtype} is not f32 or f16`);
  const out = x.gpu.empty(x.shape, outDtype, { name: op });
  if (x.size === 0) return out;
  x.gpu.record(activationKernel, {
    params: { count: x.size },
    tensors: { x, out },
    workgroups: flatGrid(Math.ceil(x.size / WORKGROUP)),
    spec: { op },
  });
  return out;
}

/** The activation `kind` applied to every element of x. */
export function activation(x: Tensor, kind: ActivationKind, outDtype: DType = x.dtype): Tensor {
  check(KINDS.includes(kind), () => `activation: unknown kind "${kind}" (expected one of ${KINDS.join(", ")})`);
  return elementwise(kind, x, outDtype);
}

/** erf of every element of x: the approximation inside gelu, exposed so tests can measure it. */
export function erf(x: Tensor, outDtype: DType = x.dtype): Tensor {
  return elementwise("erf", x, outDtype);
}

/** silu(gate)·up, elementwise: LLaMA's SwiGLU MLP in one pass over both inputs. */
export function siluMul(gate: Tensor, up: Tensor, outDtype: DType = gate.dtype): Tensor {
  check(isFloat(gate.dtype), () => `siluMul: gate ${gate.describe()} is not f32 or f16`);
  check(isFloat(up.dtype), () => `siluMul: up ${up.describe()} is not f32 or f16`);
  check(
    gate.rank === up.rank && gate.shape.every((d, i) => d === up.shape[i]),
    () => `siluMul: gate ${gate.describe()} and up ${up.describe()} differ in shape`,
  );
  check(isFloat(outDtype), () => `siluMul: output dtype ${outDtype} is not f32 or f16`);
  const out = gate.gpu.empty(gate.shape, outDtype, { name: "silu_mul" });
  if (gate.size === 0) return out;
  gate.gpu.record(siluMulKernel, {
    params: { count: gate.size },
    tensors: { gate, up, out },
    workgroups: flatGrid(Math.ceil(gate.size / WORKGROUP)),
  });
  return out;
}

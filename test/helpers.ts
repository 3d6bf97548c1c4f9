/**
 * Shared test tools: one poisoned GPU per test file, seeded random inputs, a closeness check
 * that names the worst element, and a CLI command run with its output captured.
 *
 * Inputs are fresh on every run (a new seed each time, printed in every failure so it can be
 * replayed with WGSL_VLM_SEED=<seed>). Every activation buffer the runtime allocates is filled
 * with NaN first (poison), so an element a kernel forgets to write fails the comparison.
 */
import { vi } from "vitest";
import type { Command } from "../src/cli/command.js";
import { Gpu } from "../src/tensor/gpu.js";
import { roundToF16, roundToF32, type DType } from "../src/tensor/dtype.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { toleranceBounds, worstElement, type Tolerance, type WorstElement } from "../src/kernels/tolerance.js";

let shared: Promise<Gpu> | undefined;

/** The GPU for this test file (each vitest worker is its own process). */
export function testGpu(): Promise<Gpu> {
  shared ??= Gpu.create({ poison: true });
  return shared;
}

export const SEED = Number(process.env.WGSL_VLM_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a tiny seeded generator, good enough for test data. */
export function rng(seed: number = SEED): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box-Muller) times `scale`. */
export function randn(random: () => number, count: number, scale = 1): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const u = 1 - random();
    const v = random();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

export function randint(random: () => number, count: number, below: number): Int32Array {
  return Int32Array.from({ length: count }, () => Math.floor(random() * below));
}

/** The values as the GPU will really hold them in `dtype`. */
export function roundTo(values: ArrayLike<number>, dtype: DType): Float64Array {
  if (dtype === "f16") return roundToF16(values);
  if (dtype === "f32") return roundToF32(values);
  return Float64Array.from(values);
}

/** Uploads values as `dtype`; returns the tensor and the values it really holds (for the reference). */
export function upload(gpu: Gpu, values: ArrayLike<number>, shape: number[], dtype: DType): { t: Tensor; values: Float64Array } {
  return { t: gpu.tensor(values, shape, dtype), values: roundTo(values, dtype) };
}

// The error bounds live in src/, where the kernel benchmark checks every version against them too.
export { TOLERANCE, type Tolerance } from "../src/kernels/tolerance.js";

/** The float dtypes this adapter can run: f32 always, f16 when it has shader-f16. */
export function floatDtypes(gpu: Gpu): ("f32" | "f16")[] {
  return gpu.hasF16 ? ["f32", "f16"] : ["f32"];
}

/**
 * Fails, naming the worst element and the seed, unless every |actual - expected| is within
 * atol + rtol·|expected|. NaN or a missing element always fails.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what: string): void {
  checkLength(actual, expected, what);
  const worst = worstElement(actual, expected, toleranceBounds(expected, tol));
  if (!worst.within) failAt(worst, what, `${tol.atol} + ${tol.rtol}·|expected|; max |diff| ${worst.maxError.toExponential(3)}`);
}

/** Sizes that are 1, small and odd, and one past a power of two: no tile divides them. */
export const AWKWARD = [1, 3, 17, 129] as const;

/** Like expectClose, with a bound per element (for error bounds that depend on the data). */
export function expectWithin(actual: ArrayLike<number>, expected: ArrayLike<number>, bounds: ArrayLike<number>, what: string): void {
  checkLength(actual, expected, what);
  const worst = worstElement(actual, expected, bounds);
  if (!worst.within) failAt(worst, what, `bound ${worst.bound.toExponential(3)}`);
}

function failAt(worst: WorstElement, what: string, bound: string): never {
  const element = `${what}: element ${worst.index} is ${worst.actual}, expected ${worst.expected}`;
  if (!Number.isFinite(worst.error)) throw new Error(`${element} (seed ${SEED})`);
  throw new Error(`${element} (|diff| ${worst.error.toExponential(3)} > ${bound}; seed ${SEED})`);
}

function checkLength(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: ${actual.length} values, expected ${expected.length} (seed ${SEED})`);
  }
}

/** Runs a CLI command's run() with what it writes to stdout and stderr captured instead of printed. */
export async function runCommand(command: Command, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const written = { stdout: "", stderr: "" };
  const spies = (["stdout", "stderr"] as const).map((stream) =>
    vi.spyOn(process[stream], "write").mockImplementation((chunk: string | Uint8Array) => {
      written[stream] += String(chunk);
      return true;
    }),
  );
  try {
    return { code: await command.run(argv), ...written };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

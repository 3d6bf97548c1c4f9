/**
 * Checking what the kernel benchmark times: the output of each version's first run against the
 * kernel's float64 reference, before the version is timed (as llm.c validates every kernel
 * version against its CPU reference). A fast wrong kernel is reported as wrong, not as progress.
 *
 * At model sizes a whole float64 reference is too slow (the 7B prefill's matmul is
 * 640×11008×4096), so a check compares a sample of the output: rows, columns or positions drawn
 * with a fixed seed, always with the first and the last, computed exactly in float64 from the
 * inputs as the GPU holds them. Only what the sample needs is read back (the rows of a 262 MB
 * embedding table that the sampled tokens look up, not the table). The bounds are the tests'
 * (src/kernels/tolerance.ts and the bounds beside each reference).
 */
import { uniform } from "../kernels/random.js";
import { worstElement } from "../kernels/tolerance.js";
import { takeRows } from "../tensor/copy.js";
import type { Tensor } from "../tensor/tensor.js";

/** How one version's output compared with the reference. */
export interface OutputCheck {
  passed: boolean;
  /** Output elements compared (a sample of them at large sizes). */
  compared: number;
  /** |output - reference| at the element nearest to its bound, or furthest past it (NaN for a NaN output). */
  worst: number;
  /** That element's bound: the tests' error bound for this kernel. */
  bound: number;
  /** Which element, with its value and the reference's, e.g. "[3, 17]: 0.61 for 0.5". */
  at: string;
}

const SAMPLE_SEED = 1;

/** Up to `count` distinct indices in [0, n), sorted: 0 and n - 1 always, the rest drawn with a fixed seed. */
export function sampleIndices(n: number, count: number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const chosen = new Set([0, n - 1]);
  for (let draw = 0; chosen.size < count; draw++) chosen.add(Math.floor(uniform(SAMPLE_SEED, draw) * n));
  return [...chosen].sort((a, b) => a - b);
}

/** Rows of `t` (along its first dimension), copied out on the GPU and read back in one submission, in the order given. */
export async function readRows(t: Tensor, rows: readonly number[]): Promise<Float64Array> {
  const taken = rows.map((row) => takeRows(t, row, 1));
  try {
    const values = taken.length === 1 ? [await t.gpu.read(taken[0])] : await t.gpu.read(...taken);
    const rowSize = t.size / Math.max(t.dim(0), 1);
    const out = new Float64Array(rows.length * rowSize);
    values.forEach((v, i) => out.set(v, i * rowSize));
    return out;
  } finally {
    for (const r of taken) r.dispose();
  }
}

/** The whole tensor, read back as float64 values. */
export async function readAll(t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.read());
}

/** Compares output values with the reference's, each within its bound; `label(i)` names element i where the output is. */
export function compareOutput(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  bounds: ArrayLike<number>,
  label: (i: number) => string,
): OutputCheck {
  const worst = worstElement(actual, expected, bounds);
  const value = (x: number) => String(Number(x.toPrecision(6)));
  const at = worst.index < 0 ? "nothing compared" : `${label(worst.index)}: ${value(worst.actual)} for ${value(worst.expected)}`;
  return { passed: worst.within, compared: actual.length, worst: worst.error, bound: worst.bound, at };
}

/** compareOutput for whole rows of `cols` values: element i is [rows[i / cols], i % cols]. */
export function compareRows(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  bounds: ArrayLike<number>,
  rows: readonly number[],
  cols: number,
): OutputCheck {
  return compareOutput(actual, expected, bounds, (i) => `[${rows[Math.floor(i / cols)]}, ${i % cols}]`);
}

/**
 * A chosen token id against the reference's: right when it is one of `accepted` (the
 * reference's id first, then any the rule for this kernel also allows). Its error is 1 for a
 * wrong id, 0 for a right one, with bound 0.
 */
export function compareId(id: number, accepted: readonly number[]): OutputCheck {
  const passed = accepted.includes(id);
  const others = [...new Set(accepted)].filter((a) => a !== accepted[0]);
  const also = others.length > 0 ? ` (or ${others.join(", ")})` : "";
  return { passed, compared: 1, worst: passed ? 0 : 1, bound: 0, at: `id ${id} for ${accepted[0]}${also}` };
}

/** A check in a few words: "err 3.1e-7 ≤ 1.2e-5", or "err 0.11 > 1e-5 at [3, 17]: 0.61 for 0.5". */
export function describeCheck(check: OutputCheck): string {
  const err = (x: number) => (x === 0 ? "0" : Math.abs(x) < 0.01 || Math.abs(x) >= 1e4 ? x.toExponential(1) : x.toPrecision(2));
  return check.passed ? `err ${err(check.worst)} ≤ ${err(check.bound)}` : `err ${err(check.worst)} > ${err(check.bound)} at ${check.at}`;
}

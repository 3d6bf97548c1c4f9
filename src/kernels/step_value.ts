/**
 * A u32 a kernel reads when it runs rather than when it is recorded.
 *
 * Decoding records the same kernels every token; only a few numbers change (the position being
 * written, the number of keys attention sees, the sampler's step). If those numbers are uniform
 * parameters, every token's step must be recorded again from the model code. If instead they
 * sit in a small u32 tensor the loop overwrites once per token, the step's dispatches, bind
 * groups and parameter blocks are identical every token: recorded once, replayed thereafter
 * (Gpu.capture), and the CPU's work per dispatch drops to Dawn's own.
 *
 * A kernel that takes a U32Source declares, for a value called `x`, a u32 parameter `x` and a
 * u32 parameter `x_index`, plus a read-only u32 binding (called `state` by convention):
 *   - a number n:               params.x = n, and the kernel reads params.x;
 *   - a StepValue {tensor, index, plus}:  params.x = plus (mod 2^32), params.x_index = index,
 *     and the kernel reads state[params.x_index] + params.x (x_value() in u32SourceWgsl; u32 arithmetic wraps, so a
 *     negative `plus` subtracts).
 * Which of the two a pipeline reads is a specialization (`dynamic` in the spec; a kernel with
 * several values has one flag per value), so the static path compiles exactly as before. When
 * static, the state binding is bound to a stand-in (any tensor the launch does not write): the
 * shader never reads it. A launch has one state binding, so all its StepValues read the same
 * tensor (at their own indices), and that tensor must not be one the launch writes. Kernels list
 * `state` among their `gathers`: a launch reads one element of it, whatever is bound there.
 *
 * `max` bounds the value for what must be known at record time: shape checks (the position
 * must fit the cache) and grids sized by it (split-K attention's chunk count).
 */
import { check } from "../tensor/errors.js";
import type { Tensor } from "../tensor/tensor.js";

export interface StepValue {
  /** u32 [n]: written by the CPU (gpu.write) or by a kernel before the launch runs. */
  tensor: Tensor;
  index: number;
  /** Added to tensor[index] (may be negative). */
  plus: number;
  /** The largest value tensor[index] + plus may take while this recording is in use. */
  max: number;
}

export type U32Source = number | StepValue;

export function isStepValue(value: U32Source): value is StepValue {
  return typeof value !== "number";
}

/** The value's bound at record time: the number itself, or a StepValue's max. */
export function maxOf(value: U32Source): number {
  return isStepValue(value) ? value.max : value;
}

/** Checks a StepValue's fields (naming `what`), or that a number is a u32. */
export function checkU32Source(value: U32Source, what: string): void {
  if (!isStepValue(value)) {
    check(Number.isInteger(value) && value >= 0 && value <= 0xffffffff, () => `${what}: ${value} must be an integer in [0, 2^32)`);
    return;
  }
  const { tensor, index, plus, max } = value;
  check(tensor.dtype === "u32" && tensor.rank === 1, () => `${what}: step value tensor ${tensor.describe()} must be u32 [n]`);
  check(Number.isInteger(index) && index >= 0 && index < tensor.size, () => `${what}: index ${index} is outside ${tensor.describe()}`);
  check(Number.isInteger(plus) && Math.abs(plus) <= 0xffffffff, () => `${what}: plus ${plus} must be an integer`);
  check(Number.isInteger(max) && max >= 0 && max <= 0xffffffff, () => `${what}: max ${max} must be an integer in [0, 2^32)`);
}

/** The two uniform parameters for value `name`: `name` and `name_index`. */
export function u32SourceParams<N extends string>(name: N, value: U32Source): Record<N | `${N}_index`, number> {
  const params = isStepValue(value) ? { [name]: value.plus >>> 0, [`${name}_index`]: value.index } : { [name]: value, [`${name}_index`]: 0 };
  return params as Record<N | `${N}_index`, number>;
}

/** WGSL: `fn <name>_value() -> u32`, reading params.<name> or state[params.<name>_index] + params.<name>. */
export function u32SourceWgsl(name: string, dynamic: boolean, binding = "state"): string {
  const body = dynamic ? `${binding}[params.${name}_index] + params.${name}` : `params.${name}`;
  return `fn ${name}_value() -> u32 { return ${body}; }`;
}

/** `value` + n: a number, or the same state element with n more added. */
export function offsetBy(value: U32Source, n: number): U32Source {
  return isStepValue(value) ? { ...value, plus: value.plus + n, max: value.max + n } : value + n;
}

/** How error messages name a value: "7", or "u32[4][2] + 3 (at most 9)". */
export function describeU32Source(value: U32Source): string {
  if (!isStepValue(value)) return String(value);
  const { tensor, index, plus, max } = value;
  const offset = plus === 0 ? "" : plus > 0 ? ` + ${plus}` : ` - ${-plus}`;
  return `${tensor.describe()}[${index}]${offset} (at most ${max})`;
}

/**
 * The tensor a launch binds as `state`: the one its StepValues read, or `standIn` when every
 * value is a number. Throws, naming `op`, when the StepValues read different tensors or the
 * state shares a buffer with a tensor the launch writes (`written`).
 */
export function stateTensor(op: string, values: readonly U32Source[], standIn: Tensor, written: readonly Tensor[] = []): Tensor {
  const steps = values.filter(isStepValue);
  if (steps.length === 0) return standIn;
  const state = steps[0].tensor;
  for (const other of steps) {
    check(
      other.tensor === state,
      () => `${op}: step values read ${state.describe()} and ${other.tensor.describe()}; one launch reads one state tensor`,
    );
  }
  for (const t of written) {
    check(t.buffer !== state.buffer, () => `${op}: step value tensor ${state.describe()} shares a buffer with ${t.describe()}, which the launch writes`);
  }
  return state;
}

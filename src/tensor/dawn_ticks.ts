/**
 * Waiting for the GPU without spinning a CPU core.
 *
 * Dawn's Node binding (npm `webgpu`) completes every asynchronous call (mapAsync for a read,
 * onSubmittedWorkDone, pipeline creation) by ticking the device from the event loop: while any
 * is pending it re-queues `setImmediate(tick)` after each tick (its AsyncRunner; Dawn's own
 * source marks the frequency as a TODO). So a read waiting 700 ms for a decode step turns
 * the event loop into a busy loop: one core at 100%, and a fresh native function allocated per
 * tick, tens of MB of garbage a second, whose collections (20-60 ms each) land inside whatever
 * the CPU does next, such as recording the next step. On lavapipe the spinning core is one of
 * the two the "GPU" runs on: a matrix product measured 240 ms with a read waiting on it, under
 * 155 ms when the read started after a sleep.
 *
 * The fix here: Dawn's tick callbacks (native functions without a name, passed alone) are
 * recognised as they are scheduled. The runtime tells this module when it starts and stops
 * waiting on a GPU promise (waitForGpu, which Gpu uses for its reads and syncs). While the
 * oldest such wait is young, ticks run as Dawn asks (at once, so a short wait, such as a
 * decode step's on a fast GPU, costs nothing extra); once it has gone on for SPIN_MS they are
 * spaced out by timers, an eighth of the time waited so far (at least 1 ms, at most
 * MAX_DELAY_MS), so a wait ends at most 12.5% (or 4 ms) late and the core sleeps meanwhile.
 * Ticks while nothing waits (a pipeline compiling, say), and every other setImmediate, are
 * left exactly as they are.
 */
import { performance } from "node:perf_hooks";

/** Ticks are left back to back for this long into a wait. */
export const SPIN_MS = 1;
/** The longest gap between two ticks of a long wait. */
export const MAX_DELAY_MS = 4;

let installed = false;
/** When each GPU wait in progress began (performance.now()), oldest first. */
const waits: number[] = [];

/** Awaits `promise` (a GPU completion: a read's mapAsync, onSubmittedWorkDone) as a wait the ticks are spaced for. */
export async function waitForGpu<T>(promise: Promise<T>): Promise<T> {
  const start = performance.now();
  waits.push(start);
  try {
    return await promise;
  } finally {
    waits.splice(waits.indexOf(start), 1);
  }
}

/** Whether `callback` looks like Dawn's tick: a native function with no name, scheduled without arguments. */
export function isDawnTick(callback: unknown, args: readonly unknown[]): callback is () => void {
  return (
    typeof callback === "function" &&
    args.length === 0 &&
    callback.name === "" &&
    /\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(callback))
  );
}

/** Installs the spacing of Dawn's ticks, once per process (WGSL_VLM_DAWN_TICKS=spin leaves Dawn as it is). */
export function spaceOutDawnTicks(): void {
  if (installed || process.env.WGSL_VLM_DAWN_TICKS === "spin") return;
  installed = true;
  const original = globalThis.setImmediate;
  const spaced = function (callback: (...a: unknown[]) => void, ...args: unknown[]) {
    const waited = waits.length > 0 ? performance.now() - waits[0] : 0;
    if (waited < SPIN_MS || !isDawnTick(callback, args)) return original(callback, ...args);
    return setTimeout(callback, Math.min(MAX_DELAY_MS, Math.max(1, waited / 8))) as unknown as NodeJS.Immediate;
  };
  globalThis.setImmediate = Object.assign(spaced, original) as typeof setImmediate;
}

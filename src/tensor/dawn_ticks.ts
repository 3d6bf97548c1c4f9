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
 * oldest such wait is younger than SPIN_MS, ticks run as Dawn asks (a wait that short is
 * better spun: the bundled model's 1 ms decode steps lost 17% when their waits slept from
 * 0.2 ms on, to the sleeps' wake-up latency and a colder CPU); after that each tick first
 * sleeps (Atomics.wait: the thread is descheduled, the core is free) for an eighth of the time
 * waited so far, at most MAX_SLEEP_MS, so a long wait ends at most 12.5% late. The tick stays a setImmediate, so the event
 * loop still turns between two of them (a server goes on reading its sockets). Ticks while
 * nothing waits (a pipeline compiling, say), and every other setImmediate, are left exactly as
 * they are.
 */
import { performance } from "node:perf_hooks";

/** Ticks are left back to back for this long into a wait (milliseconds). */
export const SPIN_MS = 2;
/** The longest sleep before one tick of a long wait (milliseconds). */
export const MAX_SLEEP_MS = 2;

/** What Atomics.wait sleeps on: a cell nobody ever notifies, so every wait runs to its time-out. */
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

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
    const sleep = Math.min(MAX_SLEEP_MS, waited / 8);
    return original(() => {
      Atomics.wait(sleepCell, 0, 0, sleep);
      callback();
    });
  };
  globalThis.setImmediate = Object.assign(spaced, original) as typeof setImmediate;
}

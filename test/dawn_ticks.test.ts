/**
 * Waiting for the GPU without spinning a core (src/tensor/dawn_ticks.ts): Dawn's ticks are
 * recognised, left alone for short waits and spaced out by timers in long ones, and every
 * other setImmediate is untouched.
 */
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { isDawnTick, MAX_SLEEP_MS, waitForGpu } from "../src/tensor/dawn_ticks.js";
import { matmulNaive } from "../src/kernels/matmul/v1_naive.js";
import { testGpu } from "./helpers.js";

/** A stand-in for Dawn's tick: like the native function its binding makes, nameless and "[native code]". */
const fakeTick = (onRun: () => void) => new Proxy(() => onRun(), {});

describe("Dawn's ticks", async () => {
  const gpu = await testGpu(); // creating a device installs the spacing

  it("are told apart from other callbacks", () => {
    expect(isDawnTick(fakeTick(() => {}), [])).toBe(true);
    expect(isDawnTick(fakeTick(() => {}), [1])).toBe(false); // Dawn passes none
    expect(isDawnTick(() => {}, [])).toBe(false);
    expect(isDawnTick(function named() {}, [])).toBe(false);
    expect(isDawnTick(Math.max.bind(null), [])).toBe(false); // "bound max"
    expect(isDawnTick(Math.max, [])).toBe(false);
  });

  it("run at once while no wait is in progress, and after a short sleep in a long one", async () => {
    const order: string[] = [];
    await new Promise<void>((done) => {
      setImmediate(fakeTick(() => order.push("tick")));
      setImmediate(() => (order.push("immediate"), done()));
    });
    expect(order).toEqual(["tick", "immediate"]);

    let release!: () => void;
    const waiting = waitForGpu(new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 20)); // now the wait is old: 20 ms, so a tick sleeps MAX_SLEEP_MS first
    const scheduled = performance.now();
    let tickAt = 0;
    await new Promise<void>((r) => setImmediate(fakeTick(() => ((tickAt = performance.now()), r()))));
    expect(tickAt - scheduled).toBeGreaterThanOrEqual(MAX_SLEEP_MS * 0.9);
    expect(tickAt - scheduled).toBeLessThan(MAX_SLEEP_MS + 50);
    release();
    await waiting;
  });

  it("come a few per millisecond at most while a read waits on long GPU work, not a hundred", async () => {
    const a = gpu.tensor(new Float32Array(384 * 384).fill(1), [384, 384]);
    const b = gpu.tensor(new Float32Array(384 * 384).fill(1), [384, 384]);
    const original = globalThis.setImmediate;
    let ticks = 0;
    globalThis.setImmediate = Object.assign((callback: () => void, ...args: unknown[]) => {
      if (isDawnTick(callback, args)) ticks++;
      return original(callback, ...(args as []));
    }, original) as typeof setImmediate;
    try {
      const start = performance.now();
      const c = matmulNaive(a, b);
      for (let i = 0; i < 3; i++) matmulNaive(a, b, { out: c });
      const values = await c.read();
      const ms = performance.now() - start;
      expect(values[0]).toBe(384);
      expect(ms).toBeGreaterThan(20); // long enough for the spacing to matter
      // Spinning, Dawn ticks ~140 times a millisecond here (62,066 in a 443 ms read); sleeping,
      // back to back only in the first 2 ms, then at most 8 ticks per doubling of the wait, then
      // one per 2 ms.
      expect(ticks).toBeLessThan(10 * ms);
    } finally {
      globalThis.setImmediate = original;
    }
  });
});

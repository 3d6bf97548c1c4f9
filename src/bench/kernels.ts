/**
 * The kernel benchmark: every case of cases.ts, every version of each, timed back to back in
 * one run, each figure set against the measured limits of the device (a roofline).
 *
 * For each case: the inputs are made (several copies when they are small, so that the runs
 * rotate through more memory than any cache holds); each version runs once, which compiles its
 * pipelines, records which kernels it launches and times that run on the GPU (a version so
 * slow that the time budget affords nothing more keeps it as its one sample); the runtime's own
 * call runs once too, and the version whose launches it repeats is the one its rule picks; then
 * each version is timed (timing.ts). A version that refuses the shape (matvec takes at most 8
 * rows) or fails is reported with its error and the others go on.
 *
 * Nothing is timed unchecked: the output of each version's first run is compared with the
 * kernel's float64 reference (check.ts, case_checks.ts: a seeded sample of the output at model
 * sizes, first and last rows always, within the error bounds the tests use). A version whose
 * output is off is reported "wrong" with its worst element, is not timed, and is never the
 * runtime's pick; every result that ran carries its check.
 */
import type { DType } from "../tensor/dtype.js";
import { ShapeError } from "../tensor/errors.js";
import type { Gpu, LaunchRecord } from "../tensor/gpu.js";
import type { KernelCase } from "./cases.js";
import { describeCheck, type OutputCheck } from "./check.js";
import type { DeviceLimits } from "./limits.js";
import { summarize, type Summary } from "./stats.js";
import { timeGpu, timeOnce, type TimingMethod, type TimingOptions } from "./timing.js";

export interface KernelResult {
  op: string;
  model: string;
  phase: string;
  what: string;
  shape: string;
  /** Storage dtype of the weights and KV-cache. */
  dtype: DType;
  version: string;
  /** The runtime's rule picks this version here (null: a kernel with one version). */
  picked: boolean | null;
  /** When the runtime's own call failed here (so no version is marked picked), why. */
  runtimeError: string | null;
  flops: number;
  bytes: number;
  /** FLOPs per byte. */
  intensity: number;
  /**
   * "wrong": its output is not the reference's (see `check`), so it was not timed; "refused":
   * the version does not take this shape (matvec beyond 8 rows) or this device (a feature it
   * needs is missing); "failed": it, the GPU or the check of its output threw.
   */
  status: "ok" | "wrong" | "refused" | "failed";
  /** Its first run's output against the float64 reference (null when it did not run). */
  check: OutputCheck | null;
  /** Milliseconds per run (null when the version could not run or was wrong). */
  time: Summary | null;
  runsPerSample: number;
  method: TimingMethod | null;
  gflops: number;
  gbps: number;
  /** Which ceiling binds at this intensity. */
  bound: "memory" | "compute";
  /** Achieved rate over that ceiling (GB/s over the bandwidth, or GFLOP/s over the FMA rate). */
  fraction: number;
  error: string | null;
}

export interface KernelBenchOptions {
  cases: KernelCase[];
  dtype: DType;
  limits: DeviceLimits;
  quick?: boolean;
  /** Names that must all match a case (its op, model, phase or part), or name its versions. */
  only?: readonly string[];
  /** Overrides of the timing defaults. */
  timing?: TimingOptions;
  /** Told about each result as it comes. */
  onResult?: (result: KernelResult) => void;
}

/** Input copies fill at least this much memory, when small: more than the caches of any GPU hold. */
const ROTATION_BYTES = 128 * 2 ** 20;
const MAX_COPIES = 8;

/** Cases and versions that `only` selects (all when it is empty). */
export function selectCases(cases: KernelCase[], only: readonly string[] = []): { kase: KernelCase; versions: string[] }[] {
  const names = only.map((n) => n.toLowerCase());
  const selected: { kase: KernelCase; versions: string[] }[] = [];
  for (const kase of cases) {
    // The op and phase match exactly, the model by part of its name, the part by a word of it (gate_proj in mlp.gate_proj).
    const words = kase.what.toLowerCase().split(/[\s,()]+/).flatMap((w) => [w, ...w.split(".")]);
    const matchesCase = (n: string) => n === kase.op.toLowerCase() || n === kase.phase || kase.model.toLowerCase().includes(n) || words.includes(n);
    const versionNames = names.filter((n) => kase.versionNames.includes(n));
    const matches = names.every((n) => versionNames.includes(n) || matchesCase(n));
    if (!matches) continue;
    selected.push({ kase, versions: versionNames.length > 0 ? kase.versionNames.filter((v) => versionNames.includes(v)) : kase.versionNames });
  }
  return selected;
}

/** The roofline: which ceiling binds a kernel of this intensity, and what fraction of it was reached. */
export function roofline(flops: number, bytes: number, seconds: number, limits: Pick<DeviceLimits, "bandwidthGBps" | "computeGFlops">) {
  const gflops = flops / seconds / 1e9;
  const gbps = bytes / seconds / 1e9;
  const ridge = limits.computeGFlops / limits.bandwidthGBps; // FLOPs per byte where the ceilings meet
  const bound: "memory" | "compute" = flops / bytes < ridge ? "memory" : "compute";
  const fraction = bound === "memory" ? gbps / limits.bandwidthGBps : gflops / limits.computeGFlops;
  return { gflops, gbps, bound, fraction };
}

function signature(launches: LaunchRecord[]): string {
  return launches.map((l) => `${l.kernel.name}${JSON.stringify(l.spec)}[${l.workgroups.join(",")}]`).join(" ");
}

/**
 * Runs `record` once: the launches it made (as a string) and its GPU time (null without
 * timestamps); throws what it or the GPU threw.
 */
async function firstRun(gpu: Gpu, record: () => void): Promise<{ launches: string; ms: number | null }> {
  const launches: LaunchRecord[] = [];
  const previous = gpu.launchObserver;
  gpu.launchObserver = (launch) => launches.push(launch);
  let ms: number | null;
  try {
    ms = await timeOnce(gpu, record);
  } finally {
    gpu.launchObserver = previous;
  }
  return { launches: signature(launches), ms };
}

function message(error: unknown): string {
  return (error as Error).message?.split("\n")[0] ?? String(error);
}

function timingOptions(quick: boolean): TimingOptions {
  // No warm-up here: the untimed run that records each version's launches was one.
  return quick
    ? { warmup: 0, repeats: 5, minRepeats: 1, budgetMs: 1500, minSampleMs: 5 }
    : { warmup: 0, repeats: 20, minRepeats: 3, budgetMs: 5000, minSampleMs: 10 };
}

/** One case: every version's first run, the runtime's pick, then each version timed. */
async function measureCase(
  gpu: Gpu,
  kase: KernelCase,
  versions: string[],
  timing: TimingOptions,
  options: KernelBenchOptions,
): Promise<KernelResult[]> {
  const copies = Math.max(1, Math.min(MAX_COPIES, Math.ceil(ROTATION_BYTES / Math.max(kase.inputBytes, 1))));
  const prepared = kase.prepare(gpu, copies);
  try {
    const first = new Map<string, { launches: string; ms: number | null }>();
    const checks = new Map<string, OutputCheck>();
    const errors = new Map<string, { message: string; refused: boolean }>();
    for (const version of versions) {
      if (!kase.supports(gpu, version)) {
        errors.set(version, { message: `${version} needs a feature this device lacks`, refused: true });
        continue;
      }
      let check: (() => Promise<OutputCheck>) | undefined;
      try {
        first.set(
          version,
          await firstRun(gpu, () => {
            check = prepared.recordChecked(version);
          }),
        );
      } catch (error) {
        errors.set(version, { message: message(error), refused: error instanceof ShapeError });
        continue;
      }
      try {
        checks.set(version, await check!());
      } catch (error) {
        errors.set(version, { message: `checking its output: ${message(error)}`, refused: false });
      }
    }
    let runtimeLaunches: string | null = null;
    let runtimeError: string | null = null;
    const runtime = prepared.runtime;
    if (runtime) {
      try {
        runtimeLaunches = (await firstRun(gpu, () => runtime(0))).launches;
      } catch (error) {
        runtimeError = message(error);
      }
    }
    const results: KernelResult[] = [];
    for (const version of versions) {
      const base: CaseFields = {
        op: kase.op,
        model: kase.model,
        phase: kase.phase,
        what: kase.what,
        shape: kase.shape,
        dtype: options.dtype,
        version,
        // A wrong version is never the pick, even where the runtime launches the same kernels.
        picked: runtime ? checks.get(version)?.passed === true && first.get(version)?.launches === runtimeLaunches && runtimeLaunches !== null : null,
        runtimeError,
        flops: kase.cost.flops,
        bytes: kase.cost.bytes,
        intensity: kase.cost.flops / kase.cost.bytes,
      };
      const error = errors.get(version);
      const check = checks.get(version) ?? null;
      let result: KernelResult;
      if (error) {
        result = notTimed(base, error.refused ? "refused" : "failed", null, error.message, options.limits);
      } else if (!check!.passed) {
        result = notTimed(base, "wrong", check, `its output is not the reference's: ${describeCheck(check!)}`, options.limits);
      } else {
        try {
          const t = await timeGpu(gpu, prepared.versions[version], { ...timing, probeMs: first.get(version)?.ms ?? undefined });
          const time = summarize(t.samples);
          const rates = roofline(base.flops, base.bytes, time.median / 1e3, options.limits);
          result = { ...base, status: "ok", check, time, runsPerSample: t.runsPerSample, method: t.method, ...rates, error: null };
        } catch (e) {
          result = notTimed(base, "failed", check, message(e), options.limits);
        }
      }
      results.push(result);
      options.onResult?.(result);
    }
    return results;
  } finally {
    prepared.dispose();
    await gpu.sync().catch(() => undefined);
    gpu.pool.trim();
  }
}

export async function runKernelBench(gpu: Gpu, options: KernelBenchOptions): Promise<KernelResult[]> {
  const quick = options.quick ?? false;
  const timing = { ...timingOptions(quick), ...options.timing };
  // --quick runs the quick selection, unless --only names what to run.
  const candidates = options.cases.filter((c) => !quick || c.quick || (options.only?.length ?? 0) > 0);
  const results: KernelResult[] = [];
  for (const { kase, versions } of selectCases(candidates, options.only)) {
    results.push(...(await measureCase(gpu, kase, versions, timing, options)));
  }
  return results;
}

type CaseFields = Omit<KernelResult, "status" | "check" | "time" | "runsPerSample" | "method" | "gflops" | "gbps" | "bound" | "fraction" | "error">;

function notTimed(base: CaseFields, status: "wrong" | "refused" | "failed", check: OutputCheck | null, error: string, limits: DeviceLimits): KernelResult {
  const bound = base.intensity < limits.computeGFlops / limits.bandwidthGBps ? "memory" : "compute";
  return { ...base, status, check, time: null, runsPerSample: 0, method: null, gflops: 0, gbps: 0, bound, fraction: 0, error };
}

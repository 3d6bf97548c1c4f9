/**
 * Timing GPU work.
 *
 * With the adapter's `timestamp-query` feature the GPU itself writes a timestamp when a compute
 * pass begins and when it ends, so the time measured is the kernels' alone: no submission,
 * no driver, no JavaScript. Dawn rounds timestamps (to 65.5 µs on lavapipe; it does so on
 * purpose, against timing attacks), so one sample is a pass holding enough back-to-back runs
 * to last several milliseconds, and the time per run is the pass's time divided by the runs.
 * Without timestamps, the wall clock is read around a submission of many runs, waiting for
 * the GPU to finish: that includes the cost of the submission itself, amortised over the runs.
 *
 * Every sample first warms up (pipelines compile on first use; memory is touched the first
 * time), and the number of samples adapts to how long one run takes: at most `repeats`, at
 * least `minRepeats`, and no more than fit in `budgetMs`. Each run gets its own index so the
 * caller can rotate through several copies of its inputs: a benchmark that reads the same
 * small buffers every time would measure the cache, not the memory.
 */
import { performance } from "node:perf_hooks";
import { waitForGpu } from "../tensor/dawn_ticks.js";
import type { Gpu } from "../tensor/gpu.js";
import { median } from "./stats.js";

export type TimingMethod = "timestamp" | "wall";

export interface TimingOptions {
  /** Untimed runs first (default 1). */
  warmup?: number;
  /** At most this many samples (default 10). */
  repeats?: number;
  /** At least this many samples, whatever the budget (default 3). */
  minRepeats?: number;
  /** Take no more samples than fit in this many milliseconds (default 2000). */
  budgetMs?: number;
  /** Each sample lasts at least this long: runs are repeated inside it (default 5 ms). */
  minSampleMs?: number;
  /** Default: timestamps when the adapter has them. */
  method?: TimingMethod;
  /**
   * A run already timed on the GPU (timeOnce), warm or not (pipelines compile when recorded,
   * outside the timed pass): it stands in for the probe, and is the only sample when the
   * budget affords no more.
   */
  probeMs?: number;
}

export interface Timing {
  /** Milliseconds per run, one value per sample. */
  samples: number[];
  /** Runs each sample averages over. */
  runsPerSample: number;
  method: TimingMethod;
}

/** The most runs one sample repeats (for work so short that timestamps barely see it). */
const MAX_RUNS_PER_SAMPLE = 256;
/**
 * When even that many runs measure as no time at all (Dawn rounds timestamps, and a pass can
 * fall inside one tick), the samples are taken again with 16 times the runs, up to this many.
 */
const MAX_RUNS_PER_SAMPLE_RETRIED = 16 * 16 * MAX_RUNS_PER_SAMPLE;

export function defaultMethod(gpu: Gpu): TimingMethod {
  return gpu.hasTimestamps ? "timestamp" : "wall";
}

/**
 * Times the GPU work that `record(run)` records (run = 0, 1, 2, ...: which copy of the inputs
 * to use). `record` must only record launches: it must not read results back.
 */
export async function timeGpu(gpu: Gpu, record: (run: number) => void, options: TimingOptions = {}): Promise<Timing> {
  const { warmup = 1, repeats = 10, minRepeats = 3, budgetMs = 2000, minSampleMs = 5 } = options;
  const method = options.method ?? defaultMethod(gpu);
  if (method === "timestamp" && !gpu.hasTimestamps) throw new Error("timeGpu: this adapter has no timestamp-query feature");
  let run = 0;
  const next = () => record(run++);
  for (let i = 0; i < warmup; i++) next();
  await gpu.sync();

  // One run alone says how long a run takes, and so how many fit in a sample and in the budget.
  const probe = options.probeMs ?? (await timeSamples(gpu, method, next, 1, 1))[0];
  const runsPerSample = Math.min(MAX_RUNS_PER_SAMPLE, probe > 0 ? Math.max(1, Math.ceil(minSampleMs / probe)) : MAX_RUNS_PER_SAMPLE);
  const affordable = Math.floor(budgetMs / Math.max(probe * runsPerSample, 1e-3));
  const count = Math.max(minRepeats, Math.min(repeats, affordable));
  if (count <= 1 && runsPerSample === 1 && probe > 0) return { samples: [probe], runsPerSample, method };
  let runs = runsPerSample;
  let samples = await timeSamples(gpu, method, next, count, runs);
  while (median(samples) <= 0 && runs < MAX_RUNS_PER_SAMPLE_RETRIED) {
    runs *= 16;
    samples = await timeSamples(gpu, method, next, count, runs);
  }
  if (!(median(samples) > 0)) throw new Error(`timeGpu: ${runs} runs in a row took no measurable time (under the timer's resolution)`);
  return { samples, runsPerSample: runs, method };
}

/**
 * Records `record` in a pass of its own timed by the GPU and returns its milliseconds, or null
 * without timestamps. Shader compilation happens while recording, before the pass runs, so
 * even a first run is timed without it.
 */
export async function timeOnce(gpu: Gpu, record: () => void): Promise<number | null> {
  if (!gpu.hasTimestamps) {
    record();
    await gpu.sync();
    return null;
  }
  const [ms] = await timestampSamples(gpu, record, 1, 1);
  return ms;
}

async function timeSamples(gpu: Gpu, method: TimingMethod, next: () => void, count: number, runsPerSample: number): Promise<number[]> {
  return method === "timestamp" ? timestampSamples(gpu, next, count, runsPerSample) : wallSamples(gpu, next, count, runsPerSample);
}

/** `count` passes of `runs` runs each, all in one submission, each pass timed by the GPU. */
async function timestampSamples(gpu: Gpu, next: () => void, count: number, runs: number): Promise<number[]> {
  const { device } = gpu;
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 * count, label: "bench timestamps" });
  const bytes = 16 * count;
  const resolved = device.createBuffer({ label: "bench timestamps", size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ label: "bench timestamps readback", size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    try {
      for (let i = 0; i < count; i++) {
        gpu.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        for (let r = 0; r < runs; r++) next();
      }
    } catch (error) {
      // A run that refuses its inputs leaves the timed pass open: close it and send what was
      // recorded before the query set goes, or the next submission would refer to a destroyed one.
      gpu.submit();
      throw error;
    }
    gpu.withEncoder((encoder) => {
      encoder.resolveQuerySet(querySet, 0, 2 * count, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, readback, 0, bytes);
    });
    gpu.submit();
    await waitForGpu(readback.mapAsync(GPUMapMode.READ)); // without spinning a core the GPU may need (dawn_ticks.ts)
    const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    await gpu.sync(); // throws whatever error the GPU reported for the work
    return Array.from({ length: count }, (_, i) => Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6 / runs);
  } finally {
    querySet.destroy();
    resolved.destroy();
    readback.destroy();
  }
}

/** `count` submissions of `runs` runs each, each timed from submission to completion. */
async function wallSamples(gpu: Gpu, next: () => void, count: number, runs: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    for (let r = 0; r < runs; r++) next();
    await gpu.sync();
    samples.push((performance.now() - start) / runs);
  }
  return samples;
}

/**
 * The statistics every benchmark figure is reported with.
 *
 * Timings on a shared machine have a floor (the run undisturbed) and a long tail upwards (the
 * runs something else interrupted), so the figure reported is the median, which ignores the
 * tail, and the spread is the median absolute deviation relative to the median: robust to the
 * odd slow run, and comparable between a 10 µs kernel and a 10 s one.
 */

export interface Summary {
  /** Number of samples. */
  n: number;
  median: number;
  min: number;
  max: number;
  /** Median absolute deviation from the median. */
  mad: number;
  /** mad / median (0 for a single sample). */
  spread: number;
}

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new RangeError("summarize: no samples");
  if (!samples.every(Number.isFinite)) throw new RangeError(`summarize: samples must be finite numbers, got ${samples.join(", ")}`);
  const m = median(samples);
  const mad = median(samples.map((s) => Math.abs(s - m)));
  return {
    n: samples.length,
    median: m,
    min: Math.min(...samples),
    max: Math.max(...samples),
    mad,
    spread: m > 0 ? mad / m : 0,
  };
}

/** Command-line options shared by the commands (each parses its own with node:util's parseArgs). */
import { UsageError } from "./command.js";
import type { GpuOptions } from "../tensor/gpu.js";

/** Options every GPU command takes. */
export const GPU_OPTIONS = {
  adapter: { type: "string" },
  backend: { type: "string" },
} as const;

export const GPU_USAGE = `  --adapter NAME   use the adapter whose name contains NAME (default: $WGSL_VLM_ADAPTER)
  --backend NAME   Dawn backend: vulkan, metal, d3d12, ... (default: $WGSL_VLM_BACKEND)`;

export function gpuOptions(values: { adapter?: string; backend?: string }): GpuOptions {
  return { adapter: values.adapter, backend: values.backend };
}

/** A number option: absent gives `fallback`; anything but a finite number in range is a usage error. */
export function numberOption(value: string | undefined, name: string, fallback: number, check: (n: number) => boolean = () => true): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${name}: '${value}' is not a valid value`);
  return n;
}

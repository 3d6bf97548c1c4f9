/** `wgsl-vlm info`: which GPU we got, what it can do, and the limits that matter to us. */
import { Gpu } from "../tensor/gpu.js";
import { WANTED_FEATURES } from "../tensor/adapter.js";
import type { Command } from "./command.js";
import { parseArgs } from "node:util";
import { GPU_OPTIONS, GPU_USAGE, gpuOptions } from "./options.js";

const KEY_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
] as const;

const command: Command = {
  summary: "print the GPU adapter, its features and key limits",
  usage: `usage: wgsl-vlm info [--json] [--adapter NAME] [--backend NAME]\n${GPU_USAGE}\n  --json           print JSON`,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { ...GPU_OPTIONS, json: { type: "boolean" } } });
    const gpu = await Gpu.create(gpuOptions(values));
    const limits = Object.fromEntries(KEY_LIMITS.map((name) => [name, gpu.limits[name]]));
    const report = {
      adapter: gpu.adapter,
      enabledFeatures: WANTED_FEATURES.filter((f) => gpu.features.has(f)),
      limits,
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      const a = gpu.adapter;
      const lines = [
        `adapter       ${a.description || a.device || "(no description)"}`,
        `vendor        ${a.vendor || "-"}`,
        `architecture  ${a.architecture || "-"}`,
        `device        ${a.device || "-"}`,
        `type          ${a.isFallbackAdapter ? "software (fallback adapter)" : "hardware"}`,
        `features      ${WANTED_FEATURES.map((f) => `${f} ${gpu.features.has(f) ? "yes" : "no"}`).join(", ")}`,
        `all features  ${a.adapterFeatures.join(" ")}`,
        "limits",
        ...KEY_LIMITS.map((name) => `  ${name.padEnd(36)} ${formatLimit(gpu.limits[name])}`),
      ];
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    gpu.destroy();
    return 0;
  },
};

function formatLimit(value: number): string {
  if (value >= 1 << 20) return `${value} (${(value / (1 << 20)).toFixed(value % (1 << 20) ? 1 : 0)} MiB)`;
  return String(value);
}

export default command;

/**
 * Finding a GPU: Dawn's Node bindings, the adapter, and a device with the features and limits
 * the kernels can use. On a Linux machine without a GPU, Mesa's lavapipe (a software Vulkan
 * driver) is the adapter; when nothing is found, the error says what to install.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { create, globals } from "webgpu";
import { NoAdapterError } from "./errors.js";
import { spaceOutDawnTicks } from "./dawn_ticks.js";

export interface GpuOptions {
  /** Adapter to use, by (part of) its name, e.g. "llvmpipe" or "NVIDIA". Default: $WGSL_VLM_ADAPTER. */
  adapter?: string;
  /** Dawn backend: "vulkan", "metal", "d3d12", ... Default: $WGSL_VLM_BACKEND, else Dawn's choice. */
  backend?: string;
  /** Leave optional features off even if the adapter has them (to test fallbacks). */
  disableFeatures?: readonly ("shader-f16" | "subgroups" | "timestamp-query")[];
  /** Fill new activation buffers with NaN so unwritten elements show. Default: $WGSL_VLM_POISON=1. */
  poison?: boolean;
  /** Called when the device is lost unexpectedly. Default: a line on stderr. */
  onDeviceLost?: (message: string) => void;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** Features the adapter offers (we request only those we use). */
  adapterFeatures: string[];
}

/** Optional features the kernels use when present. */
export const WANTED_FEATURES = ["shader-f16", "subgroups", "timestamp-query"] as const;

/**
 * Limits set to whatever the adapter allows (higher sizes, finer alignments): big weights, big
 * workgroup tiles and densely packed views need them.
 */
const RAISED_LIMITS = [
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

let globalsInstalled = false;
const instances = new Map<string, GPU>();

function dawnInstance(flags: string[]): GPU {
  if (!globalsInstalled) {
    // GPUBufferUsage, GPUMapMode, ... are globals in a browser; Dawn provides them for Node.
    Object.assign(globalThis, globals);
    globalsInstalled = true;
  }
  const key = flags.join("\n");
  let gpu = instances.get(key);
  if (!gpu) {
    spaceOutDawnTicks();
    gpu = create(flags);
    instances.set(key, gpu);
  }
  return gpu;
}

export async function requestDevice(options: GpuOptions): Promise<{ device: GPUDevice; summary: AdapterSummary }> {
  const adapterName = options.adapter ?? process.env.WGSL_VLM_ADAPTER;
  const backend = options.backend ?? process.env.WGSL_VLM_BACKEND;
  const flags: string[] = [];
  if (adapterName) flags.push(`adapter=${adapterName}`);
  if (backend) flags.push(`backend=${backend}`);

  let adapter: GPUAdapter | null;
  try {
    adapter = await dawnInstance(flags).requestAdapter({ powerPreference: "high-performance" });
  } catch (error) {
    // Dawn throws (listing the adapters it does see) when a named adapter or backend is absent.
    throw new NoAdapterError(`${(error as Error).message.trim()}\n${noAdapterAdvice()}`);
  }
  if (!adapter) throw new NoAdapterError(`No WebGPU adapter found.\n${noAdapterAdvice()}`);

  const disabled = new Set<string>(options.disableFeatures ?? []);
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f) && !disabled.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];

  const device = await adapter.requestDevice({
    label: "wgsl-vlm",
    requiredFeatures: requiredFeatures as GPUFeatureName[],
    requiredLimits,
  });
  const info = adapter.info;
  return {
    device,
    summary: {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter),
      adapterFeatures: [...adapter.features].sort(),
    },
  };
}

/** What to install, with what this machine has now. */
function noAdapterAdvice(): string {
  const lines = [
    "wgsl-vlm needs a GPU driver Dawn can use (Vulkan on Linux, Metal on macOS, D3D12 on Windows).",
    "On Linux without a GPU, install Mesa's software Vulkan driver (lavapipe), Mesa 24 or newer:",
    "  Debian 12:  sudo bash scripts/install-software-gpu.sh",
    "              (mesa-vulkan-drivers from bookworm-backports; Debian 12's own Mesa 22.3 is too old for Dawn)",
    "  Debian 13, Ubuntu 24.04 and newer:  sudo apt-get install mesa-vulkan-drivers",
  ];
  const found = installedVulkanDrivers();
  if (found) lines.push(`This machine has: ${found}`);
  return lines.join("\n");
}

function installedVulkanDrivers(): string {
  const dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
  const icds = dirs.filter(existsSync).flatMap((d) => readdirSync(d));
  let mesa = "";
  try {
    mesa = execFileSync("dpkg-query", ["-W", "-f", "${Version}", "mesa-vulkan-drivers"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    // not a Debian system, or the package is not installed
  }
  const parts: string[] = [];
  parts.push(icds.length ? `Vulkan drivers ${icds.join(", ")}` : "no Vulkan driver (ICD) files");
  if (mesa) parts.push(`mesa-vulkan-drivers ${mesa}${/^2[0-3]\./.test(mesa) ? " (too old: Dawn needs 24 or newer)" : ""}`);
  return parts.join("; ");
}

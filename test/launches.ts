/** Which kernels a call records: how the fused-kernel tests count dispatches (poison fills left out). */
import type { Gpu } from "../src/tensor/gpu.js";

export function launchesOf<T>(gpu: Gpu, fn: () => T): { result: T; kernels: string[] } {
  const kernels: string[] = [];
  const previous = gpu.launchObserver;
  gpu.launchObserver = (launch) => {
    if (launch.kernel.name !== "poison") kernels.push(launch.kernel.name);
    previous?.(launch);
  };
  try {
    return { result: fn(), kernels };
  } finally {
    gpu.launchObserver = previous;
  }
}

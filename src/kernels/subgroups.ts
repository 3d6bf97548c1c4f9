/**
 * When the subgroup kernels can run, and with how many lanes.
 *
 * The subgroup kernels (matmul v5, v6 and matvec_v2, attention v4) make one workgroup exactly one subgroup, so that
 * subgroupBroadcast and subgroupAdd see every invocation of the workgroup and lane i is
 * invocation i. That needs the `subgroups` feature and a subgroup size the device fixes: when
 * it may choose between sizes (Intel: 8 to 32), a workgroup of 8 could be split in ways the
 * kernel cannot know, so those devices use the versions without subgroups.
 */
import type { Gpu } from "../tensor/gpu.js";

/** The device's one subgroup size, or null without subgroups or when the size may vary. */
export function fixedSubgroupSize(gpu: Gpu): number | null {
  if (!gpu.hasSubgroups) return null;
  const { subgroupMinSize, subgroupMaxSize } = gpu.device.adapterInfo;
  return subgroupMinSize && subgroupMinSize === subgroupMaxSize ? subgroupMinSize : null;
}

/** The subgroup size for a kernel that needs one (`op`, e.g. "matmul v5"); throws naming it when there is none. */
export function requireFixedSubgroupSize(gpu: Gpu, op: string): number {
  const lanes = fixedSubgroupSize(gpu);
  if (lanes === null) {
    throw new Error(
      `${op}: needs the 'subgroups' feature with a fixed subgroup size; ` +
        (gpu.hasSubgroups ? "this device's subgroup size varies" : "this device has no subgroups"),
    );
  }
  return lanes;
}

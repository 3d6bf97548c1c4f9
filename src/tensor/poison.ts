/**
 * Poisoning: with `poison` on (the tests turn it on), every new activation is filled with NaN
 * before any kernel writes it, so an element a kernel forgets to write shows up as NaN in the
 * comparison with its reference instead of passing by luck with a stale value.
 *
 * The pattern 0x7fc07fc0 is a NaN as an f32, and each of its halves (0x7fc0) is a NaN as an
 * f16, so one 32-bit word poisons any float tensor. A new tensor owns its whole buffer, padding
 * included, so whole words are written, the last one too.
 */
import { bytesPerElement } from "./dtype.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "./kernel.js";
import type { Tensor } from "./tensor.js";

const NAN_WORD = 0x7fc07fc0;
const WORKGROUP = 256;

const poisonKernel = defineKernel({
  name: "poison",
  params: { words: "u32" },
  bindings: { x: "read_write" },
  elementType: () => "u32",
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i < params.words) { x[i] = ${NAN_WORD}u; }
}`,
});

/** Records the fill of a freshly allocated tensor with NaN. */
export function poison(t: Tensor): void {
  const words = Math.ceil((t.size * bytesPerElement(t.dtype)) / 4);
  if (words === 0) return;
  t.gpu.record(poisonKernel, { params: { words }, tensors: { x: t }, workgroups: flatGrid(Math.ceil(words / WORKGROUP)) });
}

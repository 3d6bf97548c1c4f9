/**
 * The one-workgroup-per-row kernels (the norms, softmax): T threads share a row of `cols`
 * elements, each striding over it (thread t reads elements t, t + T, ...: coalesced), and
 * combine what they found with a workgroup reduction (reduce.ts).
 */
import { FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";

/** Threads per row: enough to touch a short row once, at most 256; a power of two for the tree. */
export function threadsPerRow(cols: number): number {
  return Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(cols))));
}

/**
 * WGSL: `const T` and the entry point of a row kernel with params `rows` and `cols`: workgroup
 * `row` takes elements base .. base + cols - 1 of the bindings, and `body` follows (with `lid`,
 * the thread). The declarations `body` uses (reductions, helpers) go before this.
 */
export function rowKernelWgsl(threads: number, body: string): string {
  return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
const T = ${threads}u;

@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = flat_workgroup(wid, nwg);
  if (row >= params.rows) { return; } // the whole workgroup leaves together: the reductions' barriers need it
  let cols = params.cols;
  let base = row * cols;
${body}
}`;
}

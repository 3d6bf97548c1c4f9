/**
 * What the one-workgroup-per-row kernels share (the norms, softmax): how many threads a row
 * gets, and the tree reduction across them in workgroup memory.
 */

/** Threads per row: enough to touch a short row once, at most 256; a power of two for the tree. */
export function threadsPerRow(cols: number): number {
  return Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(cols))));
}

/**
 * WGSL: `fn name(lid, v) -> type` combines every thread's v into one value that every thread
 * receives: each writes its value to workgroup memory, then in log2(T) steps the lower half
 * combines in the upper half's values. The caller defines `const T` (threads, a power of two)
 * and calls it in uniform control flow; `combine(a, b)` is a WGSL expression.
 */
export function workgroupReduceWgsl(name: string, type: string, combine: (a: string, b: string) => string): string {
  const partial = `${name}_partial`;
  return /* wgsl */ `
var<workgroup> ${partial}: array<${type}, T>;
fn ${name}(lid: u32, v: ${type}) -> ${type} {
  ${partial}[lid] = v;
  workgroupBarrier();
  for (var stride = T / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { ${partial}[lid] = ${combine(`${partial}[lid]`, `${partial}[lid + stride]`)}; }
    workgroupBarrier();
  }
  let total = ${partial}[0];
  workgroupBarrier(); // every thread has read the total before the memory is reused
  return total;
}`;
}

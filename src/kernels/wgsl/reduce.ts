/**
 * Workgroup reductions: every thread holds a value, and every thread gets the combination of
 * all of them. The one-workgroup-per-row kernels (norms, softmax, argmax, the sampler, the
 * chunks of split-K attention) reduce this way.
 */

/**
 * WGSL: `fn name(lid, v) -> type` combines every thread's v into one value that every thread
 * receives: each writes its value to workgroup memory, then in log2(T) steps the lower half
 * combines in the upper half's values (a tree). The caller defines `const T` (threads, a power
 * of two) and calls it in uniform control flow; `combine(a, b)` is a WGSL expression, which
 * must be associative (the tree pairs values in its own order) and, where the result must not
 * depend on which thread saw which value, commutative too.
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

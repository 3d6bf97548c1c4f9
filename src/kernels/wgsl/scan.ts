/**
 * Workgroup scans: every thread holds a value and gets the combination of its own and all those
 * before it (a prefix scan) or after it (a suffix scan), in thread order. The sampler finds
 * radix-select bins and each thread's share of a cumulative sum this way.
 *
 * Hillis–Steele: in step s every thread combines in the running value of the thread 2^s
 * places away, so after log2(T) steps each holds its whole prefix (or suffix). That is
 * T·log2(T) combines, more than a work-efficient scan, but in log2(T) barrier-separated steps
 * that every thread takes part in, which is what a workgroup of 256 wants.
 */

export interface ScanOptions {
  /** WGSL type of the values. */
  type: string;
  /** WGSL expression combining two values, the lower thread's first; associative. */
  combine: (earlier: string, later: string) => string;
  /** WGSL expression of the value that changes nothing (0 for a sum). */
  identity: string;
  direction: "prefix" | "suffix";
}

/**
 * WGSL, for a caller that defines `const T` (threads, a power of two), all to be called in
 * uniform control flow:
 * - `fn name(lid, v) -> type`: the inclusive scan, thread lid's value;
 * - `fn name_exclusive(lid) -> type`: after it, the combination of the threads strictly before
 *   lid (prefix) or strictly after it (suffix), the identity where there are none;
 * - `fn name_total() -> type`: after it, the combination of every thread's value.
 * The results stay readable until the next call of `name`.
 */
export function workgroupScanWgsl(name: string, { type, combine, identity, direction }: ScanOptions): string {
  const values = `${name}_values`;
  const prefix = direction === "prefix";
  const step = prefix
    ? `if (lid >= offset) { x = ${combine(`${values}[lid - offset]`, "x")}; }`
    : `if (lid + offset < T) { x = ${combine("x", `${values}[lid + offset]`)}; }`;
  const neighbour = prefix ? `select(${identity}, ${values}[max(lid, 1u) - 1u], lid > 0u)` : `select(${identity}, ${values}[min(lid + 1u, T - 1u)], lid + 1u < T)`;
  return /* wgsl */ `
var<workgroup> ${values}: array<${type}, T>;
fn ${name}(lid: u32, v: ${type}) -> ${type} {
  ${values}[lid] = v;
  workgroupBarrier();
  for (var offset = 1u; offset < T; offset *= 2u) {
    var x = ${values}[lid];
    ${step}
    workgroupBarrier();
    ${values}[lid] = x;
    workgroupBarrier();
  }
  return ${values}[lid];
}
fn ${name}_exclusive(lid: u32) -> ${type} {
  return ${neighbour};
}
fn ${name}_total() -> ${type} {
  return ${values}[${prefix ? "T - 1u" : "0u"}];
}`;
}

/**
 * How a WGSL kernel is declared and launched.
 *
 * A kernel file states its uniform parameters and its storage bindings once; the declarations
 * at the top of the shader are generated from that, so the WGSL body and the TypeScript call
 * cannot disagree on binding numbers or parameter order. Binding 0 is the parameter struct
 * `params`; bindings 1.. are the tensors, in the order listed, each an `array<T>` whose element
 * type comes from the tensor's dtype (a kernel may widen it to vec2/vec4). For each binding `x`
 * the prelude also declares `alias x_t = <scalar type>` so the body can convert on store.
 *
 * Everything else that changes the shader (dtypes, tile sizes, workgroup size) is a
 * specialization: one pipeline is compiled per distinct specialization and cached.
 */
import type { DType } from "./dtype.js";
import { ShapeError } from "./errors.js";

export type ParamType = "u32" | "i32" | "f32";
export type Access = "read" | "read_write";
export type SpecValue = string | number | boolean;

export interface KernelDefinition<
  P extends Record<string, ParamType>,
  B extends Record<string, Access>,
  S extends Record<string, SpecValue>,
> {
  /** Short name, used in labels and error messages. */
  name: string;
  /** Uniform parameters, in struct order. */
  params: P;
  /** Storage bindings, in binding order (starting at 1). */
  bindings: B;
  /** The shader body for one specialization (declarations come from `params`/`bindings`). */
  wgsl: (spec: S & { types: Record<keyof B, DType> }) => string;
  /** Element type of a binding when it is not the plain dtype (e.g. `vec4<f32>`). */
  elementType?: (binding: keyof B & string, dtype: DType, spec: NoInfer<S>) => string;
  /**
   * Read bindings of which a launch reads only a few rows, picked by id or position (an
   * embedding table, the rope table): the benchmarks do not count them as read in full.
   */
  gathers?: readonly (keyof B & string)[];
}

export interface Kernel<P extends Record<string, ParamType>, B extends Record<string, Access>, S extends Record<string, SpecValue>>
  extends KernelDefinition<P, B, S> {
  readonly paramNames: readonly string[];
  readonly bindingNames: readonly (keyof B & string)[];
  /** Size of the packed parameter struct in bytes (a multiple of 16, as uniform buffers need). */
  readonly paramBytes: number;
  pack(values: Record<keyof P, number>): Uint8Array;
  source(spec: S, types: Record<keyof B, DType>): string;
}

export type AnyKernel = Kernel<Record<string, ParamType>, Record<string, Access>, Record<string, SpecValue>>;

export function defineKernel<
  P extends Record<string, ParamType>,
  B extends Record<string, Access>,
  S extends Record<string, SpecValue> = Record<string, never>,
>(definition: KernelDefinition<P, B, S>): Kernel<P, B, S> {
  const paramNames = Object.keys(definition.params);
  const bindingNames = Object.keys(definition.bindings) as (keyof B & string)[];
  const paramBytes = Math.max(16, Math.ceil((paramNames.length * 4) / 16) * 16);

  function pack(values: Record<keyof P, number>): Uint8Array {
    const bytes = new Uint8Array(paramBytes);
    const view = new DataView(bytes.buffer);
    paramNames.forEach((name, i) => {
      const value = values[name as keyof P];
      const type = definition.params[name];
      if (typeof value !== "number" || Number.isNaN(value) && type !== "f32") {
        throw new ShapeError(`${definition.name}: parameter ${name} is ${value}`);
      }
      if (type === "f32") view.setFloat32(i * 4, value, true);
      else if (type === "i32") view.setInt32(i * 4, value, true);
      else {
        if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
          throw new ShapeError(`${definition.name}: parameter ${name} = ${value} is not a u32`);
        }
        view.setUint32(i * 4, value, true);
      }
    });
    return bytes;
  }

  function source(spec: S, types: Record<keyof B, DType>): string {
    const usesF16 = Object.values(types).includes("f16") || spec.f16 === true;
    const lines: string[] = [];
    if (usesF16) lines.push("enable f16;");
    if (spec.subgroups === true) lines.push("enable subgroups;");
    if (paramNames.length > 0) {
      lines.push(`struct Params {\n${paramNames.map((n) => `  ${n}: ${definition.params[n]},`).join("\n")}\n}`);
      lines.push("@group(0) @binding(0) var<uniform> params: Params;");
    }
    bindingNames.forEach((name, i) => {
      const dtype = types[name];
      const element = definition.elementType?.(name, dtype, spec) ?? dtype;
      lines.push(`@group(0) @binding(${i + 1}) var<storage, ${definition.bindings[name]}> ${name}: array<${element}>;`);
      lines.push(`alias ${name}_t = ${dtype};`);
    });
    return `${lines.join("\n")}\n${definition.wgsl({ ...spec, types })}`;
  }

  return { ...definition, paramNames, bindingNames, paramBytes, pack, source };
}

/**
 * A workgroup grid covering `count` workgroups: WebGPU allows at most 65535 per dimension,
 * so large launches spill into y. Kernels recover the flat index with `flatWorkgroup(wid, nwg)`.
 */
export function flatGrid(count: number, maxPerDimension = 65535): [number, number, number] {
  if (count <= maxPerDimension) return [Math.max(count, 1), 1, 1];
  const y = Math.ceil(count / maxPerDimension);
  return [Math.ceil(count / y), y, 1];
}

/** WGSL helper matching `flatGrid`: the flat workgroup index. */
export const FLAT_WORKGROUP_WGSL = /* wgsl */ `
fn flat_workgroup(wid: vec3u, nwg: vec3u) -> u32 { return wid.x + wid.y * nwg.x; }`;

export function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

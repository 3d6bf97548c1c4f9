/** The errors the runtime throws, so callers (and tests) can tell a bad argument from a broken GPU. */

/** An argument that no kernel can run on: wrong shape, dtype or size. Thrown before any GPU work. */
export class ShapeError extends Error {
  override name = "ShapeError";
}

/** WebGPU reported a validation, out-of-memory or internal error for work we recorded. */
export class GpuError extends Error {
  override name = "GpuError";
}

/** The GPU device is gone (driver reset, destroyed, out of memory): nothing more can run on it. */
export class DeviceLostError extends Error {
  override name = "DeviceLostError";
}

/** No WebGPU adapter could be found or created. */
export class NoAdapterError extends Error {
  override name = "NoAdapterError";
}

export function shapeString(shape: readonly number[]): string {
  return shape.length === 0 ? "scalar" : shape.join("x");
}

export function check(condition: unknown, message: () => string): asserts condition {
  if (!condition) throw new ShapeError(message());
}

/**
 * The errors generate() and complete() throw for the caller's side of a generation. The others
 * they can throw are the image module's ImageError (an image file that cannot be read or
 * decoded) and the runtime's DeviceLostError and GpuError (src/tensor/errors.ts).
 */

/**
 * A request this model cannot take: a field of the wrong type or out of range, an unknown
 * field, or a prompt that does not fit. `field` names it as the request spells it
 * ("maxNewTokens", "messages[1].content", "images[0]"); the message says what it accepts.
 * Thrown before anything is allocated or queued.
 */
export class RequestError extends Error {
  override name = "RequestError";

  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/**
 * A stream from generate() that stopped being read while another request waited for the
 * model: after `abandonAfterMs` it was cancelled (its turn and its GPU memory given back), and
 * every later next() on it throws this.
 */
export class AbandonedStreamError extends Error {
  override name = "AbandonedStreamError";
}

/** A value as an error message shows it: short, and never itself a source of errors. */
export function describeValue(value: unknown): string {
  if (typeof value === "string") return value.length > 40 ? `${JSON.stringify(value.slice(0, 40))}...` : JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return value.toString();
  if (typeof value === "function") return "a function";
  if (value === null || typeof value !== "object") return String(value);
  if (Array.isArray(value)) {
    const short = value.length <= 8 && value.every((v) => typeof v === "number");
    return short ? `[${value.join(", ")}]` : `an array of ${value.length}`;
  }
  const type = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return typeof type === "string" && type !== "Object" ? `a ${type}` : "an object";
}

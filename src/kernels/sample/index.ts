/**
 * Sampling the next token, on the GPU: what it computes (reference.ts), how the kernel finds it
 * without sorting (kernel.ts, radix_select.ts, fixed_point.ts) and its random numbers (../random.ts).
 */
export { sampleToken, type SampleTokenOptions } from "./kernel.js";
export type { SampleOptions } from "./options.js";
export { uniform } from "../random.js";
export { drawReference, processLogitsReference, sampleProbabilitiesReference, sampleReference, type SampleReferenceOptions } from "./reference.js";

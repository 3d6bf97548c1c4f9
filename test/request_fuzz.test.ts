/**
 * Thousands of random and boundary requests thrown at complete() on the bundled shapes model:
 * each must either give a well-formed result or throw one of the documented errors (a
 * RequestError naming the field, or an ImageError for image bytes or a path that cannot be
 * decoded), within a time bound, never a TypeError from deep inside and never a hang. Afterwards
 * the model must answer a greedy question exactly as before, with no GPU memory left behind.
 *
 * The arbitraries make mostly requests that validation refuses at once; the few that pass
 * generate at most a few tokens (now and then up to the context, for a huge maxNewTokens).
 * Seeded: WGSL_VLM_SEED replays a failure (fast-check prints the seed and the request).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RequestError } from "../src/generate/errors.js";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import type { GenerateRequest, GenerateResult } from "../src/generate/request.js";
import { ImageError } from "../src/image/decode.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { testGpu } from "./helpers.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");
const PICTURE = join(MODEL, "example.png");
const SEED = Number(process.env.WGSL_VLM_SEED ?? 20250);
const RUNS = 3000;
/** The most one call may take: the longest a passing request can generate (to the context) is about 1 s on lavapipe. */
const CALL_LIMIT_MS = 15_000;
const VOCAB = 460;
const CONTEXT = 128;
const IMAGE_TOKEN = 458;
const QUESTION: GenerateRequest = { messages: [{ role: "user", content: "What colour is the circle?", images: [PICTURE] }] };

const anything = fc.anything({
  maxDepth: 2,
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withObjectString: true,
  withSparseArray: true,
  withTypedArray: true,
});

/** A request field: mostly absent or valid, sometimes a boundary value, now and then anything at all. */
function field(valid: fc.Arbitrary<unknown>, boundary: readonly unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant(undefined) },
    { weight: 10, arbitrary: valid },
    { weight: 1, arbitrary: fc.constantFrom(...boundary) },
    { weight: 1, arbitrary: anything },
  );
}

describe("random requests", async () => {
  const gpu = await testGpu();
  let model: VisionLanguageModel;
  let tensors: Tensor[];
  let pngBytes: Uint8Array;
  beforeAll(async () => {
    model = await loadModel(MODEL, { gpu, dtype: "f32" });
    pngBytes = await readFile(PICTURE);
    const disposed = gpu.empty([3, 72, 72]);
    disposed.dispose();
    tensors = [gpu.tensor(new Float32Array(3 * 72 * 72).fill(0.5), [3, 72, 72]), gpu.empty([3, 8, 8]), gpu.empty([3, 72, 72], "u32"), disposed];
  });
  afterAll(() => {
    for (const t of tensors ?? []) t.dispose();
    model?.dispose();
  });

  it(`either succeed or throw a documented error, promptly, and leave the model as it was (seed ${SEED})`, async () => {
    const before = await model.complete(QUESTION);
    // Beyond the image features it keeps (at most imageCacheBytes), nothing is left behind.
    const held = () => gpu.memory().liveBytes - model.cachedImageBytes;
    await model.idle();
    const liveBefore = held();
    const pixels = (shape: number[], fill: number) => ({ data: new Float32Array(3 * 72 * 72).fill(fill), shape });
    const image = fc.oneof(
      { weight: 8, arbitrary: fc.constant<unknown>(PICTURE) },
      { weight: 1, arbitrary: fc.constant(pngBytes) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
      { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
      { weight: 1, arbitrary: fc.constantFrom(...tensors) },
      { weight: 1, arbitrary: fc.constantFrom(pixels([3, 72, 72], 0.1), pixels([3, 72, 72], 1e30), pixels([3, 72, 72], NaN), pixels([3, 64, 64], 0), pixels([72, 72, 3], 0)) },
      { weight: 1, arbitrary: fc.constantFrom(42, null, "", { data: [1, 2, 3], shape: [3, 72, 72] }, { shape: [3, 72, 72] }, join(MODEL, "missing.png"), MODEL) },
      { weight: 1, arbitrary: anything },
    );
    const images = fc.array(image, { maxLength: 2 });
    const text = fc.oneof(
      fc.constantFrom("USER: <image>\nIs there a diamond? ASSISTANT:", "USER: How many shapes are there? ASSISTANT:", "", "<image>", "<image><image>"),
      fc.string({ maxLength: 30 }),
      fc.string({ maxLength: 12, unit: "binary" }),
    );
    const message = fc.record(
      { role: fc.constantFrom("user", "assistant", "system"), content: text, images },
      { requiredKeys: ["role", "content"] },
    );
    const messages = fc.oneof(
      { weight: 8, arbitrary: fc.array(message, { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.array(fc.record({ role: anything, content: anything, images: anything, imgs: anything }, { requiredKeys: [] }), { maxLength: 2 }) },
      { weight: 1, arbitrary: anything },
    );
    const promptIds = fc.oneof(
      { weight: 6, arbitrary: fc.array(fc.integer({ min: 0, max: VOCAB - 1 }), { minLength: 1, maxLength: 20 }) },
      { weight: 2, arbitrary: fc.array(fc.oneof(fc.integer({ min: -2, max: VOCAB + 2 }), fc.double(), fc.constant(IMAGE_TOKEN)), { maxLength: 6 }) },
      { weight: 1, arbitrary: fc.constantFrom([], new Array(CONTEXT).fill(1), new Array(CONTEXT - 1).fill(1), [IMAGE_TOKEN], "1 2 3") },
      { weight: 1, arbitrary: anything },
    );
    const promptForm = fc.oneof(
      { weight: 6, arbitrary: fc.record({ messages }) },
      { weight: 6, arbitrary: fc.record({ prompt: fc.oneof({ weight: 9, arbitrary: text }, { weight: 1, arbitrary: anything }) }) },
      { weight: 4, arbitrary: fc.record({ promptIds }) },
      { weight: 1, arbitrary: fc.record({ prompt: text, promptIds }) },
      { weight: 1, arbitrary: fc.constant({}) },
    );
    const signal = fc.constantFrom("fresh", "aborted").map((kind) => {
      const controller = new AbortController();
      if (kind === "aborted") controller.abort();
      return controller.signal;
    });
    const options = fc.record(
      {
        images: field(images, ["picture", [PICTURE, PICTURE, PICTURE]]),
        // Rarely absent (256, cut to the context) or huge: each such request may generate to the context.
        maxNewTokens: fc.oneof(
          { weight: 12, arbitrary: fc.integer({ min: 1, max: 3 }) },
          { weight: 1, arbitrary: fc.constantFrom(undefined, 1e9, Number.MAX_SAFE_INTEGER) },
          { weight: 2, arbitrary: fc.constantFrom(0, -1, 1.5, NaN, Infinity, "3", null, 2 ** 53) },
          { weight: 1, arbitrary: anything },
        ),
        temperature: field(fc.oneof(fc.constantFrom(0, 0.7, 1), fc.double({ min: 0, max: 5, noNaN: true })), [-1, -0, NaN, Infinity, 1e-45, 1e-38, 1e300]),
        topK: field(fc.integer({ min: 0, max: VOCAB + 10 }), [-1, 1.5, 2 ** 53, NaN]),
        topP: field(fc.double({ min: 0.01, max: 1, noNaN: true }), [0, -0, 1 + 1e-9, NaN, Number.MIN_VALUE]),
        repetitionPenalty: field(fc.double({ min: 0.5, max: 2, noNaN: true }), [0, -1, NaN, Infinity, 1e-300, 1e300]),
        seed: field(fc.integer({ min: 0, max: 2 ** 32 - 1 }), [-1, 2 ** 32, 0.5, NaN]),
        stop: field(fc.array(fc.oneof(fc.string({ minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: VOCAB - 1 })), { maxLength: 3 }), ["yellow", [""], [null], [-1], [VOCAB], [1.5]]),
        signal: field(signal, [{}, "abort", null]),
        padToSquare: field(fc.boolean(), ["yes", 1, null]),
      },
      { requiredKeys: [] },
    );
    const unknownFields = fc.oneof(
      { weight: 15, arbitrary: fc.constant({}) },
      { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 12 }), anything, { maxKeys: 2 }) },
    );
    const request = fc.oneof(
      { weight: 12, arbitrary: fc.tuple(promptForm, options, unknownFields).map(([form, rest, extra]) => ({ ...form, ...rest, ...extra })) },
      { weight: 1, arbitrary: anything },
    );

    let succeeded = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const outcome = await within(model.complete(r as GenerateRequest), CALL_LIMIT_MS);
        if ("error" in outcome) {
          if (!(outcome.error instanceof RequestError || outcome.error instanceof ImageError)) throw outcome.error;
          refused++;
        } else {
          checkResult(outcome.result, r as GenerateRequest);
          succeeded++;
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    // The arbitraries must exercise both sides, or the property says little.
    expect(succeeded).toBeGreaterThan(RUNS / 20);
    expect(refused).toBeGreaterThan(RUNS / 2);
    await model.idle();
    expect(held()).toBe(liveBefore);
    expect((await model.complete(QUESTION)).text).toBe(before.text);
  });
});

/** The call's result or error, or a failure if it takes longer than `ms`. */
async function within(call: Promise<GenerateResult>, ms: number): Promise<{ result: GenerateResult } | { error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`complete() did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([call.then((result) => ({ result }), (error: unknown) => ({ error })), limit]);
  } finally {
    clearTimeout(timer);
  }
}

function checkResult(result: GenerateResult, request: GenerateRequest): void {
  expect(typeof result.text).toBe("string");
  expect(["stop", "length", "abort"]).toContain(result.finishReason);
  for (const token of result.tokens) expect(Number.isInteger(token) && token >= 0 && token < VOCAB, `token ${token}`).toBe(true);
  expect(result.usage.completionTokens).toBe(result.tokens.length);
  expect(result.usage.promptTokens + result.tokens.length).toBeLessThanOrEqual(CONTEXT + 1);
  if (typeof request.maxNewTokens === "number") expect(result.tokens.length).toBeLessThanOrEqual(request.maxNewTokens);
  if (request.signal?.aborted) expect(result).toMatchObject({ finishReason: "abort", tokens: [] });
}

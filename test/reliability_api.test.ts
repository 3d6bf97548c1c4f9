/**
 * No caller of the model API can hang it, crash it from inside, make it allocate without
 * bound, or leave it broken after a device loss:
 *
 * - an onChunk that throws, a stream read once and dropped, return() and throw() on a stream:
 *   the model's turn is always given back (a dropped stream after abandonAfterMs, once
 *   another request waits; a stream read steadily never);
 * - every malformed request field: a RequestError naming the field, before anything queues;
 * - a huge maxNewTokens: cut to the context, with no allocation to match it;
 * - the device destroyed mid-generation: DeviceLostError then, at once ever after, and a fresh
 *   load works.
 *
 * The timing tests have their own timeouts: without the fixes they hang instead of failing.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import generateCommand from "../src/cli/generate.js";
import { AbandonedStreamError, RequestError } from "../src/generate/errors.js";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import type { GenerateChunk, GenerateRequest } from "../src/generate/request.js";
import { DeviceLostError } from "../src/tensor/errors.js";
import { Gpu } from "../src/tensor/gpu.js";
import { runCommand, testGpu } from "./helpers.js";
import { writeRandomCheckpoint } from "./random_checkpoint.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");
const PICTURE = join(MODEL, "example.png");
/** A long answer (about 25 tokens) and a short one, about the bundled example picture. */
const DESCRIBE: GenerateRequest = { messages: [{ role: "user", content: "Describe the image.", images: [PICTURE] }] };
const QUESTION: GenerateRequest = { messages: [{ role: "user", content: "What colour is the circle?", images: [PICTURE] }] };
/** Short, so the abandoned-stream tests are quick; the steady reader pauses a quarter of it. */
const ABANDON_MS = 400;
/** Long, so a test that passes only by the abandon rule would time out instead. */
const PATIENT_MS = 60_000;
const HANG_TIMEOUT_MS = 20_000;

async function collect(stream: AsyncGenerator<GenerateChunk>, pause = 0): Promise<number[]> {
  const tokens: number[] = [];
  for (;;) {
    const next = await stream.next();
    if (next.done) return tokens;
    tokens.push(next.value.token);
    if (pause) await sleep(pause);
  }
}

describe("the model's turn is always given back", async () => {
  const gpu = await testGpu();
  let quick: VisionLanguageModel;
  let patient: VisionLanguageModel;
  let described: number[];
  let answer: string;

  beforeAll(async () => {
    quick = await loadModel(MODEL, { gpu, dtype: "f32", abandonAfterMs: ABANDON_MS });
    patient = await loadModel(MODEL, { gpu, dtype: "f32", abandonAfterMs: PATIENT_MS });
    described = (await quick.complete(DESCRIBE)).tokens;
    answer = (await quick.complete(QUESTION)).text;
    expect(described.length).toBeGreaterThan(10);
    expect(answer).toBe("yellow");
  });
  afterAll(() => {
    quick?.dispose();
    patient?.dispose();
  });

  it(
    "when onChunk throws: the error comes out of complete() and the next call runs",
    async () => {
      const boom = new Error("boom");
      await expect(patient.complete(DESCRIBE, () => { throw boom; })).rejects.toBe(boom);
      expect((await patient.complete(QUESTION)).text).toBe(answer);
    },
    HANG_TIMEOUT_MS,
  );

  it(
    "at once on return() or throw(), even while the stream is still queued",
    async () => {
      const returned = patient.generate(DESCRIBE);
      expect((await returned.next()).done).toBe(false);
      expect(await returned.return(undefined as never)).toEqual({ done: true, value: undefined });
      expect(await returned.next()).toEqual({ done: true, value: undefined });
      expect((await patient.complete(QUESTION)).text).toBe(answer);

      const thrown = patient.generate(DESCRIBE);
      await thrown.next();
      const reason = new Error("enough");
      await expect(thrown.throw(reason)).rejects.toBe(reason);
      expect((await patient.complete(QUESTION)).text).toBe(answer);

      const holder = patient.generate(DESCRIBE);
      await holder.next();
      const queued = patient.generate(QUESTION);
      const pending = queued.next(); // waits for holder's turn
      await queued.return(undefined as never);
      await holder.return(undefined as never);
      expect(await pending).toEqual({ done: true, value: undefined }); // ended without generating
      expect((await patient.complete(QUESTION)).text).toBe(answer);
    },
    HANG_TIMEOUT_MS,
  );

  it(
    "by a stream read once and dropped, once another request has waited abandonAfterMs for it; the stream then says so",
    async () => {
      // What the model keeps between generations (image features, up to imageCacheBytes) aside.
      const held = () => gpu.memory().liveBytes - quick.cachedImageBytes - patient.cachedImageBytes;
      await Promise.all([quick.idle(), patient.idle()]); // the last test's decode batch may still hold its step
      const liveBefore = held();
      const dropped = quick.generate(DESCRIBE);
      expect((await dropped.next()).done).toBe(false);
      expect(held()).toBeGreaterThan(liveBefore); // it holds its token history and more
      const start = performance.now();
      expect((await quick.complete(QUESTION)).text).toBe(answer);
      expect(performance.now() - start).toBeGreaterThanOrEqual(ABANDON_MS - 5);
      for (let i = 0; i < 2; i++) await expect(dropped.next()).rejects.toThrow(AbandonedStreamError);
      await Promise.all([quick.idle(), patient.idle()]); // a decode batch lets go of its step once its last sequence is done
      expect(held()).toBe(liveBefore);
      expect((await dropped.return(undefined as never)).done).toBe(true);
    },
    HANG_TIMEOUT_MS,
  );

  it(
    "but never by a stream that is read steadily, however slowly, while another request waits",
    async () => {
      const steady = quick.generate(DESCRIBE);
      const first = await steady.next();
      expect(first.done).toBe(false);
      const waiting = quick.complete(QUESTION);
      const rest = await collect(steady, ABANDON_MS / 4);
      expect([(first.value as GenerateChunk).token, ...rest]).toEqual(described);
      expect((await waiting).text).toBe(answer);
    },
    HANG_TIMEOUT_MS,
  );

  it(
    "and a stream nobody reads holds nothing: a bad request fails at once even while the model is busy",
    async () => {
      const neverRead = patient.generate(DESCRIBE);
      const holder = patient.generate(DESCRIBE);
      await holder.next();
      await expect(patient.complete({ ...QUESTION, topP: 0 })).rejects.toThrow(RequestError);
      await holder.return(undefined as never);
      expect((await patient.complete(QUESTION)).text).toBe(answer);
      await neverRead.return(undefined as never);
    },
    HANG_TIMEOUT_MS,
  );
});

describe("a malformed request is a RequestError naming its field", async () => {
  const gpu = await testGpu();
  let model: VisionLanguageModel;
  let other: Gpu;
  beforeAll(async () => {
    model = await loadModel(MODEL, { gpu, dtype: "f32" });
    other = await Gpu.create();
  });
  afterAll(() => {
    model?.dispose();
    other?.destroy();
  });

  const text = { prompt: "USER: Is there a square? ASSISTANT:" };
  const pixels = (shape: number[], length = 3 * 72 * 72) => ({ data: new Float32Array(length), shape });
  // [what, request, field, what the message must say]
  const cases: [string, () => unknown, string, RegExp][] = [
    ["not an object", () => "hello", "request", /must be an object with messages, prompt/],
    ["null", () => null, "request", /must be an object/],
    ["an array", () => [text], "request", /must be an object/],
    ["a typo'd field", () => ({ ...text, max_new_tokens: 5 }), "max_new_tokens", /did you mean maxNewTokens\?.*the fields are messages, prompt, promptIds/],
    ["a field named like an Object method", () => ({ ...text, constructor: 1 }), "constructor", /is not a field of request/],
    ["a field named __proto__", () => JSON.parse('{"prompt": "x", "__proto__": {"maxNewTokens": 1}}'), "__proto__", /is not a field of request/],
    ["no prompt", () => ({ maxNewTokens: 3 }), "messages/prompt/promptIds", /exactly one .*none was given/],
    ["two prompts", () => ({ ...text, promptIds: [1] }), "messages/prompt/promptIds", /not prompt and promptIds/],
    ["a prompt that is not text", () => ({ prompt: 42 }), "prompt", /must be a string, not 42/],
    ["messages not an array", () => ({ messages: { role: "user", content: "x" } }), "messages", /must be an array/],
    ["a message that is null", () => ({ messages: [null] }), "messages[0]", /must be an object/],
    ["messages with a hole", () => ({ messages: [, { role: "user", content: "x" }] }), "messages[0]", /must be an object .* not undefined/],
    ["an unknown role", () => ({ messages: [{ role: "robot", content: "x" }] }), "messages[0].role", /system, user, assistant, not "robot"/],
    ["content that is not text", () => ({ messages: [{ role: "user", content: ["x"] }] }), "messages[0].content", /must be a string/],
    ["an unknown message field", () => ({ messages: [{ role: "user", content: "x", image: PICTURE }] }), "messages[0].image", /not a field of messages\[0\]/],
    ["an image that is a number", () => ({ ...text, images: [42] }), "images[0]", /a file path, the file's bytes .* not 42/],
    ["images not an array", () => ({ ...text, images: PICTURE }), "images", /must be an array of images/],
    ["an empty image path", () => ({ ...text, images: [""] }), "images[0]", /must not be empty/],
    ["pixel values of the wrong shape", () => ({ ...text, images: [pixels([3, 64, 64])] }), "images[0].shape", /\[3, 72, 72\].* not \[3, 64, 64\]/],
    ["pixel values of the wrong length", () => ({ ...text, images: [pixels([3, 72, 72], 5)] }), "images[0].data", /Float32Array of 15552/],
    ["a message's image that is null", () => ({ messages: [{ role: "user", content: "x", images: [null] }] }), "messages[0].images[0]", /not null/],
    ["a tensor of the wrong shape", () => ({ ...text, images: [gpu.empty([3, 8, 8])] }), "images[0]", /f32 or f16 \[3, 72, 72\]/],
    ["a disposed tensor", () => ({ ...text, images: [disposed(gpu.empty([3, 72, 72]))] }), "images[0]", /was disposed/],
    ["a tensor on another device", () => ({ ...text, images: [other.empty([3, 72, 72])] }), "images[0]", /on another device/],
    ["more images than tags", () => ({ ...text, images: [PICTURE] }), "images", /0 image tokens but 1 image was given/],
    ["empty promptIds", () => ({ promptIds: [] }), "promptIds", /at least one/],
    ["promptIds with a hole", () => ({ promptIds: [1, , 3] }), "promptIds[1]", /not undefined/],
    ["a prompt text far too long to fit", () => ({ prompt: "x".repeat(128 * 64 + 1) }), "prompt", /8193 characters; .* at most 8192/],
    ["promptIds not an array", () => ({ promptIds: "1 2 3" }), "promptIds", /must be an array of token ids/],
    ["a negative prompt id", () => ({ promptIds: [1, -1] }), "promptIds[1]", /integers in \[0, 460\)/],
    ["a fractional prompt id", () => ({ promptIds: [1.5] }), "promptIds[0]", /not 1.5/],
    ["a prompt id past the vocabulary", () => ({ promptIds: [460] }), "promptIds[0]", /not 460/],
    ["a prompt longer than the context", () => ({ promptIds: new Array(128).fill(1) }), "promptIds", /128 ids, but the context holds 128/],
    ["a prompt that fills the context once its image is in", () => ({ promptIds: [...new Array(119).fill(1), 458], images: [PICTURE] }), "promptIds", /takes 128 positions \(120 tokens, 1 image of 9 positions each\)/],
    ["maxNewTokens 0", () => ({ ...text, maxNewTokens: 0 }), "maxNewTokens", /integer >= 1/],
    ["maxNewTokens as text", () => ({ ...text, maxNewTokens: "5" }), "maxNewTokens", /not "5"/],
    ["maxNewTokens Infinity", () => ({ ...text, maxNewTokens: Infinity }), "maxNewTokens", /not Infinity/],
    ["a negative temperature", () => ({ ...text, temperature: -1 }), "temperature", /finite number >= 0/],
    ["a temperature too small to invert", () => ({ ...text, temperature: 1e-45 }), "temperature", /too small/],
    ["a NaN temperature", () => ({ ...text, temperature: NaN }), "temperature", /got NaN/],
    ["a fractional topK", () => ({ ...text, topK: 1.5 }), "topK", /integer >= 0/],
    ["topP 0", () => ({ ...text, topP: 0 }), "topP", /in \(0, 1\]/],
    ["topP as text", () => ({ ...text, topP: "0.9" }), "topP", /must be a number/],
    ["repetitionPenalty 0", () => ({ ...text, repetitionPenalty: 0 }), "repetitionPenalty", /> 0/],
    ["a negative seed", () => ({ ...text, seed: -1 }), "seed", /\[0, 2\^32\)/],
    ["a seed of 2^32", () => ({ ...text, seed: 2 ** 32 }), "seed", /\[0, 2\^32\)/],
    ["stop as one string", () => ({ ...text, stop: "yellow" }), "stop", /must be an array of non-empty strings and token ids/],
    ["a null stop", () => ({ ...text, stop: [null] }), "stop[0]", /not null/],
    ["an empty stop string", () => ({ ...text, stop: [""] }), "stop[0]", /non-empty string/],
    ["a negative stop id", () => ({ ...text, stop: [-1] }), "stop[0]", /integer in \[0, 460\)/],
    ["a fractional stop id", () => ({ ...text, stop: [1.5] }), "stop[0]", /not 1.5/],
    ["a stop id past the vocabulary", () => ({ ...text, stop: [460] }), "stop[0]", /not 460/],
    ["a signal that is not an AbortSignal", () => ({ ...text, signal: {} }), "signal", /must be an AbortSignal, not an object/],
    ["padToSquare as text", () => ({ ...text, padToSquare: "yes" }), "padToSquare", /true or false/],
  ];

  for (const [what, request, field, message] of cases) {
    it(what, async () => {
      const error = await model.complete(request() as GenerateRequest).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RequestError);
      expect((error as RequestError).field).toBe(field);
      expect((error as RequestError).message).toMatch(message);
    });
  }

  it("an abandonAfterMs out of range (a load option)", async () => {
    for (const abandonAfterMs of [-1, NaN, 2 ** 31]) {
      await expect(loadModel(MODEL, { gpu, dtype: "f32", abandonAfterMs })).rejects.toThrow(/abandonAfterMs must be a number of milliseconds in \[0, 2147483647\]/);
    }
  });

  it("an onChunk that is not a function", async () => {
    await expect(model.complete(text, 42 as never)).rejects.toThrow(/onChunk: must be a function, not 42/);
  });

  it("a request with every field valid still runs", async () => {
    const result = await model.complete({
      messages: [{ role: "system", content: "" }, { role: "user", content: "Is there a square?", images: [PICTURE] }],
      images: [],
      maxNewTokens: 4,
      temperature: 0.5,
      topK: 5,
      topP: 0.9,
      repetitionPenalty: 1.1,
      seed: 3,
      stop: ["zzz", 459],
      signal: new AbortController().signal,
      padToSquare: true,
    });
    expect(result.tokens.length).toBeGreaterThan(0);
  });
});

function disposed<T extends { dispose(): void }>(t: T): T {
  t.dispose();
  return t;
}

describe("a huge maxNewTokens", async () => {
  const gpu = await testGpu();
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-reliability-"));
    const config = { architectures: ["LlamaForCausalLM"], model_type: "llama", vocab_size: 300, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64 };
    await writeRandomCheckpoint(join(dir, "text"), config, { seed: 3, scale: 0.5 });
  });

  it("is cut to what the context holds, with no allocation to match it", async () => {
    const model = await loadModel(join(dir, "text"), { gpu, dtype: "f32", contextLength: 32 });
    try {
      const ids = [1, 17, 99];
      for (const maxNewTokens of [1e9, Number.MAX_SAFE_INTEGER]) {
        gpu.pool.resetPeak();
        const before = gpu.memory().peakBytes;
        const result = await model.complete({ promptIds: ids, maxNewTokens });
        expect(result.finishReason).toBe("length");
        expect(result.tokens).toHaveLength(32 - ids.length + 1);
        expect(gpu.memory().peakBytes - before).toBeLessThan(1 << 20);
      }
    } finally {
      model.dispose();
    }
  });

  it("from the command line (--max-new-tokens) too", async () => {
    const argv = ["--model", MODEL, "--image", PICTURE, "--prompt", "Describe the image.", "--max-new-tokens", "1000000000", "--json", "--quiet", "--dtype", "f32"];
    const { code, stdout } = await runCommand(generateCommand, argv);
    expect(code).toBe(0);
    expect(JSON.parse(stdout).finishReason).toBe("stop");
  });
});

describe("a device lost mid-generation", () => {
  for (const how of ["device.destroy()", "Gpu.destroy()"] as const) {
    it(
      `(${how}) fails the generation and every later call at once with DeviceLostError; loading again works`,
      async () => {
        const reports: string[] = [];
        const model = await loadModel(MODEL, { dtype: "f32", onDeviceLost: (message) => reports.push(message) });
        const before = await model.complete(QUESTION);
        let chunks = 0;
        const destroy = () => (how === "device.destroy()" ? model.gpu.device.destroy() : model.gpu.destroy());
        const failure = await model.complete(DESCRIBE, () => ++chunks === 1 && destroy()).catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(DeviceLostError);
        expect(chunks).toBe(1);
        const start = performance.now();
        await expect(model.complete(QUESTION)).rejects.toThrow(DeviceLostError);
        await expect(model.generate(QUESTION).next()).rejects.toThrow(DeviceLostError);
        expect(performance.now() - start).toBeLessThan(1000);
        model.dispose();
        // Only a loss the runtime did not cause itself is reported.
        expect(reports).toHaveLength(how === "device.destroy()" ? 1 : 0);

        const again = await loadModel(MODEL, { dtype: "f32" });
        try {
          expect((await again.complete(QUESTION)).text).toBe(before.text);
        } finally {
          again.dispose();
        }
      },
      HANG_TIMEOUT_MS,
    );
  }
});

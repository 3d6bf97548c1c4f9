import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import type { GenerateRequest } from "../src/generate/request.js";
import { CacheContents, commonPrefix, ImageFeatureCache, promptKeys } from "../src/generate/prompt_cache.js";
import { TurnQueue } from "../src/generate/turns.js";
import { randomLlavaFolder } from "./random_checkpoint.js";
import { testGpu } from "./helpers.js";

/** Requests of different lengths, sampling modes and stops: each must decode as it does alone. */
const REQUESTS: GenerateRequest[] = [
  { prompt: "Hello there", maxNewTokens: 9, stop: [] },
  { prompt: "Tell me about the sea", maxNewTokens: 14, temperature: 0.8, seed: 42, stop: [] },
  { messages: [{ role: "user", content: "What is two plus two?" }], maxNewTokens: 5, stop: [] },
  { prompt: "Once", maxNewTokens: 11, temperature: 1.2, topK: 20, seed: 7, repetitionPenalty: 1.3, stop: [] },
];

describe("continuous batching", async () => {
  const gpu = await testGpu();
  let dir: string;
  let photo: string;
  let single: VisionLanguageModel;
  let batched: VisionLanguageModel;
  let alone: number[][];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-batch-"));
    await randomLlavaFolder(join(dir, "model"));
    photo = join(dir, "photo.png");
    await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 20, g: 130, b: 90 } } }).png().toFile(photo);
    single = await loadModel(join(dir, "model"), { gpu, dtype: "f32", contextLength: 96 });
    batched = await loadModel(join(dir, "model"), { gpu, dtype: "f32", contextLength: 96, maxBatch: 3 });
    alone = [];
    for (const request of REQUESTS) alone.push((await single.complete(request)).tokens);
  });
  afterAll(() => {
    single?.dispose();
    batched?.dispose();
  });

  it("decodes concurrent generations together, each exactly as it decodes alone", async () => {
    expect(batched.loadReport.caches).toBe(3);
    expect(batched.loadReport.cacheBytes).toBe(3 * single.loadReport.cacheBytes);
    // Four requests on three caches: the fourth waits for a cache, joins when one frees.
    const started: number[] = [];
    const results = await Promise.all(REQUESTS.map((r, i) => batched.complete(r, () => started.includes(i) || started.push(i))));
    expect(results.map((r) => r.tokens)).toEqual(alone);
    expect(started.indexOf(3)).toBe(3);
  });

  it("lets a sequence join and leave while the others decode", async () => {
    const long = batched.complete({ ...REQUESTS[1], maxNewTokens: 30 });
    // A second one starts when the first has streamed a few tokens, and ends well before it.
    let count = 0;
    const later = new Promise<number[]>((resolve, reject) => {
      void batched.complete({ ...REQUESTS[1], maxNewTokens: 30 }, () => {
        if (++count === 3) batched.complete(REQUESTS[0]).then((r) => resolve(r.tokens), reject);
      });
    });
    const [full, joined] = await Promise.all([long, later]);
    expect(joined).toEqual(alone[0]);
    expect(full.tokens.slice(0, 14)).toEqual(alone[1]);
  });

  it("keeps serving after a stream is ended early", async () => {
    const stream = batched.generate({ ...REQUESTS[1], maxNewTokens: 30 });
    const other = batched.complete(REQUESTS[2]);
    await stream.next();
    await stream.return(undefined as never);
    expect((await other).tokens).toEqual(alone[2]);
    expect((await batched.complete(REQUESTS[0])).tokens).toEqual(alone[0]);
  });

  it("makes no bind group while the batch does not change", async () => {
    const made: number[] = [];
    let before = gpu.bindGroupsCreated;
    await batched.complete({ promptIds: [1, 2, 3, 4, 5], maxNewTokens: 16, stop: [] }, () => {
      made.push(gpu.bindGroupsCreated - before);
      before = gpu.bindGroupsCreated;
    });
    expect(made).toHaveLength(16);
    // Token 0 comes with the prefill and the capture of the decode step; then none.
    expect(made.slice(1)).toEqual(Array(15).fill(0));
  });

  it("reuses the KV-cache for a chat's next turn, and gives what a fresh cache gives", async () => {
    const first: GenerateRequest = { messages: [{ role: "user", content: "Describe the picture.", images: [photo] }], maxNewTokens: 6, stop: [] };
    const fresh = await loadModel(join(dir, "model"), { gpu, dtype: "f32", contextLength: 96 });
    try {
      const reply = await single.complete(first);
      const follow: GenerateRequest = {
        messages: [...first.messages!, { role: "assistant", content: reply.text }, { role: "user", content: "And the colour?" }],
        maxNewTokens: 6,
        stop: [],
      };
      const encode = vi.spyOn(single.llava, "encodeImage");
      const again = await single.complete(follow);
      // Everything up to the reply is reused: the image is not encoded again.
      expect(encode).not.toHaveBeenCalled();
      encode.mockRestore();
      expect(again.usage.cachedPromptTokens).toBeGreaterThan(reply.usage.promptTokens - 2);
      const recomputed = await fresh.complete(follow);
      expect(recomputed.usage.cachedPromptTokens).toBe(0);
      expect(again.tokens).toEqual(recomputed.tokens);
      // The same prompt again reuses all but its last position.
      expect((await single.complete(follow)).usage.cachedPromptTokens).toBe(again.usage.promptTokens - 1);
    } finally {
      fresh.dispose();
    }
  });

  it("forgets what a cache held once something else writes it", async () => {
    const request: GenerateRequest = { prompt: "Hello there", maxNewTokens: 3, stop: [] };
    await single.complete(request);
    expect((await single.complete(request)).usage.cachedPromptTokens).toBeGreaterThan(0);
    const { llava } = single;
    llava.cache.length = 0;
    gpu.scope(() => void llava.decoder.forward(llava.embedPrompt([1, 2, 3], []), llava.cache));
    const after = await single.complete(request);
    expect(after.usage.cachedPromptTokens).toBe(0);
    expect(after.tokens).toEqual((await single.complete(request)).tokens);
  });

  it("encodes an image once for two prompts that differ before it", async () => {
    const other = join(dir, "other.png");
    await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: 250, g: 250, b: 0 } } }).png().toFile(other);
    const encode = vi.spyOn(single.llava, "encodeImage");
    try {
      await single.complete({ prompt: "A <image> here", images: [other], maxNewTokens: 2 });
      await single.complete({ prompt: "B <image> there", images: [other], maxNewTokens: 2 });
      expect(encode).toHaveBeenCalledTimes(1);
    } finally {
      encode.mockRestore();
    }
  });

  it("refuses a KV-cache budget that holds no sequence, and bad batch options, before loading", async () => {
    await expect(loadModel(join(dir, "model"), { gpu, dtype: "f32", contextLength: 96, kvCacheBytes: 1000 })).rejects.toThrow(
      /kvCacheBytes 1000 cannot hold one sequence's KV-cache: \d+ bytes at contextLength 96/,
    );
    await expect(loadModel(join(dir, "model"), { gpu, maxBatch: 0 })).rejects.toThrow(/maxBatch 0 must be an integer in \[1, 256\]/);
    await expect(loadModel(join(dir, "model"), { gpu, kvCacheBytes: -1 })).rejects.toThrow(/kvCacheBytes -1 must be a whole number/);
    await expect(loadModel(join(dir, "model"), { gpu, imageCacheBytes: 1.5 })).rejects.toThrow(/imageCacheBytes must be a whole number of bytes >= 0/);
    const two = await loadModel(join(dir, "model"), { gpu, dtype: "f32", contextLength: 96, maxBatch: 4, kvCacheBytes: 2.5 * single.loadReport.cacheBytes });
    expect(two.loadReport.caches).toBe(2);
    two.dispose();
  });
});

describe("prompt cache bookkeeping", () => {
  it("finds common prefixes and expands images into their rows", () => {
    expect(commonPrefix([1, 2, 3], [1, 2, 4])).toBe(2);
    expect(commonPrefix([], [1])).toBe(0);
    expect(promptKeys([1, 9, 2], 9, [3], ["abc"])).toEqual([1, "image abc 0", "image abc 1", "image abc 2", 2]);
    // Images of different sizes (tiled) take different numbers of positions.
    expect(promptKeys([9, 1, 9], 9, [1, 2], ["a", "b"])).toEqual(["image a 0", 1, "image b 0", "image b 1"]);
  });

  it("picks the free cache holding most of a prompt, else the one used least recently", () => {
    const caches = [0, 1, 2].map(() => ({ writes: 0 })) as never[];
    const contents = new CacheContents(caches);
    contents.set(0, [1, 2, 3]);
    contents.set(1, [1, 2, 3, 4, 5]);
    contents.set(2, [7]);
    expect(contents.choose([0, 1, 2], [1, 2, 3, 4, 5, 6])).toBe(1);
    expect(contents.reusable(1, [1, 2, 3, 4, 5])).toBe(4); // the last position always runs
    expect(contents.choose([0, 2], [1, 2, 9])).toBe(0);
    expect(contents.choose([0, 1, 2], [8, 8])).toBe(0); // no match: least recently used
  });

  it("keeps image features within its budget, least recently used out first", async () => {
    const gpu = await testGpu();
    const cache = new ImageFeatureCache(3 * 256); // three 256-byte buffers
    const make = () => gpu.keep(gpu.tensor(new Float32Array(64), [8, 8]));
    const [a, b, c, d] = [make(), make(), make(), make()];
    cache.put("a", a);
    cache.put("b", b);
    cache.put("c", c);
    cache.get("a")!.dispose(); // a is now the most recent
    cache.put("d", d);
    expect(cache.get("b")).toBeNull();
    for (const key of ["a", "c", "d"]) cache.get(key)!.dispose();
    // The cache's views keep the features alive after their makers let go.
    for (const t of [a, b, c, d]) t.dispose();
    const kept = cache.get("a")!;
    expect(Array.from(await kept.read())).toEqual(Array(64).fill(0));
    kept.dispose();
    cache.dispose();
    expect(cache.size).toBe(0);
  });

  it("hands out several slots, the chosen free one first", async () => {
    const queue = new TurnQueue(2);
    const taker = { onWaiter: vi.fn() };
    const first = await queue.take(taker, (free) => free[1]);
    expect(first.slot).toBe(1);
    const second = await queue.take(taker);
    expect(second.slot).toBe(0);
    const third = queue.take(taker);
    expect(taker.onWaiter).toHaveBeenCalledTimes(2);
    first.giveBack();
    expect((await third).slot).toBe(1);
  });
});

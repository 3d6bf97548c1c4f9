import { cp, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import generateCommand from "../src/cli/generate.js";
import { argmax } from "../src/kernels/argmax.js";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import type { GenerateChunk } from "../src/generate/request.js";
import { RANDOM_LLAVA, randomLlavaFolder, writeRandomCheckpoint } from "./random_checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { expectClose, runCommand, testGpu } from "./helpers.js";

const FIXTURES = join(import.meta.dirname, "fixtures");

async function collect(stream: AsyncGenerator<GenerateChunk>): Promise<GenerateChunk[]> {
  const chunks: GenerateChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

describe("generation", async () => {
  const gpu = await testGpu();
  let dir: string;
  let model: VisionLanguageModel;
  let photo: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-generate-"));
    await randomLlavaFolder(join(dir, "model"));
    photo = join(dir, "photo.png");
    await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toFile(photo);
    model = await loadModel(join(dir, "model"), { gpu, dtype: "f32" });
  });
  afterAll(() => model?.dispose());

  for (const folder of ["tiny-llava-a", "tiny-llava-b", "text-only-c"]) {
    it(`greedy generate() reproduces transformers' tokens for ${folder}`, async () => {
      const golden = join(FIXTURES, "golden", folder);
      const inputs = await SafetensorsFile.open(join(golden, "inputs.safetensors"));
      const reference = await SafetensorsFile.open(join(golden, "golden.safetensors"));
      const ids = (await inputs.readIntegers("input_ids")).data;
      const expected = (await reference.readIntegers("generated_ids")).data;
      const images = [];
      if (inputs.tensors.has("pixel_values")) {
        const { data, shape } = await inputs.readFloat32("pixel_values");
        images.push({ data, shape: shape.slice(1) as [3, number, number] });
      }
      await inputs.close();
      await reference.close();
      const golden_model = await loadModel(join(golden, "model"), { gpu, dtype: "f32" });
      try {
        const result = await golden_model.complete({ promptIds: ids, images, maxNewTokens: expected.length });
        const eos = expected.indexOf(2); // transformers did not stop at EOS; we do
        expect(result.tokens).toEqual(eos < 0 ? expected : expected.slice(0, eos));
        expect(result.finishReason).toBe(eos < 0 ? "length" : "stop");
      } finally {
        golden_model.dispose();
      }
    });
  }

  it("decodes with the KV-cache exactly as a full recomputation of the sequence", async () => {
    const llava = model.llava;
    const ids = [1, 3148, 1001, 29901, 32000, 13, 5618, 338];
    const image = gpu.tensor(new Float32Array(3 * 32 * 32).map((_, i) => Math.sin(i)), [3, 32, 32]);
    const steps = 6;
    // Step by step: the prompt, then one token at a time through the cache.
    const stepwise: Float32Array[] = [];
    const tokens: number[] = [];
    llava.cache.length = 0;
    let hidden = gpu.scope(() => llava.decoder.forward(llava.embedPrompt(ids, [llava.encodeImage(image)]), llava.cache));
    let row = hidden.dim(0) - 1;
    for (let s = 0; s < steps; s++) {
      const logits = gpu.scope(() => llava.decoder.logits(hidden.reshape([hidden.dim(0), -1])));
      const all = (await logits.read()) as Float32Array;
      const last = all.subarray(row * llava.textConfig.vocabSize, (row + 1) * llava.textConfig.vocabSize);
      stepwise.push(Float32Array.from(last));
      tokens.push(last.indexOf(Math.max(...last)));
      logits.dispose();
      hidden.dispose();
      hidden = gpu.scope(() => llava.decoder.forward(llava.decoder.embed(gpu.tensor([tokens.at(-1)!], [1], "i32")), llava.cache));
      row = 0;
    }
    hidden.dispose();
    // All at once: prompt and generated tokens in one causal pass over a fresh cache.
    llava.cache.length = 0;
    const full = gpu.scope(() =>
      llava.decoder.logits(llava.decoder.forward(llava.embedPrompt([...ids, ...tokens.slice(0, -1)], [llava.encodeImage(image)]), llava.cache)),
    );
    const all = (await full.read()) as Float32Array;
    const V = llava.textConfig.vocabSize;
    const first = llava.mergedLength(ids) - 1;
    for (let s = 0; s < steps; s++) {
      const rowLogits = all.subarray((first + s) * V, (first + s + 1) * V);
      expectClose(stepwise[s], rowLogits, { atol: 1e-4, rtol: 1e-4 }, `step ${s} logits`);
    }
    full.dispose();
    image.dispose();
    // And the GPU argmax agrees with the host one.
    const check = gpu.tensor(stepwise[0], [1, V]);
    expect((await argmax(check).read())[0]).toBe(tokens[0]);
  });


  it("streams text that decodes the tokens, from chat messages with an image file", async () => {
    const chunks = await collect(model.generate({ messages: [{ role: "user", content: "What is this?", images: [photo] }], maxNewTokens: 12 }));
    const result = await model.complete({ messages: [{ role: "user", content: "What is this?" }], images: [photo], maxNewTokens: 12 });
    expect(chunks.map((c) => c.token)).toEqual(result.tokens);
    expect(chunks.map((c) => c.text).join("")).toBe(result.text);
    expect(result.text).toBe(model.tokenizer!.decode(result.tokens));
    expect(result.usage.promptTokens).toBe(model.llava.mergedLength(model.tokenizer!.encode("USER: <image>\nWhat is this?  ASSISTANT:".replace("  ", " "))));
    // The rate counts the tokens after the first (which prefill produced) over the decoding time.
    expect(result.timings.decodeTokensPerSecond).toBeCloseTo(((result.tokens.length - 1) / result.timings.decodeMs) * 1000, 6);
  });

  it("renders messages with the checkpoint's own chat template when it has one, else its family's", async () => {
    expect(model.chatTemplate.source).toBe("fallback: llava-1.5");
    const folder = join(dir, "templated");
    await cp(join(dir, "model"), folder, { recursive: true });
    await writeFile(join(folder, "chat_template.jinja"), "{% for m in messages %}[{{ m.role }}] {% for c in m.content %}{% if c.type == 'image' %}<image>{% else %}{{ c.text }}{% endif %}{% endfor %}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}");
    const templated = await loadModel(folder, { gpu, dtype: "f32" });
    try {
      expect(templated.chatTemplate.source).toBe(join(folder, "chat_template.jinja"));
      const messages = [{ role: "user" as const, content: "What is this?", images: [photo] }];
      const result = await templated.complete({ messages, maxNewTokens: 1 });
      // (As transformers renders templates, with trim_blocks: the newline after a block tag goes.)
      const ids = templated.tokenizer!.encode("[user] <image>What is this?[assistant]");
      expect(result.usage.promptTokens).toBe(templated.llava.mergedLength(ids));
    } finally {
      templated.dispose();
    }
  });

  it("stops at a stop string without ever showing it, and at a stop id", async () => {
    const request = { prompt: "The", maxNewTokens: 40 };
    const free = await model.complete(request);
    const text = free.text;
    const at = Math.floor(text.length / 2);
    const stop = text.slice(at, at + 3);
    const cut = text.indexOf(stop);
    const chunks: string[] = [];
    const stopped = await model.complete({ ...request, stop: [stop] }, (c) => chunks.push(c.text));
    expect(stopped.finishReason).toBe("stop");
    expect(stopped.text).toBe(text.slice(0, cut));
    expect(chunks.join("")).toBe(stopped.text);
    const stopId = free.tokens[5];
    const byId = await model.complete({ ...request, stop: [stopId] });
    expect(byId.tokens).toEqual(free.tokens.slice(0, free.tokens.indexOf(stopId)));
    expect(byId.finishReason).toBe("stop");
  });

  it("aborts cleanly and stays usable", async () => {
    const request = { prompt: "Once", maxNewTokens: 30 };
    const before = await model.complete(request);
    const controller = new AbortController();
    let seen = 0;
    const aborted = await model.complete({ ...request, signal: controller.signal }, () => {
      if (++seen === 3) controller.abort();
    });
    expect(aborted.finishReason).toBe("abort");
    expect(aborted.tokens).toEqual(before.tokens.slice(0, 3));
    expect((await model.complete(request)).tokens).toEqual(before.tokens);
  });

  it("samples reproducibly from a seed", async () => {
    const request = { prompt: "A", maxNewTokens: 16, temperature: 1.3, topK: 40, topP: 0.95, repetitionPenalty: 1.1 };
    const a = await model.complete({ ...request, seed: 1234 });
    const b = await model.complete({ ...request, seed: 1234 });
    const c = await model.complete({ ...request, seed: 99 });
    expect(a.tokens).toEqual(b.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
  });

  it("queues two generations instead of interleaving them", async () => {
    const request = { prompt: "Hi", maxNewTokens: 8 };
    const queuedRequest = { ...request, prompt: "Yo" };
    const alone = await model.complete(request);
    const queuedAlone = await model.complete(queuedRequest);
    const order: string[] = [];
    const [first, second] = await Promise.all([
      model.complete(request, () => order.push("first")),
      model.complete(queuedRequest, () => order.push("second")),
    ]);
    // Greedy, so each queued generation gives what it gives alone: neither saw the other's cache.
    expect(first.tokens).toEqual(alone.tokens);
    expect(second.tokens).toEqual(queuedAlone.tokens);
    expect(order.indexOf("second")).toBe(order.lastIndexOf("first") + 1);
  });

  it("refuses a mismatch between image tags and images", async () => {
    await expect(model.complete({ prompt: "<image> and <image>", images: [photo] })).rejects.toThrow(/2 image tokens but 1 image was given/);
    await expect(model.complete({ prompt: "no tag", images: [photo] })).rejects.toThrow(/0 image tokens but 1 image was given/);
    await expect(model.complete({ prompt: "<image>x", images: [join(dir, "missing.png")] })).rejects.toThrow(/missing\.png/);
  });

  it("refuses a prompt longer than the context before starting, and ends with 'length' when the context fills", async () => {
    const small = await loadModel(join(dir, "model"), { gpu, dtype: "f32", contextLength: 24 });
    try {
      await expect(small.complete({ messages: [{ role: "user", content: "Describe this picture in detail.", images: [photo] }] })).rejects.toThrow(
        /prompt takes \d+ positions .* but the context holds 24/,
      );
      const ids = [1, 450];
      const filled = await small.complete({ promptIds: ids, maxNewTokens: 100, stop: [] });
      expect(filled.finishReason).toBe("length");
      // One token from each free position's logits, and one from the last prompt position's.
      expect(filled.tokens).toHaveLength(24 - ids.length + 1);
    } finally {
      small.dispose();
    }
  });

  it("names a missing weight when loading", async () => {
    const broken = join(dir, "broken");
    await writeRandomCheckpoint(broken, RANDOM_LLAVA, { omit: ["text.layers.1.mlp.up_proj.weight"] });
    await expect(loadModel(broken, { gpu })).rejects.toThrow(/language_model\.model\.layers\.1\.mlp\.up_proj\.weight: missing/);
  });

  it("wgsl-vlm generate prints the result as JSON, the tokens generate() gives for the same message", async () => {
    const argv = ["--model", join(dir, "model"), "--image", photo, "--prompt", "What is it?", "--max-new-tokens", "5", "--json", "--quiet", "--dtype", "f32"];
    const { code, stdout } = await runCommand(generateCommand, argv);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    const direct = await model.complete({ messages: [{ role: "user", content: "What is it?", images: [photo] }], maxNewTokens: 5 });
    expect(result.tokens).toEqual(direct.tokens);
    expect(result.text).toBe(direct.text);
    expect(result.finishReason).toBe("length");
    expect(result.tokens).toHaveLength(5);
  });
});

describe("weights stored in row parts", async () => {
  const gpu = await testGpu();

  it("give the same logits and tokens as whole weights", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-parts-"));
    await randomLlavaFolder(dir);
    const whole = await loadModel(dir, { gpu, dtype: "f32" });
    // 64 KiB parts: the 32002-row embedding table and LM head (8 MB each) become 126 parts of 256 rows.
    const parts = await loadModel(dir, { gpu, dtype: "f32", partBytes: 64 * 1024 });
    try {
      expect(whole.loadReport.splitTensors).toEqual([]);
      expect(parts.loadReport.splitTensors).toEqual(
        expect.arrayContaining(["language_model.model.embed_tokens.weight (126 parts)", "language_model.lm_head.weight (126 parts)"]),
      );
      const request = { messages: [{ role: "user" as const, content: "Hello there" }], maxNewTokens: 8 };
      expect((await parts.complete(request)).tokens).toEqual((await whole.complete(request)).tokens);
      const logits = async (m: VisionLanguageModel) => {
        m.llava.cache.length = 0;
        const out = gpu.scope(() => m.llava.decoder.logits(m.llava.decoder.forward(m.llava.embedPrompt([1, 15043, 3186], []), m.llava.cache)));
        const values = await out.read();
        out.dispose();
        return values;
      };
      expect(Array.from(await logits(parts))).toEqual(Array.from(await logits(whole)));
    } finally {
      whole.dispose();
      parts.dispose();
    }
  });

  it("slice biases to match their layer's parts", async () => {
    const { WeightStore } = await import("../src/models/weights.js");
    const [rows, cols] = [512, 8];
    const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: rows }, (_, i) => Math.cos(i));
    const parts = [0, 256].map((start) => ({ weight: gpu.tensor(w.subarray(start * cols, (start + 256) * cols), [256, cols]), rowStart: start }));
    const split = new WeightStore(new Map([["l.weight", parts], ["l.bias", [{ weight: gpu.tensor(b, [rows]), rowStart: 0 }]]]));
    const single = new WeightStore(new Map([["l.weight", [{ weight: gpu.tensor(w, [rows, cols]), rowStart: 0 }]], ["l.bias", [{ weight: gpu.tensor(b, [rows]), rowStart: 0 }]]]));
    const x = gpu.tensor(Float32Array.from({ length: 3 * cols }, (_, i) => i / 7), [3, cols]);
    expect(Array.from(await split.linear("l").forward(x).read())).toEqual(Array.from(await single.linear("l").forward(x).read()));
    split.dispose();
    single.dispose();
  });
});

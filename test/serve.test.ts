/**
 * The OpenAI-compatible server, driven by the official `openai` client and by plain fetch():
 * answers equal the library's complete() for the same request, streamed and not; usage; many
 * images and turns; every error status; concurrent clients; a client leaving mid-stream.
 *
 * Two models: the bundled shapes model, which really answers questions about its images, and a
 * tiny random LLaVA with LLaMA-2's tokenizer, which never stops on its own before max_tokens,
 * for long streams.
 */
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import type { GenerateRequest } from "../src/generate/request.js";
import { isPrivateAddress } from "../src/serve/images.js";
import { startServer, type RunningServer, type ServeOptions } from "../src/serve/server.js";
import { randomLlavaFolder } from "./random_checkpoint.js";

const SHAPES = join(import.meta.dirname, "..", "weights", "shapes-llava");

describe("wgsl-vlm serve", async () => {
  const shapes = await loadModel(SHAPES, { maxBatch: 8 });
  const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-serve-"));
  await randomLlavaFolder(dir);
  const random = await loadModel(dir, { maxBatch: 8 });
  const png = await readFile(join(SHAPES, "example.png"));
  const example = JSON.parse(await readFile(join(SHAPES, "example.json"), "utf8")) as { questions: { question: string; answer: string }[] };
  const dataUrl = `data:image/png;base64,${png.toString("base64")}`;
  const servers: RunningServer[] = [];

  async function serve(options: Partial<ServeOptions> & { model?: ServeOptions["model"] } = {}): Promise<{ server: RunningServer; client: OpenAI }> {
    const server = await startServer({ model: shapes, modelName: "shapes-llava", port: 0, log: false, ...options });
    servers.push(server);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: options.apiKey ?? "unused", maxRetries: 0 });
    return { server, client };
  }

  let main: { server: RunningServer; client: OpenAI };
  let long: { server: RunningServer; client: OpenAI };
  beforeAll(async () => {
    main = await serve();
    long = await serve({ model: random, modelName: "random" });
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    shapes.dispose();
    random.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  const ask = (question: string): OpenAI.ChatCompletionUserMessageParam => ({
    role: "user",
    content: [
      { type: "image_url", image_url: { url: dataUrl } },
      { type: "text", text: question },
    ],
  });
  const solo = (model: VisionLanguageModel, request: GenerateRequest) => model.complete(request);

  it("answers a chat request as complete() does, counting the image's positions in the usage", async () => {
    const { question, answer } = example.questions[1];
    const reply = await main.client.chat.completions.create({ model: "shapes-llava", messages: [ask(question)], temperature: 0 });
    const expected = await solo(shapes, { messages: [{ role: "user", content: question, images: [png] }] });
    expect(reply.choices[0].message).toMatchObject({ role: "assistant", content: expected.text });
    expect(expected.text).toBe(answer);
    expect(reply.choices[0].finish_reason).toBe("stop");
    expect(reply.object).toBe("chat.completion");
    expect(reply.id).toMatch(/^chatcmpl-/);
    expect(reply.usage).toMatchObject({ prompt_tokens: expected.usage.promptTokens, completion_tokens: expected.usage.completionTokens, total_tokens: expected.usage.promptTokens + expected.usage.completionTokens });
  });

  it("streams the same text in chunks, with the usage last when asked, and ends with [DONE]", async () => {
    const messages = [{ role: "user" as const, content: "Hello there" }];
    const expected = await solo(random, { messages, maxNewTokens: 12 });
    const stream = await long.client.chat.completions.create({ model: "random", messages, max_completion_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    for (const chunk of chunks) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe(expected.text);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(chunks.at(-2)?.choices[0].finish_reason).toBe("length");
    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.at(-1)?.usage).toMatchObject({ prompt_tokens: expected.usage.promptTokens, completion_tokens: 12 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);

    const raw = await fetch(`${long.server.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ messages, max_tokens: 3, temperature: 0, stream: true }) });
    expect(raw.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = (await raw.text()).trim().split("\n\n");
    expect(events.at(-1)).toBe("data: [DONE]");
    expect(events.every((e) => e.startsWith("data: "))).toBe(true);
  });

  it("serves /v1/completions for a raw prompt, whole and streamed, with OpenAI's default of 16 tokens", async () => {
    const expected = await solo(random, { prompt: "Once upon a time", maxNewTokens: 16 });
    const reply = await long.client.completions.create({ model: "random", prompt: "Once upon a time", temperature: 0 });
    expect(reply.object).toBe("text_completion");
    expect(reply.choices[0]).toMatchObject({ text: expected.text, finish_reason: "length" });
    expect(reply.usage?.completion_tokens).toBe(16);
    let text = "";
    for await (const chunk of await long.client.completions.create({ model: "random", prompt: "Once upon a time", temperature: 0, max_tokens: 16, stream: true })) text += chunk.choices[0]?.text ?? "";
    expect(text).toBe(expected.text);
  });

  it("takes several images in one message and across turns, and reuses the cached prefix of a follow-up turn", async () => {
    const [first, second] = [example.questions[1], example.questions[2]];
    const turn1 = [ask(first.question)];
    const reply1 = await main.client.chat.completions.create({ model: "shapes-llava", messages: turn1, temperature: 0 });
    const turn2 = [...turn1, { role: "assistant" as const, content: reply1.choices[0].message.content ?? "" }, ask(second.question)];
    const reply2 = await main.client.chat.completions.create({ model: "shapes-llava", messages: turn2, temperature: 0 });
    const expected = await solo(shapes, {
      messages: [
        { role: "user", content: first.question, images: [png] },
        { role: "assistant", content: first.answer },
        { role: "user", content: second.question, images: [png] },
      ],
    });
    expect(reply2.choices[0].message.content).toBe(expected.text);
    expect(reply2.usage?.prompt_tokens).toBe(expected.usage.promptTokens);
    expect(reply2.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);

    const two = await main.client.chat.completions.create({ model: "shapes-llava", 
      temperature: 0,
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: dataUrl } }, { type: "image_url", image_url: { url: dataUrl } }, { type: "text", text: "How many shapes are there?" }] }],
    });
    const expectedTwo = await solo(shapes, { messages: [{ role: "user", content: "How many shapes are there?", images: [png, png] }] });
    expect(two.choices[0].message.content).toBe(expectedTwo.text);
    expect(two.usage?.prompt_tokens).toBe(expectedTwo.usage.promptTokens);
  });

  it("decodes 8 concurrent clients together, each getting the answer it gets alone", async () => {
    const prompts = ["Hello", "The sky is", "One two three", "Why", "A cat", "Tell me", "In the beginning", "Numbers:"];
    const alone = [];
    for (const p of prompts) alone.push((await solo(random, { messages: [{ role: "user", content: p }], maxNewTokens: 10 })).text);
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, random.load.running)), 1);
    const together = await Promise.all(prompts.map((p) => long.client.chat.completions.create({ model: "random", messages: [{ role: "user", content: p }], max_tokens: 10, temperature: 0 })));
    clearInterval(watch);
    expect(together.map((r) => r.choices[0].message.content)).toEqual(alone);
    expect(most).toBeGreaterThan(1); // they did run at the same time
  });

  it("cancels the generation of a client that disconnects mid-stream, while the others go on", async () => {
    const messages = [{ role: "user" as const, content: "Keep talking" }];
    const expected = await solo(random, { messages, maxNewTokens: 30 });
    const leaving = new AbortController();
    const quitter = (async () => {
      const stream = await long.client.chat.completions.create({ model: "random", messages, max_tokens: 200, temperature: 0, stream: true }, { signal: leaving.signal });
      let n = 0;
      try {
        for await (const _ of stream) {
          if (++n === 3) {
            leaving.abort(); // the connection closes now; chunks already received may still be in hand
            break;
          }
        }
      } catch (error) {
        expect((error as Error).name).toMatch(/Abort/);
      }
      return n;
    })();
    const stayer = long.client.chat.completions.create({ model: "random", messages, max_tokens: 30, temperature: 0 });
    expect(await quitter).toBe(3);
    expect((await stayer).choices[0].message.content).toBe(expected.text);
    await random.idle();
    expect(random.load).toEqual({ running: 0, waiting: 0 });
    const metrics = await (await fetch(`${long.server.url}/metrics`)).text();
    expect(metrics).toMatch(/wgsl_vlm_requests_total\{endpoint="chat",status="499"\} 1/); // the one that left, cancelled
    expect((await fetch(`${long.server.url}/health`)).status).toBe(200);
  });

  describe("errors, as OpenAI shapes them", () => {
    const post = (server: RunningServer, body: string, headers: Record<string, string> = {}) =>
      fetch(`${server.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    const errorOf = async (response: Response) => ((await response.json()) as { error: { message: string; type: string; param: string | null; code: string | null } }).error;
    const failure = async (promise: Promise<unknown>) => {
      try {
        await promise;
      } catch (error) {
        return error as InstanceType<typeof OpenAI.APIError>;
      }
      throw new Error("the request succeeded");
    };

    it("400 for malformed JSON, a missing or wrong field (named), an unknown field, n > 1", async () => {
      const bad = await post(main.server, "{not json");
      expect(bad.status).toBe(400);
      expect((await errorOf(bad)).message).toMatch(/not valid JSON/);
      const cases: [object, string, RegExp][] = [
        [{}, "messages", /non-empty array/],
        [{ messages: [{ role: "robot", content: "hi" }] }, "messages[0].role", /system, developer, user or assistant/],
        [{ messages: [{ role: "user", content: 3 }] }, "messages[0].content", /string or an array/],
        [{ messages: [{ role: "user", content: [{ type: "audio" }] }] }, "messages[0].content[0].type", /"text" or "image_url"/],
        [{ messages: [{ role: "user", content: "hi" }], temperature: 5 }, "temperature", /\[0, 2\]/],
        [{ messages: [{ role: "user", content: "hi" }], max_tokens: 0 }, "max_tokens", />= 1/],
        [{ messages: [{ role: "user", content: "hi" }], stop: ["a", "b", "c", "d", "e"] }, "stop", /up to 4/],
        [{ messages: [{ role: "user", content: "hi" }], n: 2 }, "n", /one choice per request/],
        [{ messages: [{ role: "user", content: "hi" }], logprobs: true }, "logprobs", /not supported/],
        [{ messages: [{ role: "user", content: "hi" }], stream_options: { include_usage: true } }, "stream_options", /only allowed when stream/],
        [{ messages: [{ role: "user", content: "hi" }], frobnicate: 1 }, "frobnicate", /Unrecognized request argument/],
      ];
      for (const [body, param, message] of cases) {
        const error = await failure(main.client.chat.completions.create(body as never));
        expect(error.status, param).toBe(400);
        expect(error.param, param).toBe(param);
        expect(error.message, param).toMatch(message);
      }
    });

    it("400 naming the image part that cannot be read, and for a prompt the context cannot hold", async () => {
      const corrupt = `data:image/png;base64,${png.subarray(0, 40).toString("base64")}`;
      const cases: [string, RegExp][] = [
        [corrupt, /not an image this server can read/],
        ["data:text/plain;base64,aGVsbG8=", /not an image/],
        ["data:image/png,rawbytes", /must be base64/],
        ["https://example.com/cat.png", /--allow-remote-images/],
        ["file:///etc/passwd", /scheme 'file:'/],
      ];
      for (const [url, message] of cases) {
        const error = await failure(main.client.chat.completions.create({ model: "shapes-llava", messages: [{ role: "user", content: [{ type: "text", text: "hi" }, { type: "image_url", image_url: { url } }] }] }));
        expect(error.status, url).toBe(400);
        expect(error.param, url).toBe("messages[0].content[1].image_url.url");
        expect(error.message, url).toMatch(message);
      }
      const tooLong = await failure(long.client.chat.completions.create({ model: "random", messages: [{ role: "user", content: "word ".repeat(400) }] }));
      expect(tooLong.status).toBe(400);
      expect(tooLong.message).toMatch(/context/);
    });

    it("413 for a body over the limit, 404 for another model's name or an unknown route", async () => {
      const { server } = await serve({ bodyLimitBytes: 1000 });
      const big = await post(server, JSON.stringify({ messages: [{ role: "user", content: "x".repeat(2000) }] }));
      expect(big.status).toBe(413);
      expect(await errorOf(big)).toMatchObject({ code: "request_too_large", message: expect.stringMatching(/over the limit of 1000 bytes/) });
      const other = await failure(main.client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }));
      expect(other.status).toBe(404);
      expect(other.code).toBe("model_not_found");
      expect((await fetch(`${main.server.url}/v1/nothing`)).status).toBe(404);
      const models = await main.client.models.list();
      expect(models.data.map((m) => m.id)).toEqual(["shapes-llava"]);
    });

    it("401 without the key or with a wrong one, when the server has one", async () => {
      const { server, client } = await serve({ apiKey: "sesame" });
      const anonymous = await post(server, JSON.stringify({ messages: [{ role: "user", content: "hi" }] }));
      expect(anonymous.status).toBe(401);
      expect((await errorOf(anonymous)).code).toBe("invalid_api_key");
      const wrong = await post(server, JSON.stringify({ messages: [{ role: "user", content: "hi" }] }), { authorization: "Bearer open" });
      expect(wrong.status).toBe(401);
      expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
      // The same routes spelled with escapes are the same routes.
      expect((await fetch(`${server.url}/%6detrics`)).status).toBe(401);
      expect((await fetch(`${server.url}/%761/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(401);
      expect((await fetch(`${server.url}/%761/models`)).status).toBe(401);
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
      const reply = await client.chat.completions.create({ model: "shapes-llava", messages: [ask(example.questions[1].question)], temperature: 0 });
      expect(reply.choices[0].message.content).toBe(example.questions[1].answer);
    });

    it("429 with Retry-After when the queue is full, and 503 while the model loads", async () => {
      const one = await loadModel(dir, { maxBatch: 1 });
      try {
        const { server, client } = await serve({ model: one, modelName: "random", maxQueue: 0 });
        const busy = client.chat.completions.create({ model: "random", messages: [{ role: "user", content: "Keep talking" }], max_tokens: 40, temperature: 0 });
        while (one.load.running === 0) await new Promise((r) => setTimeout(r, 1)); // it holds the only KV-cache
        const refused = await post(server, JSON.stringify({ messages: [{ role: "user", content: "hi" }] }));
        expect(refused.status).toBe(429);
        expect(refused.headers.get("retry-after")).toBe("1");
        expect((await errorOf(refused)).type).toBe("rate_limit_error");
        await busy;
        await server.close();
      } finally {
        one.dispose();
      }

      let finishLoading!: (m: VisionLanguageModel) => void;
      const { server } = await serve({ model: new Promise<VisionLanguageModel>((resolve) => (finishLoading = resolve)) });
      const loading = await fetch(`${server.url}/health`);
      expect(loading.status).toBe(503);
      expect(await loading.json()).toEqual({ status: "loading" });
      expect((await post(server, JSON.stringify({ messages: [{ role: "user", content: "hi" }] }))).status).toBe(503);
      finishLoading(shapes);
      await server.ready;
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
    });
  });

  describe("remote image URLs (--allow-remote-images)", () => {
    let images: Server;
    let base: string;
    beforeAll(async () => {
      images = createServer((request, response) => {
        if (request.url === "/cat.png") return response.end(png);
        if (request.url?.startsWith("/hop")) return response.writeHead(302, { location: `/hop${Number(request.url.slice(4) || 0) + 1}` }).end();
        if (request.url === "/slow") return; // never answers
        response.writeHead(404).end();
      });
      images.listen(0, "127.0.0.1");
      await once(images, "listening");
      const address = images.address() as { port: number };
      base = `http://127.0.0.1:${address.port}`;
    });
    afterAll(() => {
      images.closeAllConnections();
      images.close();
    });
    const withUrl = (url: string) => ({ model: "shapes-llava", messages: [{ role: "user" as const, content: [{ type: "image_url" as const, image_url: { url } }, { type: "text" as const, text: example.questions[1].question }] }], temperature: 0 });

    it("refuses private addresses, and fetches with a time-out, a size limit and few redirects", async () => {
      const { client } = await serve({ remoteImages: { allow: true } });
      const refused = await client.chat.completions.create(withUrl(`${base}/cat.png`)).catch((e: InstanceType<typeof OpenAI.APIError>) => e);
      expect(refused).toMatchObject({ status: 400, param: "messages[0].content[0].image_url.url" });
      expect((refused as Error).message).toMatch(/private address/);

      const { client: local } = await serve({ remoteImages: { allow: true, allowPrivateAddresses: true, timeoutMs: 300, maxBytes: png.length } });
      const reply = await local.chat.completions.create(withUrl(`${base}/cat.png`));
      expect(reply.choices[0].message.content).toBe(example.questions[1].answer);
      for (const [path, message] of [["/hop", /redirected more than 3 times/], ["/slow", /within 300 ms/], ["/missing", /HTTP 404/]] as const) {
        const error = await local.chat.completions.create(withUrl(`${base}${path}`)).catch((e: Error) => e);
        expect((error as Error).message, path).toMatch(message);
      }
      const { client: small } = await serve({ remoteImages: { allow: true, allowPrivateAddresses: true, maxBytes: 100 } });
      expect(((await small.chat.completions.create(withUrl(`${base}/cat.png`)).catch((e: Error) => e)) as Error).message).toMatch(/over the limit of 100 bytes/);
    });

    it("knows which addresses are private", () => {
      for (const a of ["127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.0.1", "172.16.5.4", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "not an ip"]) expect(isPrivateAddress(a), a).toBe(true);
      for (const a of ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1"]) expect(isPrivateAddress(a), a).toBe(false);
    });
  });

  it("cancels what is still running when the shutdown's time is up, and says why", async () => {
    const { server, client } = await serve({ model: random, modelName: "random", shutdownTimeoutMs: 50 });
    const stream = await client.chat.completions.create({ model: "random", messages: [{ role: "user", content: "Keep talking" }], max_tokens: 250, temperature: 0, stream: true });
    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(5000);
    const error = await (async () => {
      for await (const _ of stream);
    })().catch((e: Error) => e);
    expect(String(error)).toMatch(/shut down before the answer was complete/);
    await random.idle();
  });

  it("logs one JSON line per request, counts requests and tokens in /metrics, and closes gracefully", async () => {
    const lines: string[] = [];
    const log = new Writable({ write: (chunk, _encoding, done) => (lines.push(...String(chunk).trim().split("\n")), done()) });
    const { server, client } = await serve({ model: random, modelName: "random", log });
    const streaming = client.chat.completions.create({ model: "random", messages: [{ role: "user", content: "Hello" }], max_tokens: 20, temperature: 0, stream: true });
    await client.chat.completions.create({ model: "random", messages: [{ role: "user", content: "Hi" }], max_tokens: 5, temperature: 0 }).catch(() => {});
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/wgsl_vlm_requests_total\{endpoint="chat",status="200"\} 1/);
    expect(metrics).toMatch(/wgsl_vlm_completion_tokens_total \d+/);
    expect(metrics).toMatch(/wgsl_vlm_time_to_first_token_seconds_count \d+/);
    expect(metrics).toMatch(/wgsl_vlm_gpu_memory_bytes\{kind="live"\} \d+/);
    const stream = await streaming;
    const closing = server.close(); // the stream started before the close finishes
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    await closing;
    expect(text.length).toBeGreaterThan(0);
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.msg === "request");
    expect(records).toHaveLength(2);
    expect(records.find((r) => r.stream === false)).toMatchObject({ endpoint: "chat", status: 200, promptTokens: expect.any(Number), completionTokens: 5, finishReason: "length" });
    expect(records.find((r) => r.stream === true)).toMatchObject({ status: 200, completionTokens: 20, firstTokenMs: expect.any(Number), totalMs: expect.any(Number) });
  });
});

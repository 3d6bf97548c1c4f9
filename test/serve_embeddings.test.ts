/**
 * POST /v1/embeddings over the tiny CLIP checkpoint (clip-a: 16-dim embeddings, 77-token
 * context): answers equal Clip.embedTexts / embedImages for the same inputs, in both encodings;
 * usage; every validation error, by field; the API key; a server without a CLIP model.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import serveCommand from "../src/cli/serve.js";
import { UsageError } from "../src/cli/command.js";
import { loadClip, type Clip } from "../src/embed/clip.js";
import { MAX_EMBEDDING_INPUTS } from "../src/serve/embeddings.js";
import { startServer, type RunningServer } from "../src/serve/server.js";
import { testGpu } from "./helpers.js";

const CLIP_A = join(import.meta.dirname, "fixtures", "golden", "clip-a", "model");
const MAIN = join(import.meta.dirname, "..", "src", "cli", "main.ts");
const SHAPES = join(import.meta.dirname, "..", "weights", "shapes-llava");
const NAME = "clip-a";

describe("POST /v1/embeddings", async () => {
  const gpu = await testGpu();
  const clip: Clip = await loadClip(CLIP_A, { gpu, dtype: "f32" });
  const sharp = (await import("sharp")).default;
  const red = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 20, b: 20 } } }).png().toBuffer();
  const blue = await sharp({ create: { width: 24, height: 36, channels: 3, background: { r: 10, g: 40, b: 220 } } }).png().toBuffer();
  const dataUrl = (png: Buffer) => `data:image/png;base64,${png.toString("base64")}`;
  const servers: RunningServer[] = [];
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer({ clip, clipName: NAME, port: 0, log: false });
    servers.push(server);
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    clip.dispose();
  });

  async function post(body: unknown, url = server.url, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
    const response = await fetch(`${url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    return { status: response.status, json: await response.json() };
  }
  const close = (got: number[], expected: Float32Array) => {
    expect(got).toHaveLength(expected.length);
    for (let i = 0; i < expected.length; i++) expect(Math.abs(got[i] - expected[i])).toBeLessThan(1e-6);
  };
  const tokens = (text: string) => clip.tokenizer.encode(text, { truncate: 77 }).length;

  it("embeds a string as embedTexts does, in OpenAI's shape, counting its tokens", async () => {
    const { status, json } = await post({ model: NAME, input: "a photo of a cat" });
    expect(status).toBe(200);
    const [expected] = await clip.embedTexts(["a photo of a cat"]);
    expect(json).toMatchObject({ object: "list", model: NAME, data: [{ object: "embedding", index: 0 }] });
    close(json.data[0].embedding, expected);
    const n = clip.tokenizer.encode("a photo of a cat").length;
    expect(json.usage).toEqual({ prompt_tokens: n, total_tokens: n });
  });

  it("embeds an array of strings and text parts, in order", async () => {
    const texts = ["a red square", "a blue circle", "two dogs on a beach"];
    const { status, json } = await post({ model: NAME, input: [texts[0], { type: "text", text: texts[1] }, texts[2]] });
    expect(status).toBe(200);
    const expected = await clip.embedTexts(texts);
    expect(json.data.map((d: { index: number }) => d.index)).toEqual([0, 1, 2]);
    json.data.forEach((d: { embedding: number[] }, i: number) => close(d.embedding, expected[i]));
    const n = texts.reduce((sum, t) => sum + tokens(t), 0);
    expect(json.usage).toEqual({ prompt_tokens: n, total_tokens: n });
  });

  it("truncates a text longer than the context and counts the tokens kept", async () => {
    const long = Array.from({ length: 200 }, (_, i) => `word${i % 7}`).join(" ");
    const { status, json } = await post({ model: NAME, input: [long] });
    expect(status).toBe(200);
    expect(json.usage.prompt_tokens).toBe(77);
    close(json.data[0].embedding, (await clip.embedTexts([long]))[0]);
  });

  it("embeds images (data URLs) as embedImages does, mixed with texts; images count no tokens", async () => {
    const input = [{ type: "image_url", image_url: { url: dataUrl(red) } }, "a red square", { type: "image_url", image_url: dataUrl(blue) }];
    const { status, json } = await post({ model: NAME, input });
    expect(status).toBe(200);
    const [r, b] = await clip.embedImages([red, blue]);
    const [t] = await clip.embedTexts(["a red square"]);
    close(json.data[0].embedding, r);
    close(json.data[1].embedding, t);
    close(json.data[2].embedding, b);
    expect(json.usage.prompt_tokens).toBe(tokens("a red square"));
  });

  it("takes token ids, one array or several, as the text they encode", async () => {
    const ids = clip.tokenizer.encode("a photo of a dog");
    const other = clip.tokenizer.encode("a red square");
    const [dog, square] = await clip.embedTexts(["a photo of a dog", "a red square"]);
    const one = await post({ model: NAME, input: ids });
    expect(one.status).toBe(200);
    expect(one.json.data).toHaveLength(1);
    close(one.json.data[0].embedding, dog);
    expect(one.json.usage.prompt_tokens).toBe(ids.length);
    const two = await post({ model: NAME, input: [ids, other] });
    expect(two.status).toBe(200);
    close(two.json.data[0].embedding, dog);
    close(two.json.data[1].embedding, square);
    expect(two.json.usage.prompt_tokens).toBe(ids.length + other.length);
  });

  it("gives base64 little-endian float32s that decode to the same floats", async () => {
    const input = ["a photo of a cat", { type: "image_url", image_url: { url: dataUrl(red) } }];
    const floats = await post({ model: NAME, input });
    const encoded = await post({ model: NAME, input, encoding_format: "base64" });
    expect(encoded.status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const text = encoded.json.data[i].embedding;
      expect(typeof text).toBe("string");
      const bytes = Buffer.from(text, "base64");
      expect(bytes.length).toBe(clip.dimensions * 4);
      const decoded = Array.from({ length: clip.dimensions }, (_, k) => bytes.readFloatLE(k * 4));
      expect(decoded).toEqual(floats.json.data[i].embedding);
    }
    expect(encoded.json.usage).toEqual(floats.json.usage);
  });

  it("accepts dimensions equal to the model's, and user", async () => {
    const { status, json } = await post({ model: NAME, input: "x", dimensions: clip.dimensions, user: "someone", encoding_format: "float" });
    expect(status).toBe(200);
    expect(json.data[0].embedding).toHaveLength(clip.dimensions);
  });

  it("lists the CLIP model in /v1/models and reports it ready on /health", async () => {
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m: { id: string }) => m.id)).toEqual([NAME]);
    expect((await fetch(`${server.url}/v1/models/${NAME}`)).status).toBe(200);
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok", models: { [NAME]: "ok" } });
  });

  it("answers 404 on the chat endpoints of a server with no chat model", async () => {
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: NAME, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/no chat model/);
  });

  const image = (url: string) => ({ type: "image_url", image_url: { url } });
  const refusals: [string, unknown, number, string | null, RegExp][] = [
    ["missing model", { input: "x" }, 400, "model", /model: is required/],
    ["wrong model", { model: "gpt-4", input: "x" }, 404, "model", /'gpt-4' does not exist/],
    ["missing input", { model: NAME }, 400, "input", /input: is required/],
    ["empty input array", { model: NAME, input: [] }, 400, "input", /empty array/],
    ["empty string", { model: NAME, input: "" }, 400, "input", /empty string/],
    ["empty string in an array", { model: NAME, input: ["a", ""] }, 400, "input[1]", /empty string/],
    ["too many inputs", { model: NAME, input: new Array(MAX_EMBEDDING_INPUTS + 1).fill("a") }, 400, "input", /at most 2048/],
    ["a number input", { model: NAME, input: 5 }, 400, "input", /must be a string/],
    ["an object input", { model: NAME, input: { text: "a" } }, 400, "input", /must be a string/],
    ["a null item", { model: NAME, input: ["a", null] }, 400, "input[1]", /must be an object/],
    ["a number among strings", { model: NAME, input: ["a", 3] }, 400, "input[1]", /token id must be in an array/],
    ["a bad part type", { model: NAME, input: [{ type: "audio", text: "a" }] }, 400, "input[0].type", /"text" or "image_url"/],
    ["a text part without text", { model: NAME, input: [{ type: "text", text: 3 }] }, 400, "input[0].text", /must be a string/],
    ["an unknown part field", { model: NAME, input: [{ type: "text", text: "a", extra: 1 }] }, 400, "input[0].extra", /Unrecognized request argument/],
    ["an unknown field", { model: NAME, input: "a", temperature: 1 }, 400, "temperature", /Unrecognized request argument/],
    ["a token id past the vocabulary", { model: NAME, input: [[1, 999999]] }, 400, "input[0][1]", /token id/],
    ["a fractional token id", { model: NAME, input: [1.5, 2] }, 400, "input[0]", /token id/],
    ["token ids past the context", { model: NAME, input: [new Array(78).fill(1)] }, 400, "input[0]", /at most 77/],
    ["an empty token array", { model: NAME, input: ["a", []] }, 400, "input[1]", /empty array of token ids/],
    ["token ids without the end token", { model: NAME, input: [[1, 2, 3]] }, 400, "input[0]", /end token/],
    ["other dimensions", { model: NAME, input: "a", dimensions: 8 }, 400, "dimensions", /cannot be shortened/],
    ["bad dimensions", { model: NAME, input: "a", dimensions: "16" }, 400, "dimensions", /positive integer/],
    ["a bad encoding", { model: NAME, input: "a", encoding_format: "int8" }, 400, "encoding_format", /"float" or "base64"/],
    ["a non-image data URL", { model: NAME, input: ["a", image("data:text/plain;base64,aGVsbG8=")] }, 400, "input[1].image_url.url", /not an image/],
    ["bytes that are no image", { model: NAME, input: ["a", "b", image(`data:image/png;base64,${Buffer.from("not a png at all").toString("base64")}`)] }, 400, "input[2].image_url.url", /not an image this server can read/],
    ["a remote URL (not allowed)", { model: NAME, input: [image("http://example.com/cat.png")] }, 400, "input[0].image_url.url", /does not fetch image URLs/],
    ["a body that is not an object", [1, 2], 400, null, /must be a JSON object/],
  ];
  it.each(refusals)("refuses %s", async (_what, body, status, param, message) => {
    const got = await post(body);
    expect(got.status).toBe(status);
    expect(got.json.error.param).toBe(param);
    expect(got.json.error.message).toMatch(message);
    expect(got.json.error.type).toBe(status === 404 ? "not_found_error" : "invalid_request_error");
  });

  it("refuses a PNG whose header is fine but whose data is cut, naming its input, and goes on serving", async () => {
    const cut = red.subarray(0, Math.floor(red.length * 0.6));
    const got = await post({ model: NAME, input: ["a", image(dataUrl(Buffer.from(cut)))] });
    expect(got.status).toBe(400);
    expect(got.json.error.param).toBe("input[1].image_url.url");
    expect((await post({ model: NAME, input: "still here" })).status).toBe(200);
  });

  it("answers concurrent requests, each with its own vectors", async () => {
    const texts = Array.from({ length: 8 }, (_, i) => `request number ${i}`);
    const expected = await clip.embedTexts(texts);
    const answers = await Promise.all(texts.map((t, i) => post({ model: NAME, input: i % 2 ? [t, image(dataUrl(red))] : t })));
    const [r] = await clip.embedImages([red]);
    answers.forEach(({ status, json }, i) => {
      expect(status).toBe(200);
      close(json.data[0].embedding, expected[i]);
      if (i % 2) close(json.data[1].embedding, r);
    });
  });

  it("enforces the API key", async () => {
    const keyed = await startServer({ clip, clipName: NAME, port: 0, log: false, apiKey: "sekrit" });
    servers.push(keyed);
    const none = await post({ model: NAME, input: "a" }, keyed.url);
    expect(none.status).toBe(401);
    expect(none.json.error.type).toBe("authentication_error");
    expect((await post({ model: NAME, input: "a" }, keyed.url, { authorization: "Bearer wrong" })).status).toBe(401);
    expect((await post({ model: NAME, input: "a" }, keyed.url, { authorization: "Bearer sekrit" })).status).toBe(200);
  });

  it("answers 404 without a CLIP model, and 503 while it loads", async () => {
    const chatOnly = await startServer({ model: new Promise(() => {}), modelName: "some-vlm", port: 0, log: false });
    servers.push(chatOnly);
    const got = await post({ model: NAME, input: "a" }, chatOnly.url);
    expect(got.status).toBe(404);
    expect(got.json.error.message).toMatch(/no embedding model.*--clip DIR/);
    const loading = await startServer({ clip: new Promise<Clip>(() => {}), clipName: NAME, port: 0, log: false });
    servers.push(loading);
    expect((await post({ model: NAME, input: "a" }, loading.url)).status).toBe(503);
    expect((await fetch(`${loading.url}/health`)).status).toBe(503);
  });

  it("serves a chat model and a CLIP model side by side, each under its name", async () => {
    const both = await startServer({ model: new Promise(() => {}), modelName: "some-vlm", clip, clipName: NAME, port: 0, log: false });
    servers.push(both);
    const models = (await (await fetch(`${both.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(["some-vlm", NAME]);
    const health = await fetch(`${both.url}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: "loading", models: { "some-vlm": "loading", [NAME]: "ok" } });
    expect((await post({ model: NAME, input: "a" }, both.url)).status).toBe(200);
    expect((await post({ model: "some-vlm", input: "a" }, both.url)).status).toBe(404);
    await expect(startServer({ clip, clipName: "x", model: Promise.resolve(null as never), modelName: "x", port: 0, log: false })).rejects.toThrow(/both named 'x'/);
  });

  it("wgsl-vlm serve --clip DIR: an embeddings-only server under the folder's name, until SIGTERM", async () => {
    await expect(serveCommand.run(["--clip-name", "x", "--model", SHAPES, "--port", "0"])).rejects.toThrow(new UsageError("--clip-name goes with --clip"));
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, "serve", "--clip", CLIP_A, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      while (!/listening on (http:\/\/\S+)/.test(stderr)) await new Promise((r) => setTimeout(r, 20));
      const url = /listening on (http:\/\/\S+)/.exec(stderr)![1];
      while (!/ready: model \(embeddings, 16 dimensions\)/.test(stderr)) {
        if (child.exitCode !== null) throw new Error(stderr);
        await new Promise((r) => setTimeout(r, 20));
      }
      const got = await post({ model: "model", input: ["a photo of a cat"] }, url);
      expect(got.status).toBe(200);
      expect(got.json.data[0].embedding).toHaveLength(16);
      child.kill("SIGTERM");
      const [code] = await exited;
      expect(code).toBe(0);
      const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.filter((l) => l.msg === "request")).toMatchObject([{ endpoint: "embeddings", status: 200, inputs: 1 }]);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

/**
 * `wgsl-vlm serve`: OpenAI's chat and completions API over one loaded model, and its embeddings
 * API over a CLIP dual encoder (embeddings.ts), either or both.
 *
 * The HTTP layer is Fastify: it parses JSON with a body limit (413 past it), answers malformed
 * JSON with a 400, closes gracefully, and logs through pino, one JSON line per request. Every
 * request to a generation endpoint is checked field by field (openai_request.ts) and handed to
 * the model's generate(); concurrent requests are decoded together by the model's decode batch
 * (up to its maxBatch KV-caches; the rest wait their turn in the model, up to `maxQueue`, and
 * past that are told to come back: 429 with Retry-After). A follow-up turn of a conversation
 * finds its prefix in a KV-cache (prompt caching), so its first token comes after only its new
 * positions.
 *
 * Streaming answers are Server-Sent Events, `data: {chunk}` lines ending in `data: [DONE]`,
 * written at the client's pace: a client that disconnects aborts its generation (its KV-cache
 * goes back to the batch between two tokens) and the server goes on serving the others.
 *
 * Embedding requests run one at a time on the CLIP model (a queue: their batches never
 * interleave), up to `maxQueue` waiting; their images are decoded before they take their turn.
 */
import { timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Writable } from "node:stream";
import type { Clip } from "../embed/clip.js";
import type { VisionLanguageModel } from "../generate/model.js";
import type { GenerateChunk, GenerateResult } from "../generate/request.js";
import { ApiError, badRequest, toApiError } from "./api_error.js";
import { embeddingModelInfo, embeddingsBody, embedInputs, parseEmbeddingRequest, preparePixels } from "./embeddings.js";
import type { RemoteImageOptions } from "./images.js";
import { ServerMetrics } from "./metrics.js";
import { parseChatRequest, parseCompletionRequest, type ServedRequest } from "./openai_request.js";
import { chunkBody, completionBody, responseHeader, usageChunkBody, type Endpoint } from "./openai_response.js";

export interface ServeOptions {
  /**
   * The chat model, or its loading: until it resolves /health answers 503 and so do the chat
   * endpoints. Without one (a server of embeddings only) they answer 404.
   */
  model?: VisionLanguageModel | Promise<VisionLanguageModel>;
  /** The name /v1/models lists and responses carry; a request naming another model gets 404. Required with `model`. */
  modelName?: string;
  /** A CLIP dual encoder (or its loading) for POST /v1/embeddings; without one that answers 404. */
  clip?: Clip | Promise<Clip>;
  /** The CLIP model's name in the API. Required with `clip`. */
  clipName?: string;
  /** Default 127.0.0.1 (this machine only). */
  host?: string;
  /** Default 8080; 0 picks a free port (the URL says which). */
  port?: number;
  /** Require `Authorization: Bearer KEY` on /v1/* and /metrics. */
  apiKey?: string;
  /** Request bodies past this many bytes get 413 (default DEFAULT_BODY_LIMIT: base64 photos are large). */
  bodyLimitBytes?: number;
  /** Requests that may wait for a KV-cache beyond those being decoded, and embedding requests waiting their turn (default DEFAULT_MAX_QUEUE); more get 429. */
  maxQueue?: number;
  remoteImages?: RemoteImageOptions;
  /** Where the JSON log lines go (default stdout), or false for none. */
  log?: Writable | false;
  /** On close(), generations still running after this many milliseconds are cancelled (default 30 s). */
  shutdownTimeoutMs?: number;
}

export interface RunningServer {
  /** http://host:port */
  url: string;
  app: FastifyInstance;
  /** Resolves when the chat model is loaded, at once to null without one (rejects if loading failed; the server then answers 503). */
  ready: Promise<VisionLanguageModel | null>;
  /** The same for the CLIP model. */
  clipReady: Promise<Clip | null>;
  /** Stops accepting, lets running generations finish within shutdownTimeoutMs, cancels the rest, closes. */
  close(): Promise<void>;
}

export const DEFAULT_BODY_LIMIT = 32 * 2 ** 20;
export const DEFAULT_MAX_QUEUE = 64;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
/** Seconds a client told 429 or 503 should wait. */
const RETRY_AFTER_S = 1;

const PAGE_FILES: Record<string, string> = {
  "/": "index.html",
  "/chat.js": "chat.js",
  "/chat.css": "chat.css",
};
const PAGE_TYPES: Record<string, string> = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8" };
/** The page runs only its own script and shows only its own and data: images. */
const PAGE_HEADERS = { "content-security-policy": "default-src 'self'; img-src 'self' data:", "x-content-type-options": "nosniff" };
/** From src/serve/ and from dist/serve/ alike (the package ships src/serve/page). */
const PAGE_DIR = new URL("../../src/serve/page/", import.meta.url);

/** One generation being answered, for shutdown and the log. */
interface Active {
  abort(): void;
  done: Promise<void>;
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const { apiKey } = options;
  const hasModel = options.model !== undefined;
  const hasClip = options.clip !== undefined;
  if (!hasModel && !hasClip) throw new Error("startServer: give a chat model (model), a CLIP model (clip), or both");
  if (hasModel && !options.modelName) throw new Error("startServer: a model needs its modelName");
  if (hasClip && !options.clipName) throw new Error("startServer: a CLIP model needs its clipName");
  if (hasModel && hasClip && options.modelName === options.clipName) throw new Error(`startServer: the chat model and the CLIP model are both named '${options.clipName}'`);
  const modelName = options.modelName ?? "";
  const clipName = options.clipName ?? "";
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const remote = options.remoteImages ?? { allow: false };
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  let model: VisionLanguageModel | null = null;
  let loadError: Error | null = null;
  let closing = false;
  const active = new Set<Active>();
  const metrics = new ServerMetrics(() => model);
  const ready = Promise.resolve(options.model ?? null).then(
    (m) => (model = m),
    (error: Error) => {
      loadError = error;
      throw error;
    },
  );
  ready.catch(() => {}); // reported by /health and by whoever awaits `ready`
  let clip: Clip | null = null;
  let clipError: Error | null = null;
  let clipLoaded = false;
  const clipReady = Promise.resolve(options.clip ?? null).then(
    (c) => {
      clipLoaded = true;
      return (clip = c);
    },
    (error: Error) => {
      clipError = error;
      throw error;
    },
  );
  clipReady.catch(() => {});
  let modelLoaded = false;
  void ready.then(() => (modelLoaded = true), () => {});
  // Embedding requests, one at a time: the tail of the queue, and how many are in it.
  let embedTail: Promise<void> = Promise.resolve();
  let embedding = 0;

  const app = Fastify({
    bodyLimit: options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT,
    logger: options.log === false ? false : { stream: options.log ?? process.stdout, base: null },
    // The handlers log one line per request, with its tokens and timings, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: "idle",
  });

  // Errors before a handler runs (malformed JSON, a body over the limit, an unknown route) and
  // any a handler throws, in OpenAI's shape.
  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = error.statusCode ?? 500;
    const apiError =
      error instanceof ApiError
        ? error
        : status === 413
          ? new ApiError(413, `the request body is over the limit of ${app.initialConfig.bodyLimit} bytes`, null, "request_too_large")
          : status >= 400 && status < 500
            ? new ApiError(status, error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error instanceof SyntaxError ? `the request body is not valid JSON: ${error.message}` : error.message, null, "invalid_request")
            : toApiError(error);
    sendError(reply, apiError);
    request.log.info({ method: request.method, url: request.url, status: apiError.status, error: apiError.message }, "request");
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, new ApiError(404, `no route ${request.method} ${request.url}`, null, "not_found")));

  app.addHook("onRequest", async (request) => {
    // By the route matched, not the URL as sent: the router decodes escapes (/%761/... is /v1/...).
    const route = request.routeOptions.url ?? "";
    if (apiKey === undefined || !(route.startsWith("/v1/") || route === "/metrics")) return;
    const given = /^Bearer (.+)$/.exec(request.headers.authorization ?? "")?.[1] ?? "";
    if (!sameSecret(given, apiKey)) {
      throw new ApiError(401, given ? "Incorrect API key provided" : "No API key provided: send Authorization: Bearer KEY", null, "invalid_api_key");
    }
  });

  app.get("/health", async (_request, reply) => {
    // Ready when all that was given is loaded; with a CLIP model, each model's state by name too.
    const failed = loadError ?? clipError;
    const models = hasClip
      ? {
          models: {
            ...(hasModel ? { [modelName]: loadError ? "error" : modelLoaded ? "ok" : "loading" } : {}),
            [clipName]: clipError ? "error" : clipLoaded ? "ok" : "loading",
          },
        }
      : {};
    if (failed) return reply.code(503).send({ status: "error", message: `loading the ${loadError ? "model" : "CLIP model"} failed: ${failed.message}`, ...models });
    if ((hasModel && !modelLoaded) || (hasClip && !clipLoaded)) return reply.code(503).header("retry-after", RETRY_AFTER_S).send({ status: "loading", ...models });
    return { status: closing ? "closing" : "ok", ...models };
  });

  app.get("/metrics", async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  const startedAt = Date.now();
  const names = [...(hasModel ? [modelName] : []), ...(hasClip ? [clipName] : [])];
  const modelEntry = (id: string) => ({ id, object: "model", created: Math.floor(startedAt / 1000), owned_by: "wgsl-vlm" });
  app.get("/v1/models", async () => ({ object: "list", data: names.map(modelEntry) }));
  app.get<{ Params: { id: string } }>("/v1/models/:id", async (request) => {
    if (!names.includes(request.params.id)) throw modelNotFound(request.params.id, names.join("' and '"));
    return modelEntry(request.params.id);
  });

  for (const [path, file] of Object.entries(PAGE_FILES)) {
    app.get(path, async (_request, reply) =>
      reply
        .type(PAGE_TYPES[file.split(".").pop()!])
        .headers(PAGE_HEADERS)
        .send(await readFile(new URL(file, PAGE_DIR))),
    );
  }

  const generation = (endpoint: Endpoint) => async (request: FastifyRequest, reply: FastifyReply) => {
    const started = performance.now();
    if (!hasModel) throw new ApiError(404, `this server has no chat model, only the embedding model '${clipName}' (POST /v1/embeddings): start it with --model DIR to chat`, null, "model_not_found");
    const current = usableModel(model, loadError, closing);
    const body = request.body as Record<string, unknown> | null;
    if (body && typeof body === "object" && body.model !== undefined && body.model !== null && body.model !== modelName) throw modelNotFound(body.model, modelName);
    // Refused before its images are decoded or fetched: a busy server spends nothing on it.
    if (active.size >= current.maxBatch + maxQueue) {
      const { running, waiting } = current.load;
      throw new ApiError(429, `the server is busy: ${running} generations running and ${waiting} waiting; try again shortly`, null, "rate_limit_exceeded", "rate_limit_error", RETRY_AFTER_S);
    }
    const served = endpoint === "chat" ? await parseChatRequest(body, remote) : parseCompletionRequest(body);
    await answer(endpoint, current, served, request, reply, started);
  };
  app.post("/v1/chat/completions", generation("chat"));
  app.post("/v1/completions", generation("completions"));

  app.post("/v1/embeddings", async (request, reply) => {
    const started = performance.now();
    let status = 200;
    let inputs: number | undefined;
    let promptTokens: number | undefined;
    let failure: ApiError | null = null;
    try {
      if (!hasClip) {
        throw new ApiError(404, "this server has no embedding model: start it with --clip DIR (a CLIP checkpoint folder) to serve POST /v1/embeddings", null, "model_not_found");
      }
      if (closing) throw new ApiError(503, "the server is shutting down", null, "server_closing", "server_error", RETRY_AFTER_S);
      if (clipError) throw new ApiError(503, `the CLIP model failed to load: ${(clipError as Error).message}`, null, "model_not_loaded", "server_error");
      if (!clip) throw new ApiError(503, "the CLIP model is still loading; try again shortly", null, "model_loading", "server_error", RETRY_AFTER_S);
      const current: Clip = clip;
      const body = request.body as Record<string, unknown> | null;
      if (body && typeof body === "object" && !Array.isArray(body)) {
        if (body.model === undefined || body.model === null) throw badRequest("model", `is required: this server's embedding model is '${clipName}'`);
        if (body.model !== clipName) throw modelNotFound(body.model, clipName);
      }
      // Refused before its images are decoded or fetched.
      if (embedding >= maxQueue + 1) {
        throw new ApiError(429, `the server is busy: ${embedding} embedding requests running or waiting; try again shortly`, null, "rate_limit_exceeded", "rate_limit_error", RETRY_AFTER_S);
      }
      embedding++;
      try {
        const parsed = await parseEmbeddingRequest(body, embeddingModelInfo(current), remote);
        inputs = parsed.inputs.length;
        const pixels = await preparePixels(current, parsed);
        const turn = embedTail.then(() => embedInputs(current, parsed, pixels));
        embedTail = turn.then(
          () => {},
          () => {},
        );
        const embedded = await turn;
        promptTokens = embedded.promptTokens;
        await reply.send(embeddingsBody(embedded, parsed.encoding, clipName));
      } finally {
        embedding--;
      }
    } catch (error) {
      failure = toApiError(error);
      status = failure.status;
      sendError(reply, failure);
    } finally {
      metrics.answered("embeddings", status);
      request.log.info({ endpoint: "embeddings", status, inputs, promptTokens, totalMs: round(performance.now() - started), error: failure?.message }, "request");
    }
  });

  /** Runs one generation and answers it, whole or streamed; logs one line and counts it. */
  async function answer(endpoint: Endpoint, current: VisionLanguageModel, served: ServedRequest, request: FastifyRequest, reply: FastifyReply, started: number): Promise<void> {
    const controller = new AbortController();
    const stream = current.generate({ ...served.generate, signal: controller.signal });
    const header = responseHeader(endpoint, modelName);
    let firstTokenMs: number | null = null;
    let status = 200;
    let result: GenerateResult | null = null;
    let failure: ApiError | null = null;
    let finish!: () => void;
    // Who stopped the generation before its end, if anyone: the client by going away, or shutdown.
    let cancelled: "client" | "shutdown" | null = null;
    const cancel = (by: "client" | "shutdown") => {
      if (cancelled) return;
      cancelled = by;
      controller.abort();
      void stream.return(undefined as never); // also gives up a place still waiting for a KV-cache
    };
    const entry: Active = { abort: () => cancel("shutdown"), done: new Promise<void>((resolve) => (finish = resolve)) };
    active.add(entry);
    const onClose = () => {
      if (!reply.raw.writableFinished) cancel("client");
    };
    reply.raw.on("close", onClose);
    const shutDown = () => new ApiError(503, "the server shut down before the answer was complete", null, "server_closing", "server_error", RETRY_AFTER_S);
    try {
      let next = await stream.next(); // checks the request (400s) and waits for a KV-cache
      firstTokenMs = performance.now() - started;
      if (!served.stream) {
        while (!next.done) next = await stream.next();
        result = (next.value as GenerateResult | undefined) ?? null; // none when it was given up before it began
        if (cancelled === "shutdown") throw shutDown();
        if (cancelled === "client") {
          reply.hijack();
          reply.raw.destroy();
        } else {
          await reply.send(completionBody(endpoint, header, result!));
        }
        return;
      }
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
      let first = true;
      while (!next.done) {
        const chunk: GenerateChunk = next.value;
        if (first || chunk.text) await event(raw, chunkBody(endpoint, header, { text: chunk.text, first }, served.includeUsage));
        first = false;
        next = await stream.next();
      }
      result = (next.value as GenerateResult | undefined) ?? null;
      if (cancelled === "shutdown") throw shutDown();
      if (cancelled === "client") return void raw.destroy();
      if (first) await event(raw, chunkBody(endpoint, header, { text: "", first: true }, served.includeUsage));
      await event(raw, chunkBody(endpoint, header, { text: "", finish: result!.finishReason }, served.includeUsage));
      if (served.includeUsage) await event(raw, usageChunkBody(endpoint, header, result!));
      raw.end("data: [DONE]\n\n");
    } catch (error) {
      failure = toApiError(error);
      status = failure.status;
      if (!reply.sent && !reply.raw.headersSent) {
        sendError(reply, failure);
      } else if (!reply.raw.destroyed) {
        // Mid-stream: the status line is long gone; say it as a last event.
        reply.raw.end(`data: ${JSON.stringify(failure.body())}\n\n`);
      }
    } finally {
      reply.raw.off("close", onClose);
      await stream.return(undefined as never);
      active.delete(entry);
      finish();
      if (cancelled === "client") status = 499; // the client closed the request (nginx's code)
      metrics.answered(endpoint, status);
      if (result) metrics.generated(result.usage, firstTokenMs === null ? null : firstTokenMs / 1000, result.timings.decodeTokensPerSecond);
      request.log.info(
        {
          id: header.id,
          endpoint,
          status,
          stream: served.stream,
          images: served.imageCount,
          promptTokens: result?.usage.promptTokens,
          cachedPromptTokens: result?.usage.cachedPromptTokens,
          completionTokens: result?.usage.completionTokens,
          finishReason: result?.finishReason,
          firstTokenMs: firstTokenMs === null ? undefined : round(firstTokenMs),
          totalMs: round(performance.now() - started),
          decodeTokensPerSecond: result ? round(result.timings.decodeTokensPerSecond) : undefined,
          error: failure?.message,
        },
        "request",
      );
    }
  }

  await app.listen({ host: options.host ?? "127.0.0.1", port: options.port ?? 8080 });
  const address = app.server.address();
  const url = typeof address === "object" && address ? `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}` : String(address);

  let closed: Promise<void> | null = null;
  const close = () =>
    (closed ??= (async () => {
      closing = true;
      const listening = app.close(); // no new connections; waits for the requests in flight
      const timer = setTimeout(() => active.forEach((a) => a.abort()), shutdownTimeoutMs);
      timer.unref();
      await Promise.all([...active].map((a) => a.done));
      clearTimeout(timer);
      app.server.closeIdleConnections(); // those the finished generations left open (keep-alive)
      await listening;
      await model?.idle();
      await embedTail;
    })());
  return { url, app, ready, clipReady, close };
}

function usableModel(model: VisionLanguageModel | null, loadError: Error | null, closing: boolean): VisionLanguageModel {
  if (closing) throw new ApiError(503, "the server is shutting down", null, "server_closing", "server_error", RETRY_AFTER_S);
  if (loadError) throw new ApiError(503, `the model failed to load: ${loadError.message}`, null, "model_not_loaded", "server_error");
  if (!model) throw new ApiError(503, "the model is still loading; try again shortly", null, "model_loading", "server_error", RETRY_AFTER_S);
  return model;
}

function modelNotFound(name: unknown, served: string): ApiError {
  return new ApiError(404, `The model '${String(name)}' does not exist: this server serves '${served}'`, "model", "model_not_found");
}

function sendError(reply: FastifyReply, error: ApiError): void {
  if (error.retryAfter !== null) reply.header("retry-after", error.retryAfter);
  void reply.code(error.status).send(error.body());
}

/** One Server-Sent Event, waiting for the socket to drain when the client reads slower than we write. */
async function event(raw: ServerResponse, body: unknown): Promise<void> {
  if (raw.destroyed) return;
  if (!raw.write(`data: ${JSON.stringify(body)}\n\n`)) {
    await new Promise<void>((resolve) => {
      const done = () => {
        raw.off("drain", done);
        raw.off("close", done);
        resolve();
      };
      raw.on("drain", done);
      raw.on("close", done);
    });
  }
}

/** Compares secrets in constant time (an early mismatch must not answer faster). */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

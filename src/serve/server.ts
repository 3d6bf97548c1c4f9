/**
 * `wgsl-vlm serve`: OpenAI's chat and completions API over one loaded model.
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
 */
import { timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Writable } from "node:stream";
import type { VisionLanguageModel } from "../generate/model.js";
import type { GenerateChunk, GenerateResult } from "../generate/request.js";
import { ApiError, toApiError } from "./api_error.js";
import type { RemoteImageOptions } from "./images.js";
import { ServerMetrics } from "./metrics.js";
import { parseChatRequest, parseCompletionRequest, type ServedRequest } from "./openai_request.js";
import { chunkBody, completionBody, responseHeader, usageChunkBody, type Endpoint } from "./openai_response.js";

export interface ServeOptions {
  /** The model, or its loading: until it resolves /health answers 503 and so do the API's endpoints. */
  model: VisionLanguageModel | Promise<VisionLanguageModel>;
  /** The name /v1/models lists and responses carry; a request naming another model gets 404. */
  modelName: string;
  /** Default 127.0.0.1 (this machine only). */
  host?: string;
  /** Default 8080; 0 picks a free port (the URL says which). */
  port?: number;
  /** Require `Authorization: Bearer KEY` on /v1/* and /metrics. */
  apiKey?: string;
  /** Request bodies past this many bytes get 413 (default DEFAULT_BODY_LIMIT: base64 photos are large). */
  bodyLimitBytes?: number;
  /** Requests that may wait for a KV-cache beyond those being decoded (default DEFAULT_MAX_QUEUE); more get 429. */
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
  /** Resolves when the model is loaded (rejects if loading failed; the server then answers 503). */
  ready: Promise<VisionLanguageModel>;
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
  const { modelName, apiKey } = options;
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const remote = options.remoteImages ?? { allow: false };
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  let model: VisionLanguageModel | null = null;
  let loadError: Error | null = null;
  let closing = false;
  const active = new Set<Active>();
  const metrics = new ServerMetrics(() => model);
  const ready = Promise.resolve(options.model).then(
    (m) => (model = m),
    (error: Error) => {
      loadError = error;
      throw error;
    },
  );
  ready.catch(() => {}); // reported by /health and by whoever awaits `ready`

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
    if (loadError) return reply.code(503).send({ status: "error", message: `loading the model failed: ${loadError.message}` });
    if (!model) return reply.code(503).header("retry-after", RETRY_AFTER_S).send({ status: "loading" });
    return { status: closing ? "closing" : "ok" };
  });

  app.get("/metrics", async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  const startedAt = Date.now();
  const modelEntry = () => ({ id: modelName, object: "model", created: Math.floor(startedAt / 1000), owned_by: "wgsl-vlm" });
  app.get("/v1/models", async () => ({ object: "list", data: [modelEntry()] }));
  app.get<{ Params: { id: string } }>("/v1/models/:id", async (request) => {
    if (request.params.id !== modelName) throw modelNotFound(request.params.id, modelName);
    return modelEntry();
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
    })());
  return { url, app, ready, close };
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

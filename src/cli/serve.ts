/** `wgsl-vlm serve`: the OpenAI-compatible HTTP server (src/serve/server.ts) over one model, and/or a CLIP model for embeddings. */
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadClip, type Clip } from "../embed/clip.js";
import type { VisionLanguageModel } from "../generate/model.js";
import { DEFAULT_REMOTE_MAX_BYTES, DEFAULT_REMOTE_TIMEOUT_MS } from "../serve/images.js";
import { DEFAULT_BODY_LIMIT, DEFAULT_MAX_QUEUE, DEFAULT_SHUTDOWN_TIMEOUT_MS, startServer } from "../serve/server.js";
import { MAX_BATCH } from "../models/llava.js";
import { UsageError, type Command } from "./command.js";
import { loadModelFrom, MODEL_OPTIONS, MODEL_USAGE } from "./model_options.js";
import { gpuOptions, numberOption } from "./options.js";

const DEFAULT_MAX_BATCH = 4;
const MIB = 2 ** 20;

const command: Command = {
  summary: "serve the model over OpenAI's chat API (with a chat page at /), and a CLIP model over its embeddings API",
  usage: `usage: wgsl-vlm serve --model DIR [--clip DIR] [options]
       wgsl-vlm serve --clip DIR [options]          (embeddings only)
  --clip DIR             a CLIP checkpoint folder (CLIPModel) to serve POST /v1/embeddings:
                         text and image embeddings in one space
  --clip-name NAME       the CLIP model's name in the API (default: the folder's name)
  --host ADDRESS         listen on this address (default 127.0.0.1: this machine only)
  --port N               (default 8080; 0 picks a free one)
  --api-key KEY          require "Authorization: Bearer KEY" on /v1/* and /metrics
                         (default: $WGSL_VLM_API_KEY; none: no key needed)
  --model-name NAME      the model's name in the API (default: the folder's name)
  --max-batch N          generations decoded together, one KV-cache each (default ${DEFAULT_MAX_BATCH}, at most ${MAX_BATCH})
  --kv-cache-mb N        the most memory the KV-caches may take: fewer than --max-batch are made if they do not fit
  --max-queue N          requests that may wait beyond those decoding; more get 429 (default ${DEFAULT_MAX_QUEUE})
  --body-limit-mb N      larger request bodies get 413 (default ${DEFAULT_BODY_LIMIT / MIB}: base64 photos are large)
  --allow-remote-images  fetch http(s) image URLs (off: a server that fetches URLs can be made to reach
                         internal addresses; when on, private addresses are refused, fetches time out
                         after ${DEFAULT_REMOTE_TIMEOUT_MS / 1000} s and images over ${DEFAULT_REMOTE_MAX_BYTES / MIB} MiB are refused)
  --shutdown-timeout S   on SIGTERM or SIGINT, cancel generations still running after S seconds (default ${DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000})
  --no-log               no JSON log line per request on stdout
${MODEL_USAGE}

Endpoints: POST /v1/chat/completions, POST /v1/completions (with --model),
POST /v1/embeddings (with --clip), GET /v1/models, GET /health, GET /metrics (Prometheus),
GET / (a chat page).`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        ...MODEL_OPTIONS,
        host: { type: "string" },
        port: { type: "string" },
        "api-key": { type: "string" },
        "model-name": { type: "string" },
        clip: { type: "string" },
        "clip-name": { type: "string" },
        "max-batch": { type: "string" },
        "kv-cache-mb": { type: "string" },
        "max-queue": { type: "string" },
        "body-limit-mb": { type: "string" },
        "allow-remote-images": { type: "boolean" },
        "shutdown-timeout": { type: "string" },
        "no-log": { type: "boolean" },
      },
    });
    if (!values.model && !values.clip) throw new UsageError("--model DIR is required"); // (or --clip DIR alone: a server of embeddings only)
    const port = numberOption(values.port, "port", 8080, (n) => Number.isInteger(n) && n >= 0 && n <= 65535);
    const maxBatch = numberOption(values["max-batch"], "max-batch", DEFAULT_MAX_BATCH, (n) => Number.isInteger(n) && n >= 1 && n <= MAX_BATCH);
    const kvCacheMb = values["kv-cache-mb"] === undefined ? undefined : numberOption(values["kv-cache-mb"], "kv-cache-mb", 0, (n) => n > 0);
    const maxQueue = numberOption(values["max-queue"], "max-queue", DEFAULT_MAX_QUEUE, (n) => Number.isInteger(n) && n >= 0);
    const bodyLimitMb = numberOption(values["body-limit-mb"], "body-limit-mb", DEFAULT_BODY_LIMIT / MIB, (n) => n > 0);
    const shutdownS = numberOption(values["shutdown-timeout"], "shutdown-timeout", DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000, (n) => n >= 0);
    const apiKey = values["api-key"] ?? process.env.WGSL_VLM_API_KEY;
    if (apiKey !== undefined && apiKey.length === 0) throw new UsageError("--api-key must not be empty");
    const modelName = values.model ? (values["model-name"] ?? basename(resolve(values.model))) : undefined;
    if (!values.model && values["model-name"] !== undefined) throw new UsageError("--model-name goes with --model");
    if (!values.clip && values["clip-name"] !== undefined) throw new UsageError("--clip-name goes with --clip");
    const clipName = values.clip ? (values["clip-name"] ?? basename(resolve(values.clip))) : undefined;
    if (modelName !== undefined && modelName === clipName) throw new UsageError(`the model and the CLIP model are both named '${modelName}': give --model-name or --clip-name`);
    const names = [modelName, clipName].filter((n) => n !== undefined).join(" and ");

    // The server listens first (a port in use fails at once) and answers 503 on /health until
    // the model is loaded.
    let startLoading!: () => void;
    const start = new Promise<void>((go) => (startLoading = go));
    const loading: Promise<VisionLanguageModel> | undefined = values.model
      ? start.then(() => loadModelFrom(values, { maxBatch, kvCacheBytes: kvCacheMb === undefined ? undefined : Math.floor(kvCacheMb * MIB) }))
      : undefined;
    // After the chat model (one loading at a time; its progress bar has stderr to itself).
    const clipDir = values.clip;
    const clipLoading: Promise<Clip> | undefined = clipDir
      ? (loading ?? start).then(
          () => loadClip(clipDir, gpuOptions(values)),
          () => new Promise<never>(() => {}), // the chat model failed: the server stops anyway
        )
      : undefined;
    const server = await startServer({
      model: loading,
      modelName,
      clip: clipLoading,
      clipName,
      host: values.host,
      port,
      apiKey,
      maxQueue,
      bodyLimitBytes: Math.floor(bodyLimitMb * MIB),
      remoteImages: { allow: values["allow-remote-images"] === true },
      log: values["no-log"] ? false : process.stdout,
      shutdownTimeoutMs: shutdownS * 1000,
    });
    startLoading();
    if (!values.quiet) process.stderr.write(`listening on ${server.url} (${names} loading)\n`);
    const stopped = new Promise<string>((done) => {
      process.once("SIGTERM", () => done("SIGTERM"));
      process.once("SIGINT", () => done("SIGINT"));
    });
    const failed = Promise.all([server.ready, server.clipReady]).then(
      ([model, clip]) => {
        if (!values.quiet) {
          const parts = [model ? `${modelName} (up to ${model.maxBatch} generations at once)` : null, clip ? `${clipName} (embeddings, ${clip.dimensions} dimensions)` : null];
          process.stderr.write(`ready: ${parts.filter((p) => p !== null).join(" and ")} on ${server.url}\n`);
        }
        return new Promise<never>(() => {});
      },
      (error: Error) => error,
    );
    const outcome = await Promise.race([stopped, failed]);
    if (outcome instanceof Error) {
      await server.close();
      throw outcome;
    }
    if (!values.quiet) process.stderr.write(`${outcome}: finishing the requests in flight (at most ${shutdownS} s), then exiting\n`);
    await server.close();
    (await clipLoading)?.dispose();
    (await loading)?.dispose();
    return 0;
  },
};

export default command;

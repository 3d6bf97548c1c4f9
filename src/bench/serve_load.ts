/**
 * `wgsl-vlm bench serve`: the server under load, as its clients see it.
 *
 * The model is served in-process (src/serve/server.ts) on a free loopback port, and for each
 * level of concurrency C, C clients send streaming chat requests back to back over HTTP until
 * `requests` have been answered: each asks "Describe the image." about its own image of the
 * shapes world (a fresh scene per request, so neither prompt caching nor the image feature
 * cache shortcuts the work), as a data: URL. Per level: requests/s, the time to the first
 * streamed text (p50, p99: the queue and the prefill), and the aggregate tokens/s of all
 * clients; the server decodes up to C of them together (maxBatch is the model's).
 */
import { performance } from "node:perf_hooks";
import type { VisionLanguageModel } from "../generate/model.js";
import { startServer } from "../serve/server.js";
import { exampleRandom, renderScenePng, sampleScene } from "../shapes/world.js";

export interface ServeLoadOptions {
  /** Concurrent clients, one level each (each at most the model's maxBatch to be decoded together). */
  clients: readonly number[];
  /** Requests answered per level. */
  requests: number;
  /** max_tokens of each request. */
  maxTokens: number;
  onProgress?: (line: string) => void;
}

export interface ServeLoadLevel {
  clients: number;
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  firstTokenP50Ms: number;
  firstTokenP99Ms: number;
  /** Completion tokens of all requests over the level's wall time. */
  tokensPerSecond: number;
  completionTokens: number;
}

export const LOAD_QUESTION = "Describe the image.";

export async function measureServeLoad(model: VisionLanguageModel, modelName: string, options: ServeLoadOptions): Promise<ServeLoadLevel[]> {
  const server = await startServer({ model, modelName, port: 0, log: false, maxQueue: Math.max(...options.clients) });
  const levels: ServeLoadLevel[] = [];
  let imageIndex = 0;
  const nextImage = async () => `data:image/png;base64,${(await renderScenePng(sampleScene(exampleRandom(7, imageIndex++)))).toString("base64")}`;
  try {
    // One request first, untimed: pipelines compile on first use.
    await streamOne(server.url, await nextImage(), options.maxTokens);
    for (const clients of options.clients) {
      let started = 0;
      const firstTokens: number[] = [];
      let tokens = 0;
      const begin = performance.now();
      const client = async () => {
        while (started < options.requests) {
          started++;
          const r = await streamOne(server.url, await nextImage(), options.maxTokens);
          firstTokens.push(r.firstTokenMs);
          tokens += r.completionTokens;
        }
      };
      await Promise.all(Array.from({ length: clients }, client));
      const seconds = (performance.now() - begin) / 1000;
      const level = {
        clients,
        requests: options.requests,
        seconds,
        requestsPerSecond: options.requests / seconds,
        firstTokenP50Ms: percentile(firstTokens, 0.5),
        firstTokenP99Ms: percentile(firstTokens, 0.99),
        tokensPerSecond: tokens / seconds,
        completionTokens: tokens,
      };
      levels.push(level);
      options.onProgress?.(`${clients} clients: ${level.requestsPerSecond.toFixed(2)} requests/s, first token p50 ${level.firstTokenP50Ms.toFixed(0)} ms, ${level.tokensPerSecond.toFixed(1)} tokens/s`);
    }
  } finally {
    await server.close();
  }
  return levels;
}

/** One streamed chat request: when its first text arrived, and the tokens of its usage chunk. */
async function streamOne(url: string, image: string, maxTokens: number): Promise<{ firstTokenMs: number; completionTokens: number }> {
  const sent = performance.now();
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: image } }, { type: "text", text: LOAD_QUESTION }] }],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!response.ok || !response.body) throw new Error(`bench serve: the server answered HTTP ${response.status}: ${await response.text()}`);
  let firstTokenMs = NaN;
  let completionTokens = 0;
  let pending = "";
  const decoder = new TextDecoder();
  for await (const bytes of response.body) {
    pending += decoder.decode(bytes, { stream: true });
    const events = pending.split("\n\n");
    pending = events.pop() ?? "";
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data) as { choices: { delta?: { content?: string } }[]; usage?: { completion_tokens: number } | null; error?: { message: string } };
      if (chunk.error) throw new Error(`bench serve: a generation failed: ${chunk.error.message}`);
      if (Number.isNaN(firstTokenMs) && chunk.choices[0]?.delta?.content) firstTokenMs = performance.now() - sent;
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
  }
  return { firstTokenMs: Number.isNaN(firstTokenMs) ? performance.now() - sent : firstTokenMs, completionTokens };
}

/** The nearest-rank percentile (q in (0, 1]) of `values`. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

export function serveLoadMarkdown(model: string, levels: readonly ServeLoadLevel[], maxTokens: number): string {
  const rows = levels.map(
    (l) => `| ${l.clients} | ${l.requests} | ${l.requestsPerSecond.toFixed(2)} | ${l.firstTokenP50Ms.toFixed(0)} / ${l.firstTokenP99Ms.toFixed(0)} ms | ${l.tokensPerSecond.toFixed(1)} (${(l.completionTokens / l.requests).toFixed(1)} a request) |`,
  );
  return [
    `Streaming chat requests against \`wgsl-vlm serve\` on ${model}: "${LOAD_QUESTION}" about a fresh 72-px shapes-world image each, max_tokens ${maxTokens}, greedy.`,
    "",
    "| concurrent clients | requests | requests/s | first token p50 / p99 | tokens/s, all clients |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

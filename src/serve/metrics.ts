/**
 * `GET /metrics`, in Prometheus' text format, through prom-client (its own registry, so two
 * servers in one process do not share counters): requests by endpoint and status, tokens in
 * and out, time to first token, decode rate, and, read when scraped, the batch's occupancy,
 * the queue and the GPU memory; plus prom-client's process metrics (CPU, heap, event loop lag).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { VisionLanguageModel } from "../generate/model.js";

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({ name: "wgsl_vlm_requests_total", help: "Requests answered, by endpoint and HTTP status", labelNames: ["endpoint", "status"], registers: [this.registry] });
  private readonly promptTokens = new Counter({ name: "wgsl_vlm_prompt_tokens_total", help: "Prompt positions of finished generations (image features included)", registers: [this.registry] });
  private readonly cachedTokens = new Counter({ name: "wgsl_vlm_cached_prompt_tokens_total", help: "Prompt positions taken from the KV-cache (prompt caching)", registers: [this.registry] });
  private readonly completionTokens = new Counter({ name: "wgsl_vlm_completion_tokens_total", help: "Tokens generated", registers: [this.registry] });
  private readonly firstToken = new Histogram({
    name: "wgsl_vlm_time_to_first_token_seconds",
    help: "From the request's arrival to its first token",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  private readonly decodeRate = new Histogram({
    name: "wgsl_vlm_decode_tokens_per_second",
    help: "Each generation's decode rate after its first token",
    buckets: [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [this.registry],
  });

  constructor(model: () => VisionLanguageModel | null) {
    const registers = [this.registry];
    new Gauge({ name: "wgsl_vlm_batch_running", help: "Generations holding a KV-cache now", registers, collect() { this.set(model()?.load.running ?? 0); } });
    new Gauge({ name: "wgsl_vlm_batch_max", help: "The most generations decoded together (--max-batch)", registers, collect() { this.set(model()?.maxBatch ?? 0); } });
    new Gauge({ name: "wgsl_vlm_queue_length", help: "Generations waiting for a KV-cache", registers, collect() { this.set(model()?.load.waiting ?? 0); } });
    new Gauge({
      name: "wgsl_vlm_gpu_memory_bytes",
      help: "GPU memory of the runtime's buffer pool: live tensors, pooled free buffers, peak",
      labelNames: ["kind"],
      registers,
      collect() {
        const stats = model()?.gpu.memory();
        this.set({ kind: "live" }, stats?.liveBytes ?? 0);
        this.set({ kind: "pooled" }, stats?.pooledBytes ?? 0);
        this.set({ kind: "peak" }, stats?.peakBytes ?? 0);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: "wgsl_vlm_" });
  }

  answered(endpoint: string, status: number): void {
    this.requests.inc({ endpoint, status: String(status) });
  }

  generated(usage: { promptTokens: number; cachedPromptTokens: number; completionTokens: number }, firstTokenSeconds: number | null, decodeTokensPerSecond: number): void {
    this.promptTokens.inc(usage.promptTokens);
    this.cachedTokens.inc(usage.cachedPromptTokens);
    this.completionTokens.inc(usage.completionTokens);
    if (firstTokenSeconds !== null) this.firstToken.observe(firstTokenSeconds);
    if (decodeTokensPerSecond > 0) this.decodeRate.observe(decodeTokensPerSecond);
  }
}

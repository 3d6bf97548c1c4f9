/**
 * Continuous batching: every sequence being decoded on a model steps together.
 *
 * One decode step feeds each sequence's last token through the decoder as one row of a batch:
 * the projections become small matrix products that read each weight once for all rows (the
 * cost of decoding is reading the weights, so B rows cost little more than one), while RoPE,
 * the KV-cache write and attention run per sequence, over its own cache and its own length.
 * Each row's logits are sampled with that sequence's own options, its id written to row b of
 * one token buffer, which the next step's embedding lookup reads whole.
 *
 * Sequences join after their prefill (which the caller records and whose first token it reads
 * and handles) and leave when they stop, between steps; the others do not notice, except that
 * a step's composition changed. A step is captured once per composition (gpu.capture) and
 * replayed while the composition holds and every row stays within the context bucket it was
 * captured for (token_step.ts); each row's position sits in a small state tensor written once
 * per step.
 *
 * Pipelined: step n+1 is recorded and submitted before step n's ids are read, so the GPU is
 * never idle while the CPU reads, streams and checks stops. A sequence that stops at token n
 * has had token n+1 computed for it already; that token is dropped. Every sequence's output is
 * the same as if it ran alone: its rows never mix with the others' (each row of a matrix
 * product is its own dot products, and attention and sampling are per sequence).
 */
import { performance } from "node:perf_hooks";
import { offsetBy, type StepValue } from "../kernels/step_value.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import type { HostArray } from "../tensor/dtype.js";
import type { RecordedProgram } from "../tensor/program.js";
import type { Tensor } from "../tensor/tensor.js";
import type { KVCache, LlamaDecoder } from "../models/llama.js";
import { bucketEnd, type TokenSampler } from "./token_step.js";

/** One sequence being decoded. */
export interface Sequence {
  readonly cache: KVCache;
  readonly sampler: TokenSampler;
  /** The last position it ever feeds a token at (its last token is never fed back). */
  readonly lastPosition: number;
  /**
   * Called with each token decoded for it, in order. Returning false takes it out of the batch;
   * the token already on its way for it is dropped.
   */
  onToken(id: number): boolean;
  /** The batch failed; the sequence is out of it. */
  onError(error: unknown): void;
}

interface Row {
  sequence: Sequence;
  /** The position draw 1 is fed at (cache.length when it joined). */
  firstPosition: number;
  /** The last position the captured program serves this row. */
  max: number;
  /** Out: no more steps, no more tokens. */
  left: boolean;
}

export interface BatchOptions {
  /** Record step n+1 before reading step n (default true); false waits for each step's ids first (for the benchmarks). */
  pipelined?: boolean;
  /**
   * Told of each step recorded: its rows, the CPU milliseconds it took (replayMs: of which
   * recording its launches), whether it captured the step anew.
   */
  onStep?: (step: { rows: number; recordMs: number; replayMs: number; captured: boolean }) => void;
}

interface Step {
  rows: Row[];
  read: Promise<HostArray>;
}

export class DecodeBatch {
  /** u32 [maxBatch]: row b's last sampled id. */
  private readonly tokens: Tensor;
  /** u32 [maxBatch]: where the rows' ids are moved from when the rows change. */
  private readonly scratch: Tensor;
  /** u32 [maxBatch]: the position row b's token is fed at, written before each step. */
  private readonly positions: Tensor;
  /** The rows of the last step recorded, in order. */
  private rows: Row[] = [];
  private readonly joining: { row: Row; token: number }[] = [];
  private program: RecordedProgram | null = null;
  /** The loop, while it runs. */
  private loop: Promise<void> | null = null;

  constructor(
    private readonly gpu: Gpu,
    private readonly decoder: LlamaDecoder,
    readonly maxBatch: number,
    private readonly options: BatchOptions = {},
  ) {
    check(Number.isInteger(maxBatch) && maxBatch >= 1, () => `maxBatch must be an integer >= 1, not ${maxBatch}`);
    const make = (name: string) => gpu.empty([maxBatch], "u32", { name, persistent: true });
    this.tokens = make("batch tokens");
    this.scratch = make("batch token scratch");
    this.positions = make("batch positions");
  }

  /** Sequences in the batch or about to join it. */
  get size(): number {
    return this.rows.filter((r) => !r.left).length + this.joining.length;
  }

  /**
   * Adds `sequence`, whose prefill has filled its cache and whose last token, `token`, the caller
   * has already handled: the next step feeds it at position cache.length.
   */
  join(sequence: Sequence, token: number): void {
    check(this.size < this.maxBatch, () => `decode batch: already ${this.maxBatch} sequences (maxBatch)`);
    const firstPosition = sequence.cache.length;
    this.joining.push({ row: { sequence, firstPosition, max: -1, left: false }, token });
    // Started a microtask later, so that sequences joining together start in one step.
    this.loop ??= Promise.resolve().then(() => this.run());
  }

  /** Resolves once the batch has no sequence and nothing in flight (the loop has stopped). */
  async idle(): Promise<void> {
    for (let loop = this.loop; loop; loop = this.loop === loop ? null : this.loop) await loop;
  }

  /** Takes `sequence` out (it gets no more tokens); the step on its way for it still runs. */
  leave(sequence: Sequence): void {
    for (const row of this.rows) if (row.sequence === sequence) row.left = true;
    const at = this.joining.findIndex((j) => j.row.sequence === sequence);
    if (at >= 0) this.joining.splice(at, 1);
  }

  /** Frees the batch's buffers (after its sequences have left). */
  dispose(): void {
    this.program?.dispose();
    this.program = null;
    for (const t of [this.tokens, this.scratch, this.positions]) t.dispose();
  }

  private async run(): Promise<void> {
    let inFlight: Step | null = null;
    let next: Step | null = null;
    try {
      const pipelined = this.options.pipelined ?? true;
      for (;;) {
        if (pipelined) next = this.recordStep();
        if (inFlight) this.deliver(inFlight.rows, await inFlight.read);
        inFlight = pipelined ? next : this.recordStep();
        next = null;
        if (!inFlight && this.joining.length === 0 && this.rows.every((r) => r.left || !this.needsStep(r))) {
          // Empty: the next sequence to join changes the rows, so the program would be captured anew anyway.
          this.program?.dispose();
          this.program = null;
          this.loop = null;
          return;
        }
      }
    } catch (error) {
      await Promise.all([inFlight?.read, next?.read].map((read) => read?.catch(() => undefined)));
      const everyone = [...this.rows, ...this.joining.splice(0).map((j) => j.row)];
      this.rows = [];
      this.program?.dispose();
      this.program = null;
      this.loop = null;
      for (const row of everyone) {
        if (!row.left) {
          row.left = true;
          row.sequence.onError(error);
        }
      }
    }
  }

  private needsStep(row: Row): boolean {
    return row.sequence.cache.length <= row.sequence.lastPosition;
  }

  /** Records the next step for every row that needs one; null if none does. */
  private recordStep(): Step | null {
    const staying = this.rows.filter((r) => !r.left && this.needsStep(r));
    const joined = this.joining.splice(0);
    const rows = [...staying, ...joined.map((j) => j.row)];
    if (rows.length === 0) {
      this.rows = [];
      return null;
    }
    const { gpu } = this;
    const previous = this.rows;
    this.rows = rows; // before anything that may throw: whoever is in this step hears of a failure
    const changed = rows.length !== previous.length || rows.some((r, b) => r !== previous[b]);
    if (changed) {
      // Each staying row's last id moves to its new row (it is on the GPU only); a joiner's is known.
      const moves = staying.map((r, b) => [previous.indexOf(r), b]).filter(([from, to]) => from !== to);
      if (moves.length > 0) {
        gpu.copyBuffer(this.tokens.buffer, 0, this.scratch.buffer, 0, 4 * this.maxBatch);
        for (const [from, to] of moves) gpu.copyBuffer(this.scratch.buffer, 4 * from, this.tokens.buffer, 4 * to, 4);
      }
      joined.forEach((j, i) => gpu.write(this.tokens, Uint32Array.of(j.token), 4 * (staying.length + i)));
    }
    const started = performance.now();
    const positions = rows.map((r) => r.sequence.cache.length);
    const captured = changed || this.program === null || rows.some((r, b) => positions[b] > r.max);
    if (captured) this.capture(rows, positions);
    gpu.write(this.positions, Uint32Array.from(positions));
    const replayMs = gpu.replay(this.program!);
    for (const r of rows) {
      r.sequence.cache.length++;
      r.sequence.cache.writes++;
    }
    const read = this.tokens.read();
    this.options.onStep?.({ rows: rows.length, recordMs: performance.now() - started, replayMs, captured });
    return { rows, read };
  }

  /** Captures the step for `rows`, each served up to the end of its current context bucket. */
  private capture(rows: Row[], positions: number[]): void {
    this.program?.dispose();
    this.program = null;
    const { decoder, tokens } = this;
    // (Never past the last position the row feeds: its sampler's history ends there.)
    for (const [b, r] of rows.entries()) r.max = Math.min(r.sequence.cache.capacity, bucketEnd(positions[b] + 1), r.sequence.lastPosition + 1) - 1;
    this.program = this.gpu.capture(`decode step of ${rows.length}`, () => {
      const starts = rows.map((r, b): StepValue => ({ tensor: this.positions, index: b, plus: 0, max: r.max }));
      const sequences = rows.map((r, b) => ({ cache: r.sequence.cache, start: starts[b], count: 1 }));
      const logits = decoder.logits(decoder.forwardSequences(decoder.embed(tokens.slice(0, rows.length)), sequences));
      // Draw d is fed at firstPosition + d - 1.
      rows.forEach((r, b) => r.sequence.sampler.sample(logits, offsetBy(starts[b], 1 - r.firstPosition), { tokens, index: b, row: b }));
    });
  }

  private deliver(rows: Row[], ids: HostArray): void {
    rows.forEach((row, b) => {
      if (row.left) return;
      try {
        if (!row.sequence.onToken(ids[b])) row.left = true;
      } catch (error) {
        row.left = true;
        row.sequence.onError(error);
      }
    });
  }
}

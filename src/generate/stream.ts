/**
 * What generate() returns: an async generator over a generation's chunks, whose return value is
 * the result, and which can never lock its model.
 *
 * It takes a turn (one of the model's KV-caches, turns.ts) at its first next(), after the
 * request is checked and its images read, so a bad request fails at once even while the model
 * is busy, and gives it back as soon as it finishes, fails, or is ended with return() or
 * throw(). A caller may also just stop reading it: once another request has waited for a turn
 * `abandonAfterMs` while this stream was not being read, it is abandoned: its generation is
 * cancelled, its GPU memory and its turn are given back, and every later next() on it throws
 * AbandonedStreamError. The clock runs only from one
 * next() resolving to the caller's next call, and starts again at each, so a stream that is
 * read steadily, however long its tokens take, is never cancelled.
 */
import { AbandonedStreamError, describeValue } from "./errors.js";
import type { GenerateChunk, GenerateResult } from "./request.js";
import type { SlotChoice, TurnQueue, TurnTaker } from "./turns.js";

/** How long a stream nobody reads may keep another request waiting (loadModel's `abandonAfterMs`). */
export const DEFAULT_ABANDON_AFTER_MS = 10_000;

/** The most setTimeout can wait. */
const MAX_ABANDON_AFTER_MS = 2 ** 31 - 1;

/** `value` as an abandonAfterMs, or a RangeError saying what one is. */
export function checkAbandonAfterMs(value: unknown): number {
  if (typeof value !== "number" || !(value >= 0 && value <= MAX_ABANDON_AFTER_MS)) {
    throw new RangeError(`abandonAfterMs must be a number of milliseconds in [0, ${MAX_ABANDON_AFTER_MS}], not ${describeValue(value)}`);
  }
  return value;
}

type Steps = AsyncGenerator<GenerateChunk, GenerateResult>;
type Step = IteratorResult<GenerateChunk, GenerateResult>;

/** A finished generator's answer to next(), as a native one gives it. */
function finished(): Step {
  return { done: true, value: undefined } as unknown as Step;
}

export class GenerationStream implements AsyncGenerator<GenerateChunk, GenerateResult>, TurnTaker {
  /**
   * new: not read yet; queued: waiting for the turn; holding: has the turn, between two reads
   * (the only state in which it can be abandoned); running: computing the next chunk.
   */
  private state: "new" | "queued" | "holding" | "running" | "finished" | "abandoned" = "new";
  private steps: Steps | null = null;
  private giveBack: (() => void) | null = null;
  private clock: NodeJS.Timeout | null = null;
  /** Set by return() or throw() before the stream has its turn: a next() still pending then gives up (done) without generating. */
  private endRequested = false;
  /** Each call runs after the one before it has settled, as on a native generator. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly turns: TurnQueue,
    private readonly abandonAfterMs: number,
    /**
     * Checks the request (throwing RequestError) and returns which slot it prefers and how to
     * start its steps in the slot it is given.
     */
    private readonly open: () => Promise<{ choose?: SlotChoice; start: (slot: number) => Steps }>,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<Step> {
    this.stopClock();
    return this.serial(async () => {
      if (this.state === "abandoned") throw this.abandonedError();
      if (this.state === "new") await this.start();
      if (this.state !== "holding") return finished();
      this.state = "running";
      try {
        const step = await this.steps!.next();
        if (step.done) {
          this.state = "finished";
          this.release();
        } else {
          this.state = "holding";
          if (this.turns.hasWaiters) this.startClock();
        }
        return step;
      } catch (error) {
        this.state = "finished";
        this.release();
        throw error;
      }
    });
  }

  return(value?: GenerateResult | PromiseLike<GenerateResult>): Promise<Step> {
    this.stopClock();
    if (this.state === "new" || this.state === "queued") this.endRequested = true;
    return this.serial(async () => {
      await this.close();
      this.state = "finished";
      return { done: true, value: (await value) as GenerateResult };
    });
  }

  throw(error: unknown): Promise<Step> {
    this.stopClock();
    if (this.state === "new" || this.state === "queued") this.endRequested = true;
    return this.serial(async () => {
      await this.close();
      this.state = "finished";
      throw error;
    });
  }

  onWaiter(): void {
    if (this.state === "holding") this.startClock();
  }

  private async start(): Promise<void> {
    this.state = "finished"; // if the request is refused
    const opened = await this.open();
    if (this.endRequested) return;
    this.state = "queued";
    const { slot, giveBack } = await this.turns.take(this, opened.choose);
    if (this.endRequested) {
      this.state = "finished";
      giveBack();
      return;
    }
    this.steps = opened.start(slot);
    this.giveBack = giveBack;
    this.state = "holding";
  }

  /** Ends the steps (their `finally` frees what they hold), then gives the turn back. */
  private async close(): Promise<void> {
    const steps = this.steps;
    this.steps = null;
    try {
      await steps?.return(undefined as never);
    } finally {
      this.release();
    }
  }

  private release(): void {
    this.stopClock();
    this.steps = null;
    this.giveBack?.();
    this.giveBack = null;
  }

  private startClock(): void {
    this.clock ??= setTimeout(() => this.abandon(), this.abandonAfterMs);
  }

  private stopClock(): void {
    if (this.clock) clearTimeout(this.clock);
    this.clock = null;
  }

  private abandon(): void {
    this.clock = null;
    this.state = "abandoned";
    // Nobody is reading, so nobody can be told if freeing fails (on a lost device, say); the
    // turn is given back either way.
    this.serial(() => this.close()).catch(() => undefined);
  }

  private abandonedError(): AbandonedStreamError {
    return new AbandonedStreamError(
      `this generate() stream was cancelled: it was not read for ${this.abandonAfterMs} ms while another request ` +
        "waited for the model (abandonAfterMs); read a stream steadily, or end it with return()",
    );
  }

  private serial<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.tail.then(operation);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

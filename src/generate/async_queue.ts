/**
 * Items a producer pushes (the decode batch, each id as it is decoded) and a consumer awaits (a
 * generate() stream, at its reader's pace): a queue that ends or fails once. A slow reader
 * never holds the batch up; what it has not read waits here (at most one id per token).
 */
export class AsyncQueue<T> {
  private readonly items: T[] = [];
  private ended = false;
  private failure: { error: unknown } | null = null;
  private wake: (() => void) | null = null;

  push(item: T): void {
    if (this.ended) return;
    this.items.push(item);
    this.notify();
  }

  /** No more items: next() is done once the queue is drained. */
  end(): void {
    this.ended = true;
    this.notify();
  }

  /** Ends with an error: next() throws it once the items before it are read. */
  fail(error: unknown): void {
    if (this.ended) return;
    this.failure = { error };
    this.end();
  }

  async next(): Promise<IteratorResult<T, undefined>> {
    while (this.items.length === 0 && !this.ended) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.items.length > 0) return { done: false, value: this.items.shift()! };
    if (this.failure) throw this.failure.error;
    return { done: true, value: undefined };
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

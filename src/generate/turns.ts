/**
 * Generations on one model take turns (they share its KV-cache): first come, first served. The
 * one holding the turn is told when someone starts waiting for it, so a stream its caller
 * stopped reading can give the turn up (see stream.ts).
 */
export interface TurnTaker {
  /** Someone is now waiting for the turn this taker holds. */
  onWaiter(): void;
}

export class TurnQueue {
  private holder: TurnTaker | null = null;
  private readonly waiting: { taker: TurnTaker; start: () => void }[] = [];

  get hasWaiters(): boolean {
    return this.waiting.length > 0;
  }

  /** Resolves once `taker` holds the turn, with the function that gives it back (once; later calls do nothing). */
  async take(taker: TurnTaker): Promise<() => void> {
    const holder = this.holder;
    if (holder === null) {
      this.holder = taker;
    } else {
      const started = new Promise<void>((start) => this.waiting.push({ taker, start }));
      holder.onWaiter();
      await started;
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.passOn();
    };
  }

  private passOn(): void {
    const next = this.waiting.shift();
    this.holder = next?.taker ?? null;
    next?.start();
  }
}

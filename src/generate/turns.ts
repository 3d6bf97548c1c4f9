/**
 * Generations on one model take turns for its KV-caches, one cache (a "slot") per generation
 * at a time: first come, first served. With several slots (maxBatch), that many generations
 * run at once, decoded together (batch.ts); with one, they run one after another. A taker may
 * say which free slot it prefers (the one whose cache already holds most of its prompt, see
 * prompt_cache.ts). Those holding slots are told when someone starts waiting, so a stream its
 * caller stopped reading can give its slot up (see stream.ts).
 */
export interface TurnTaker {
  /** Someone is now waiting for a slot, and none is free. */
  onWaiter(): void;
}

/** Picks one of the free slots (given in increasing order). */
export type SlotChoice = (free: readonly number[]) => number;

/** A slot held, and the function that gives it back (once; later calls do nothing). */
export interface Turn {
  slot: number;
  giveBack: () => void;
}

export class TurnQueue {
  private readonly holders: (TurnTaker | null)[];
  private readonly waiting: { taker: TurnTaker; choose: SlotChoice; start: (slot: number) => void }[] = [];

  constructor(readonly slots = 1) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`a turn queue needs an integer number of slots >= 1, not ${slots}`);
    this.holders = Array(slots).fill(null);
  }

  get hasWaiters(): boolean {
    return this.waiting.length > 0;
  }

  /** Takers waiting for a slot. */
  get waiters(): number {
    return this.waiting.length;
  }

  /** Slots held now. */
  get busy(): number {
    return this.holders.filter((h) => h !== null).length;
  }

  /** Resolves once `taker` holds a slot (the one `choose` picks among the free ones, default the first). */
  async take(taker: TurnTaker, choose: SlotChoice = (free) => free[0]): Promise<Turn> {
    let slot: number;
    if (this.waiting.length === 0 && this.freeSlots().length > 0) {
      slot = this.assign(taker, choose);
    } else {
      const started = new Promise<number>((start) => this.waiting.push({ taker, choose, start }));
      for (const holder of this.holders) holder?.onWaiter();
      slot = await started;
    }
    let given = false;
    return {
      slot,
      giveBack: () => {
        if (given) return;
        given = true;
        this.holders[slot] = null;
        this.passOn();
      },
    };
  }

  private freeSlots(): number[] {
    return this.holders.flatMap((h, i) => (h === null ? [i] : []));
  }

  private assign(taker: TurnTaker, choose: SlotChoice): number {
    const free = this.freeSlots();
    const picked = choose(free);
    const slot = free.includes(picked) ? picked : free[0];
    this.holders[slot] = taker;
    return slot;
  }

  private passOn(): void {
    const next = this.waiting.shift();
    if (next) next.start(this.assign(next.taker, next.choose));
  }
}

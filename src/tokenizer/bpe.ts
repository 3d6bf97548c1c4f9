/**
 * The byte-pair merge loop shared by both kinds of BPE we read.
 *
 * A word starts as a row of symbols (characters, or bytes). Every adjacent pair that the model
 * knows how to join is a candidate with a priority; the best candidate is joined, which can make
 * new candidates with its neighbours, and so on until no adjacent pair joins. SentencePiece ranks
 * a pair by the score of the piece it makes (higher first); Hugging Face's tokenizers ranks it by
 * the merge's line in the merges list (earlier first). Both break ties by taking the leftmost pair.
 *
 * Done naively that is a rescan of the row per merge, O(n^2). Here the symbols form a linked list
 * and the candidates sit in a binary heap, so each merge costs O(log n). A candidate can go stale
 * when one of its symbols is joined into something else first; rather than delete it from the
 * heap, we check it when it comes out: it is still good only if its left symbol is alive and,
 * with its current right neighbour, still makes the same merge. Symbols only ever grow (a
 * symbol absorbs its right neighbour), so "the same merge" means exactly "the same two symbols".
 * This is also how both reference implementations do it, which keeps us id for id with them.
 *
 * Encoding calls this once per word, so the working arrays are kept and reused between calls.
 */

/** What a model tells the merge loop about its symbols. A merge is named by a key >= 0. */
export interface MergeRules {
  /** The merge that joins symbol `left` with symbol `right` (its neighbour), or -1 if none does. */
  find(left: number, right: number): number;
  /** How good a merge is: higher merges first. */
  priority(key: number): number;
  /** Joins `right` into `left` by merge `key`: the model updates what it keeps per symbol. */
  join(left: number, right: number, key: number): void;
  /** Told of every candidate as it is queued (SentencePiece's resegmentation needs this). */
  queued?(left: number, right: number, key: number): void;
}

export class SymbolMerger {
  private prev = new Int32Array(64);
  private next = new Int32Array(64);
  private alive = new Uint8Array(64);
  private readonly queue = new CandidateQueue();

  /**
   * Merges a row of `count` symbols as far as the rules allow; returns the indices of the
   * symbols that are left, in order (each now stands for the span of the symbols it absorbed).
   */
  merge(count: number, rules: MergeRules): number[] {
    if (count === 0) return [];
    if (count > this.prev.length) this.grow(count);
    const { prev, next, alive, queue } = this;
    for (let i = 0; i < count; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < count ? i + 1 : -1;
      alive[i] = 1;
    }
    queue.clear();
    for (let i = 1; i < count; i++) this.consider(i - 1, i, rules);
    while (queue.pop()) {
      const left = queue.left;
      const key = queue.key;
      if (!alive[left]) continue;
      const right = next[left];
      if (right < 0 || rules.find(left, right) !== key) continue;
      rules.join(left, right, key);
      alive[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      this.consider(prev[left], left, rules);
      this.consider(left, next[left], rules);
    }
    const survivors: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) survivors.push(i);
    return survivors;
  }

  private consider(left: number, right: number, rules: MergeRules): void {
    if (left < 0 || right < 0) return;
    const key = rules.find(left, right);
    if (key < 0) return;
    this.queue.push(rules.priority(key), left, key);
    rules.queued?.(left, right, key);
  }

  private grow(count: number): void {
    const size = Math.max(count, 2 * this.prev.length);
    this.prev = new Int32Array(size);
    this.next = new Int32Array(size);
    this.alive = new Uint8Array(size);
  }
}

/**
 * A binary max-heap of candidates ordered by (priority descending, left index ascending), kept in
 * parallel arrays so pushing and popping allocate nothing. pop() leaves the best candidate in
 * `left` and `key`.
 */
class CandidateQueue {
  private priorities: number[] = [];
  private lefts: number[] = [];
  private keys: number[] = [];
  private size = 0;
  left = -1;
  key = -1;

  clear(): void {
    this.size = 0;
  }

  push(priority: number, left: number, key: number): void {
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(priority, left, parent)) break;
      this.move(parent, i);
      i = parent;
    }
    this.set(i, priority, left, key);
  }

  /** Takes the best candidate into `left`/`key`; false when the queue is empty. */
  pop(): boolean {
    if (this.size === 0) return false;
    this.left = this.lefts[0];
    this.key = this.keys[0];
    const n = --this.size;
    if (n === 0) return true;
    // Sift the last entry down from the root.
    const priority = this.priorities[n];
    const left = this.lefts[n];
    const key = this.keys[n];
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const best = r < n && this.beats(r, this.priorities[l], this.lefts[l]) ? r : l;
      if (!this.beats(best, priority, left)) break;
      this.move(best, i);
      i = best;
    }
    this.set(i, priority, left, key);
    return true;
  }

  /** Whether (priority, left) comes before the entry at `index`. */
  private before(priority: number, left: number, index: number): boolean {
    const other = this.priorities[index];
    return priority > other || (priority === other && left < this.lefts[index]);
  }

  /** Whether the entry at `index` comes before (priority, left). */
  private beats(index: number, priority: number, left: number): boolean {
    const own = this.priorities[index];
    return own > priority || (own === priority && this.lefts[index] < left);
  }

  private move(from: number, to: number): void {
    this.priorities[to] = this.priorities[from];
    this.lefts[to] = this.lefts[from];
    this.keys[to] = this.keys[from];
  }

  private set(index: number, priority: number, left: number, key: number): void {
    this.priorities[index] = priority;
    this.lefts[index] = left;
    this.keys[index] = key;
  }
}

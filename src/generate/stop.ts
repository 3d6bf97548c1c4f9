/**
 * Stop strings in a token stream. Text is released only once it cannot be the beginning of a
 * stop string, so a stop string is never half printed: the generated text grows token by token,
 * and whatever tail of it could still turn into a stop string is held back.
 */
export class StopStringFilter {
  private pending = "";
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {
    for (const s of stops) if (s.length === 0) throw new Error("stop strings must not be empty");
  }

  get hasStopped(): boolean {
    return this.stopped;
  }

  /** Adds decoded text; returns what may be shown now. After a stop string, returns "" forever. */
  push(text: string): string {
    if (this.stopped) return "";
    this.pending += text;
    let cut = -1;
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      const shown = this.pending.slice(0, cut);
      this.pending = "";
      return shown;
    }
    const held = this.heldBack();
    const shown = this.pending.slice(0, this.pending.length - held);
    this.pending = this.pending.slice(this.pending.length - held);
    return shown;
  }

  /** The end of the stream: whatever is held back is plain text after all. */
  flush(): string {
    const rest = this.stopped ? "" : this.pending;
    this.pending = "";
    return rest;
  }

  /** Length of the longest tail of the pending text that is a proper prefix of a stop string. */
  private heldBack(): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.pending.length); n > longest; n--) {
        if (this.pending.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}

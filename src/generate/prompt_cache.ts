/**
 * Prompt caching: work a generation can take over from the ones before it.
 *
 * - KV prefix reuse. A KV-cache still holds the positions the last generation in it ran: its
 *   prompt, then every token it fed back. A chat's next turn repeats all of that and adds a
 *   question, so its prefill need only run the positions after the longest common prefix; the
 *   time to first token then grows with the new tokens only. Each position is named by a key
 *   (a token id, or an image's content hash and row), and a new generation is given the free
 *   cache holding the longest start of its prompt; with no match anywhere, the one used least
 *   recently, so recent conversations survive longest. The last prompt position always runs
 *   (its logits give the first token).
 * - Image features. An image's features (vision tower and projector) are kept, keyed by the
 *   image's bytes, up to a byte budget, least recently used first out; the same image asked
 *   about again is not encoded again.
 */
import { createHash } from "node:crypto";
import type { KVCache } from "../models/llama.js";
import type { Tensor } from "../tensor/tensor.js";

/** What a KV-cache position holds: a token id, or a row of an image's features ("image <hash> <row>"). */
export type PositionKey = number | string;

/** Positions at the start of both. */
export function commonPrefix(a: readonly PositionKey[], b: readonly PositionKey[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** A content hash for an image's bytes (with what else changes its features). */
export function imageKey(bytes: Uint8Array, variant: string): string {
  return createHash("sha256").update(variant).update(bytes).digest("hex").slice(0, 32);
}

/** Each prompt position's key: the ids, with each image token expanded to its image's feature rows. */
export function promptKeys(ids: readonly number[], imageTokenId: number | null, featureCounts: readonly number[], imageKeys: readonly string[]): PositionKey[] {
  const keys: PositionKey[] = [];
  let image = 0;
  for (const id of ids) {
    if (id !== imageTokenId) {
      keys.push(id);
      continue;
    }
    const count = featureCounts[image];
    const key = imageKeys[image++];
    for (let row = 0; row < count; row++) keys.push(`image ${key} ${row}`);
  }
  return keys;
}

/**
 * What each of a model's KV-caches holds, position by position. What is remembered of a cache
 * counts only while nothing else has written it (KVCache.writes): code that runs the decoder
 * on a model's cache directly makes it forget.
 */
export class CacheContents {
  private readonly held: { keys: PositionKey[]; writes: number }[];
  private readonly lastUsed: number[];
  private clock = 0;

  constructor(private readonly caches: readonly KVCache[]) {
    this.held = caches.map(() => ({ keys: [], writes: -1 }));
    this.lastUsed = caches.map(() => 0);
  }

  /** Positions of `prompt` that `slot` holds already, at most prompt.length - 1. */
  reusable(slot: number, prompt: readonly PositionKey[]): number {
    const { keys, writes } = this.held[slot];
    if (writes !== this.caches[slot].writes) return 0;
    return Math.min(commonPrefix(keys, prompt), prompt.length - 1);
  }

  /** The free slot holding the longest start of `prompt`; among equals, the one used least recently. */
  choose(free: readonly number[], prompt: readonly PositionKey[]): number {
    let best = free[0];
    for (const slot of free) {
      const [mine, theirs] = [this.reusable(slot, prompt), this.reusable(best, prompt)];
      if (mine > theirs || (mine === theirs && this.lastUsed[slot] < this.lastUsed[best])) best = slot;
    }
    return best;
  }

  /** `slot` now holds `keys` (what is beyond them is unknown), as of its latest write. */
  set(slot: number, keys: readonly PositionKey[]): void {
    this.held[slot] = { keys: [...keys], writes: this.caches[slot].writes };
    this.lastUsed[slot] = ++this.clock;
  }
}

/** Image features on the GPU by image key, up to `maxBytes` (of GPU buffers), least recently used evicted first. */
export class ImageFeatureCache {
  private readonly entries = new Map<string, Tensor>();
  /** GPU bytes held: the buffers' sizes (what the buffer pool counts). */
  bytes = 0;

  constructor(readonly maxBytes: number) {}

  /** A view of the features for `key` (the caller disposes it; eviction cannot free them under it), or null. */
  get(key: string): Tensor | null {
    const features = this.entries.get(key);
    if (!features) return null;
    this.entries.delete(key); // re-inserted: the most recently used
    this.entries.set(key, features);
    return features.gpu.keep(features.reshape(features.shape));
  }

  /** Keeps a view of `features` under `key` if they fit the budget, evicting the least recently used. */
  put(key: string, features: Tensor): void {
    const size = features.storage.buffer.size;
    if (size > this.maxBytes || this.entries.has(key)) return;
    while (this.bytes + size > this.maxBytes) this.evictOldest();
    this.entries.set(key, features.gpu.keep(features.reshape(features.shape)));
    this.bytes += size;
  }

  get size(): number {
    return this.entries.size;
  }

  dispose(): void {
    while (this.entries.size > 0) this.evictOldest();
  }

  private evictOldest(): void {
    const [key, oldest] = this.entries.entries().next().value as [string, Tensor];
    this.entries.delete(key);
    this.bytes -= oldest.storage.buffer.size;
    oldest.dispose();
  }
}

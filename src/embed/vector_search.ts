/**
 * Exact nearest-neighbour search over unit vectors, on the GPU: the scores of a query against
 * every stored vector are one matrix product (the vectors are the rows of a weight matrix, the
 * query the activation: the runtime's own matmul), and the best K are picked from the scores on
 * the CPU. With unit vectors the score is the cosine.
 *
 * This reads every vector for every query, which is what makes it exact and simple: a million
 * 512-dimensional vectors are 2 GB of f32, read in a fraction of a second by a GPU. Past a few
 * million, an approximate index (IVF, HNSW: an embedded vector database such as LanceDB) reads
 * a small part of them instead, trading exactness for that.
 *
 * The matrix is held as row parts, each within one storage binding (128 MiB on lavapipe), as
 * the model loader holds a large weight.
 */
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { Linear, type RowPart } from "../models/linear.js";
import { partRows } from "../models/load.js";

export interface Hit {
  /** Row of the vector. */
  row: number;
  /** Its dot product with the query (the cosine, for unit vectors). */
  score: number;
}

export class GpuVectors {
  private readonly matrix: Linear;
  private readonly parts: Tensor[];

  /** Vectors already on the GPU: `parts` [rows, dimensions] f32 each, starting at `rowStarts` (made by upload, or a benchmark). */
  static fromParts(gpu: Gpu, rows: number, dimensions: number, parts: Tensor[], rowStarts: number[]): GpuVectors {
    return new GpuVectors(gpu, rows, dimensions, parts, rowStarts);
  }

  private constructor(
    readonly gpu: Gpu,
    readonly rows: number,
    readonly dimensions: number,
    parts: Tensor[],
    rowStarts: number[],
  ) {
    this.parts = parts;
    const rowParts: RowPart[] = parts.map((weight, i) => ({ weight, bias: null, rowStart: rowStarts[i] }));
    this.matrix = new Linear(rowParts, "search vectors");
  }

  /**
   * Uploads `rows` vectors of `dimensions` floats; `readRows(start, end)` gives rows [start, end)
   * (so that a file is read part by part, never whole).
   */
  static async upload(gpu: Gpu, rows: number, dimensions: number, readRows: (start: number, end: number) => Promise<Float32Array>): Promise<GpuVectors> {
    check(rows > 0 && dimensions > 0, () => `search: ${rows} vectors of ${dimensions} dimensions`);
    const ranges = partRows(rows, dimensions * 4, gpu.limits.maxStorageBufferBindingSize, "search vectors");
    const parts: Tensor[] = [];
    try {
      for (const [start, end] of ranges) {
        const data = await readRows(start, end);
        check(data.length === (end - start) * dimensions, () => `search: rows [${start}, ${end}) gave ${data.length} values, not ${(end - start) * dimensions}`);
        parts.push(gpu.tensor(data, [end - start, dimensions], "f32", { persistent: true, name: `search vectors [${start}, ${end})` }));
      }
    } catch (error) {
      for (const p of parts) p.dispose();
      throw error;
    }
    return new GpuVectors(gpu, rows, dimensions, parts, ranges.map(([start]) => start));
  }

  /** The `k` rows with the highest scores against `query`, best first (ties: the lower row first). */
  async search(query: Float32Array, k: number): Promise<Hit[]> {
    check(query.length === this.dimensions, () => `search: the query has ${query.length} dimensions, the vectors ${this.dimensions}`);
    check(Number.isInteger(k) && k >= 1, () => `search: top must be an integer >= 1, not ${k}`);
    const scores = this.gpu.scope(() => this.gpu.keep(this.matrix.forward(this.gpu.tensor(query, [1, this.dimensions], "f32"), "f32")));
    const values = await scores.read();
    scores.dispose();
    return topK(values, k);
  }

  dispose(): void {
    for (const p of this.parts) p.dispose();
  }
}

/**
 * The k largest of `scores` with their rows, best first: one pass keeping a sorted list of
 * at most k (k is small; a heap would pay off only for large k).
 */
export function topK(scores: ArrayLike<number>, k: number): Hit[] {
  const best: Hit[] = [];
  for (let row = 0; row < scores.length; row++) {
    const score = scores[row];
    if (Number.isNaN(score)) continue;
    if (best.length === k && score <= best[k - 1].score) continue;
    let at = best.length;
    while (at > 0 && best[at - 1].score < score) at--;
    best.splice(at, 0, { row, score });
    if (best.length > k) best.pop();
  }
  return best;
}

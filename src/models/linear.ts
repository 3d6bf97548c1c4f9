/**
 * The two ways a model uses a big matrix: as a linear layer (y = x·Wᵀ + b) and as an embedding
 * table (rows looked up by id). Either may be stored as several row parts, each its own GPU
 * buffer, when the whole matrix is larger than one storage binding may be (128 MiB on lavapipe;
 * a 32000×4096 f16 vocabulary is 262 MB). A tied LM head is the embedding table's parts seen
 * as a linear layer. Both only refer to tensors; the WeightStore that made them owns them.
 */
import { embedding } from "../kernels/embedding.js";
import { matmul } from "../kernels/matmul/index.js";
import type { DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import type { Tensor } from "../tensor/tensor.js";

/** Rows [rowStart, rowStart + weight.rows) of a matrix, with the matching slice of the bias. */
export interface RowPart {
  weight: Tensor;
  bias: Tensor | null;
  rowStart: number;
}

export class Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(
    readonly parts: readonly RowPart[],
    readonly name: string,
  ) {
    check(parts.length > 0, () => `${name}: a linear layer needs at least one weight part`);
    this.inFeatures = parts[0].weight.dim(1);
    this.outFeatures = parts.reduce((rows, p) => rows + p.weight.dim(0), 0);
  }

  /**
   * x [..., in] → [..., out] (+ residual, shaped like the output, added as it is stored). With
   * `into`, the output goes to columns [column, column + out) of an existing tensor instead.
   */
  forward(x: Tensor, outDtype: DType = x.dtype, residual: Tensor | null = null, into?: { out: Tensor; column: number }): Tensor {
    check(x.dim(-1) === this.inFeatures, () => `${this.name}: input ${x.describe()} does not have ${this.inFeatures} features`);
    if (this.parts.length === 1 && !into) {
      const [part] = this.parts;
      return matmul(x, part.weight, { bias: part.bias, outDtype, residual });
    }
    const out = into?.out ?? x.gpu.empty([...x.shape.slice(0, -1), this.outFeatures], outDtype, { name: this.name });
    const column = into?.column ?? 0;
    for (const part of this.parts) matmul(x, part.weight, { bias: part.bias, out, outColumn: column + part.rowStart, residual });
    return out;
  }
}

export class EmbeddingTable {
  readonly rows: number;
  readonly hidden: number;

  constructor(
    readonly parts: readonly RowPart[],
    readonly name: string,
  ) {
    check(parts.length > 0, () => `${name}: an embedding table needs at least one part`);
    this.hidden = parts[0].weight.dim(1);
    this.rows = parts.reduce((rows, p) => rows + p.weight.dim(0), 0);
  }

  /** ids (i32/u32 [n]) → rows [n, hidden]. Ids outside the table give zero rows. */
  lookup(ids: Tensor, dtype: DType): Tensor {
    const [first, ...rest] = this.parts;
    const out = embedding(ids, first.weight, { rowStart: first.rowStart, dtype });
    for (const part of rest) embedding(ids, part.weight, { out, rowStart: part.rowStart, dtype });
    return out;
  }

  /** The same matrix as the weight of a linear layer without bias (a tied LM head). */
  asLinear(name: string): Linear {
    return new Linear(this.parts, name);
  }
}

/**
 * The two ways a model uses a big matrix: as a linear layer (y = x·Wᵀ + b) and as an embedding
 * table (rows looked up by id). Either may be stored as several row parts, each its own GPU
 * buffer, when the whole matrix is larger than one storage binding may be (128 MiB on lavapipe;
 * a 32000×4096 f16 vocabulary is 262 MB). A tied LM head is the embedding table's parts seen
 * as a linear layer. Both only refer to tensors; the WeightStore that made them owns them.
 *
 * A matrix is either a float tensor (f32 or f16) or a QuantizedMatrix, ggml's packed blocks
 * read as they are by the quantized kernels (src/kernels/quant): the choice is the weight's,
 * and the layer's callers never see it. Quantized layers take and give f32 activations.
 */
import { embedding } from "../kernels/embedding.js";
import { matmul } from "../kernels/matmul/index.js";
import { quantizedEmbedding } from "../kernels/quant/embedding.js";
import { quantizedLinear } from "../kernels/quant/index.js";
import type { QuantizedMatrix } from "../kernels/quant/matvec_common.js";
import type { DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { Tensor } from "../tensor/tensor.js";

/** A weight matrix as stored on the GPU. */
export type Weight = Tensor | QuantizedMatrix;

export function isQuantized(w: Weight): w is QuantizedMatrix {
  return !(w instanceof Tensor);
}

/** [rows, columns] of a weight matrix. */
export function weightShape(w: Weight): [number, number] {
  return isQuantized(w) ? [w.rows, w.cols] : [w.dim(0), w.dim(1)];
}

/** Rows [rowStart, rowStart + weight.rows) of a matrix, with the matching slice of the bias. */
export interface RowPart<W extends Weight = Weight> {
  weight: W;
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
    this.inFeatures = weightShape(parts[0].weight)[1];
    this.outFeatures = parts.reduce((rows, p) => rows + weightShape(p.weight)[0], 0);
  }

  /** Whether every part is a float tensor (what the fused decoder kernels take). */
  get dense(): boolean {
    return this.parts.every((p) => !isQuantized(p.weight));
  }

  /**
   * x [..., in] → [..., out] (+ residual, shaped like the output, added as it is stored). With
   * `into`, the output goes to columns [column, column + out) of an existing tensor instead.
   */
  forward(x: Tensor, outDtype: DType = x.dtype, residual: Tensor | null = null, into?: { out: Tensor; column: number }): Tensor {
    check(x.dim(-1) === this.inFeatures, () => `${this.name}: input ${x.describe()} does not have ${this.inFeatures} features`);
    if (!this.dense) {
      check(outDtype === "f32" && x.dtype === "f32", () => `${this.name}: a quantized layer takes and gives f32, not ${x.dtype} → ${outDtype}`);
    }
    if (this.parts.length === 1 && !into) {
      const [{ weight, bias }] = this.parts;
      return isQuantized(weight) ? quantizedLinear(x, weight, { bias, residual }) : matmul(x, weight, { bias, outDtype, residual });
    }
    const out = into?.out ?? x.gpu.empty([...x.shape.slice(0, -1), this.outFeatures], outDtype, { name: this.name });
    const column = into?.column ?? 0;
    for (const { weight, bias, rowStart } of this.parts) {
      const options = { bias, out, outColumn: column + rowStart, residual };
      if (isQuantized(weight)) quantizedLinear(x, weight, options);
      else matmul(x, weight, options);
    }
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
    this.hidden = weightShape(parts[0].weight)[1];
    this.rows = parts.reduce((rows, p) => rows + weightShape(p.weight)[0], 0);
  }

  /** ids (i32 [n]; u32 too for a float table) → rows [n, hidden]. Ids outside the table give zero rows. A quantized table gives f32. */
  lookup(ids: Tensor, dtype: DType): Tensor {
    const [first, ...rest] = this.parts;
    const one = (part: RowPart, out?: Tensor): Tensor => {
      const { weight, rowStart } = part;
      if (!isQuantized(weight)) return embedding(ids, weight, { out, rowStart, dtype });
      check(dtype === "f32", () => `${this.name}: a quantized table's rows come out as f32, not ${dtype}`);
      return quantizedEmbedding(ids.gpu, weight, ids, { out, rowStart });
    };
    const out = one(first);
    for (const part of rest) one(part, out);
    return out;
  }

  /** The same matrix as the weight of a linear layer without bias (a tied LM head). */
  asLinear(name: string): Linear {
    return new Linear(this.parts, name);
  }
}

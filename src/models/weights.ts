/**
 * How the models see their weights: GPU tensors by canonical name (see src/weights/names.ts),
 * each stored whole or, when larger than one storage binding, as row parts.
 */
import { check } from "../tensor/errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { EmbeddingTable, isQuantized, Linear, weightShape, type RowPart, type Weight } from "./linear.js";

export class WeightStore {
  /** Bias slices made for split layers (views: they hold their storage until disposed). */
  private readonly views: Tensor[] = [];

  constructor(private readonly weights: ReadonlyMap<string, readonly { weight: Weight; rowStart: number }[]>) {}

  has(name: string): boolean {
    return this.weights.has(name);
  }

  private parts(name: string): readonly { weight: Weight; rowStart: number }[] {
    const parts = this.weights.get(name);
    check(parts !== undefined, () => `weight ${name} was not loaded`);
    return parts;
  }

  /** A weight stored whole (norm weights, biases, small matrices). */
  tensor(name: string): Tensor {
    const parts = this.parts(name);
    check(parts.length === 1, () => `weight ${name} is stored in ${parts.length} parts, not whole`);
    const { weight } = parts[0];
    check(!isQuantized(weight), () => `weight ${name} is ${isQuantized(weight) ? weight.type : ""}-quantized; this runtime reads it only as a float tensor (F32, F16 or BF16)`);
    return weight;
  }

  /** `${prefix}.weight` (and `${prefix}.bias` when present) as a linear layer. */
  linear(prefix: string): Linear {
    const bias = this.has(`${prefix}.bias`) ? this.tensor(`${prefix}.bias`) : null;
    const parts: RowPart[] = this.parts(`${prefix}.weight`).map(({ weight, rowStart }) => ({
      weight,
      rowStart,
      bias: bias && (weightShape(weight)[0] === bias.dim(0) ? bias : this.view(bias.slice(rowStart, weightShape(weight)[0]))),
    }));
    return new Linear(parts, prefix);
  }

  embedding(name: string): EmbeddingTable {
    return new EmbeddingTable(
      this.parts(name).map(({ weight, rowStart }) => ({ weight, rowStart, bias: null })),
      name,
    );
  }

  private view(t: Tensor): Tensor {
    this.views.push(t);
    return t;
  }

  /** Every tensor held, each part once (a quantized matrix's packed words). */
  all(): Tensor[] {
    return [...this.weights.values()].flatMap((parts) => parts.map((p) => (isQuantized(p.weight) ? p.weight.data : p.weight)));
  }

  /** Frees every weight; layers built from this store must not be used afterwards. */
  dispose(): void {
    for (const t of [...this.views, ...this.all()]) t.dispose();
  }
}

/**
 * LLaVA's multi-modal projector: maps vision features into the decoder's embedding space.
 * llava-1.5 uses two linear layers with an activation between (transformers'
 * LlavaMultiModalProjector); LLaVA-1 checkpoints have a single linear layer.
 */
import { activation, activationFromConfig, type ActivationKind } from "../kernels/activations.js";
import type { Tensor } from "../tensor/tensor.js";
import type { Linear } from "./linear.js";
import type { WeightStore } from "./weights.js";

export class Projector {
  private readonly linear1: Linear;
  private readonly linear2: Linear | null;
  private readonly act: ActivationKind;

  constructor(weights: WeightStore, kind: "mlp" | "linear", hiddenAct: string) {
    this.linear1 = weights.linear("projector.linear_1");
    this.linear2 = kind === "mlp" ? weights.linear("projector.linear_2") : null;
    this.act = activationFromConfig(hiddenAct);
  }

  /** Features [n, vision hidden] → embeddings [n, text hidden] (f32). */
  forward(features: Tensor): Tensor {
    if (!this.linear2) return this.linear1.forward(features, "f32");
    const gpu = features.gpu;
    return gpu.scope(() => this.linear2!.forward(activation(this.linear1.forward(features, "f32"), this.act)));
  }
}

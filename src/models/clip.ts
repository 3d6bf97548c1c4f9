/**
 * The CLIP vision tower (transformers' CLIPVisionModel, as LLaVA uses it).
 *
 *   x = patch_conv(pixels) ⧺ class token, + position embeddings
 *   x = layernorm(x)                                  pre_layrnorm (sic)
 *   for each encoder layer:
 *     x = x + attention(layernorm1(x))·Woᵀ             multi-head, not causal, with biases
 *     x = x + act(layernorm2(x)·W1ᵀ)·W2ᵀ               the MLP (quick_gelu in OpenAI's CLIP)
 *
 * LLaVA reads hidden_states[vision_feature_layer], where hidden_states[0] is the output of
 * pre_layrnorm and hidden_states[i] that of layer i, so only the first `layers` layers run.
 * Several images (LLaVA-NeXT's tiles) go through in one pass: each is an independent sequence
 * of 1 + patches tokens, their rows stacked, so every linear layer is one matrix product over
 * all of them; only attention runs image by image (it must not mix them).
 */
import { activationFromConfig } from "../kernels/activations.js";
import { attention } from "../kernels/attention/index.js";
import { layernorm } from "../kernels/layernorm.js";
import { patchEmbed, type PatchEmbedWeights } from "../kernels/patch_embed.js";
import { check } from "../tensor/errors.js";
import { takeRows } from "../tensor/copy.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import type { ClipVisionConfig } from "../weights/config.js";
import { encoderLayer, loadEncoderLayer, loadNorm, type EncoderLayer, type Norm } from "./clip_encoder.js";
import type { Trace } from "./llama.js";
import type { WeightStore } from "./weights.js";

export class ClipVisionTower {
  private readonly embeddings: PatchEmbedWeights;
  private readonly preNorm: Norm;
  private readonly layers: EncoderLayer[];
  private readonly mlpActivation: ReturnType<typeof activationFromConfig>;

  constructor(
    readonly gpu: Gpu,
    readonly config: ClipVisionConfig,
    weights: WeightStore,
    /** Encoder layers to run (hidden_states[layers] is the output). */
    readonly layerCount: number,
  ) {
    check(
      Number.isInteger(layerCount) && layerCount >= 0 && layerCount <= config.numHiddenLayers,
      () => `vision tower: cannot run ${layerCount} of its ${config.numHiddenLayers} layers`,
    );
    this.embeddings = {
      patchWeight: weights.tensor("vision.embeddings.patch_embedding.weight"),
      classEmbedding: weights.tensor("vision.embeddings.class_embedding"),
      positionEmbedding: weights.tensor("vision.embeddings.position_embedding.weight"),
    };
    this.preNorm = loadNorm(weights, "vision.pre_layrnorm");
    this.mlpActivation = activationFromConfig(config.hiddenAct);
    this.layers = Array.from({ length: layerCount }, (_, i) => loadEncoderLayer(weights, `vision.encoder.layers.${i}`));
  }

  /** Tokens per image: the class token and one per patch. */
  get tokens(): number {
    return this.config.numPatches + 1;
  }

  /**
   * Pixel values, one image [3, size, size] or several [N, 3, size, size] → hidden_states[layerCount],
   * [N · tokens, hidden] (f32), image i's tokens at rows [i · tokens, (i + 1) · tokens).
   * `image`: the trace index of the first image (each image is traced on its own).
   */
  forward(pixels: Tensor, trace?: Trace, image = 0): Tensor {
    const { imageSize, numChannels, hiddenSize, layerNormEps: eps } = this.config;
    const batched = pixels.rank === 4;
    const images = batched ? pixels.dim(0) : 1;
    const imageShape = pixels.shape.slice(batched ? 1 : 0);
    check(
      (pixels.rank === 3 || batched) && images > 0 && imageShape[0] === numChannels && imageShape[1] === imageSize && imageShape[2] === imageSize,
      () => `vision tower: pixel values ${pixels.describe()} are not [${numChannels}, ${imageSize}, ${imageSize}] or [images, ${numChannels}, ${imageSize}, ${imageSize}]`,
    );
    const embedded = this.gpu.scope(() => {
      const patches = patchEmbed(pixels.reshape([images, numChannels, imageSize, imageSize]), this.embeddings, "f32");
      return layernorm(patches.reshape([images * this.tokens, hiddenSize]), this.preNorm.weight, this.preNorm.bias, eps);
    });
    const traceEach = (name: string, index: readonly number[], t: Tensor) => {
      for (let i = 0; i < images; i++) {
        if (images === 1) trace!(name, [...index, image], t);
        else this.gpu.scope(() => trace!(name, [...index, image + i], takeRows(t, i * this.tokens, this.tokens)));
      }
    };
    if (trace) traceEach("vision_embeddings", [], embedded);
    let h = embedded;
    this.layers.forEach((layer, i) => {
      if (trace) traceEach("vision_hidden_states", [i], h);
      const next = this.gpu.scope(() => this.layer(layer, h, images));
      h.dispose();
      h = next;
    });
    if (trace) traceEach("vision_hidden_states", [this.layers.length], h);
    return h;
  }

  private layer(layer: EncoderLayer, x: Tensor, images: number): Tensor {
    return encoderLayer(layer, x, this.config, this.mlpActivation, (q, k, v) =>
      images === 1 ? attention(q, k, v, { layout: "tokens" }) : this.attendEach(q, k, v, images),
    );
  }

  /**
   * Attention within each image of a stack: image i's queries (rows of q, written to the same
   * rows of one output) over its own keys and values (copied out: the kernels bind k and v whole).
   */
  private attendEach(q: Tensor, k: Tensor, v: Tensor, images: number): Tensor {
    const tokens = this.tokens;
    const out = this.gpu.empty(q.shape, q.dtype, { name: "vision attention" });
    for (let i = 0; i < images; i++) {
      this.gpu.scope(() => {
        const own = (t: Tensor) => takeRows(t, i * tokens, tokens);
        attention(q, own(k), own(v), { layout: "tokens", rows: { start: i * tokens, count: tokens }, out });
      });
    }
    return out;
  }
}

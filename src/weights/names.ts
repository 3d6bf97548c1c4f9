/**
 * Which tensors a model needs, with their shapes, and where a checkpoint keeps them.
 *
 * Every tensor has a canonical name: its Hugging Face module path inside its component, under
 * one of four prefixes, e.g. `text.layers.0.self_attn.q_proj.weight`, `lm_head.weight`,
 * `vision.encoder.layers.3.mlp.fc1.bias`, `projector.linear_1.weight`. Checkpoints spell them
 * in one of several schemes:
 *
 *   canonical     llava-hf on the Hub             newer transformers (>= 4.52)        LlamaForCausalLM / CLIPVisionModel
 *   text.*        language_model.model.*          model.language_model.*              model.*
 *   lm_head.*     language_model.lm_head.*        lm_head.*                           lm_head.*
 *   vision.*      vision_tower.vision_model.*     model.vision_tower.vision_model.*   vision_model.*
 *   projector.*   multi_modal_projector.*         model.multi_modal_projector.*       -
 *
 * and llama.cpp's GGUF names (token_embd, blk.N.attn_q, v.blk.N.ffn_up, mm.0, ...: gguf_names.ts).
 *
 * The resolver picks the scheme that finds the most of the model's tensors, then requires every
 * one of them in it, with the right shape; everything wrong is named in one error.
 *
 * Tensors a checkpoint holds that the model does not use are skipped, not loaded, and listed
 * with the reason: for LLaVA, the vision layers after `vision_feature_layer` (their output is
 * never read) and the vision tower's `post_layernorm` (LLaVA reads hidden states, which come
 * before it); `lm_head` when it is tied to `embed_tokens`; rotary `inv_freq` and `position_ids`
 * buffers, which older checkpoints stored and which are recomputed; anything else (a CLIPModel's
 * text tower, attention biases a config says are off) is "not part of the model", as
 * transformers also ignores it.
 *
 * Where a config and its checkpoint disagree in a way that changes the answers, the resolver
 * says so. More layers stored than the config runs is an error (the model would skip them and
 * answer nonsense); a separate lm_head stored although the config ties it to embed_tokens, and
 * tensors that are not part of the model, are warnings (transformers' "Some weights of the
 * model checkpoint were not used"). The layers LLaVA legitimately leaves unused are not.
 */
import { hasDecoder, type ClipVisionConfig, type LlamaConfig, type ModelConfig } from "./config.js";
import { GGUF_LAYER_PREFIXES, ggufTensorName } from "./gguf_names.js";

export interface ExpectedTensor {
  /** The canonical name (see above). */
  name: string;
  shape: number[];
}

/** A model tensor found in the checkpoint. */
export interface ResolvedTensor extends ExpectedTensor {
  /** Its name in the checkpoint. */
  checkpointName: string;
}

export interface ResolvedWeights {
  /** Which naming scheme the checkpoint uses. */
  scheme: string;
  /** Canonical name → the tensor in the checkpoint, for every tensor the model needs. */
  tensors: Map<string, ResolvedTensor>;
  /** LLaVA's projector: two linear layers with an activation between (llava-1.5), or one (LLaVA-1). */
  projector?: "mlp" | "linear";
  /** Checkpoint tensors the model does not use, and why. */
  unused: { checkpointName: string; why: string }[];
  /** Disagreements between the config and the checkpoint that loading survives (see above). */
  warnings: string[];
}

/** What the resolver needs from a checkpoint (a Checkpoint or a SafetensorsFile). */
export interface TensorIndex {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, { shape: number[] }>;
}

export class WeightNameError extends Error {
  override name = "WeightNameError";
}

type Component = "text" | "lm_head" | "vision" | "projector" | "image_newline" | "clip_text" | "visual_projection" | "text_projection" | "logit_scale";

interface Scheme {
  name: string;
  /** A canonical name's name in this scheme; undefined when the scheme has no such tensor. */
  rename: (canonical: string) => string | undefined;
  /** Where the numbered layers of the decoder (`text`), the vision tower and CLIP's text tower start, for counting them. */
  layers: { text?: string; vision?: string; clipText?: string };
}

/**
 * A scheme that puts a prefix per component in front of the name inside it. A component that
 * is one tensor (LLaVA-NeXT's `image_newline`) is named whole by its "prefix".
 */
function prefixScheme(name: string, prefixes: Partial<Record<Component, string>>): Scheme {
  return {
    name,
    rename: (canonical) => {
      const dot = canonical.indexOf(".");
      if (dot < 0) return prefixes[canonical as Component];
      const prefix = prefixes[canonical.slice(0, dot) as Component];
      return prefix === undefined ? undefined : prefix + canonical.slice(dot + 1);
    },
    layers: {
      text: prefixes.text && `${prefixes.text}layers.`,
      vision: prefixes.vision && `${prefixes.vision}encoder.layers.`,
      clipText: prefixes.clip_text && `${prefixes.clip_text}encoder.layers.`,
    },
  };
}

/** llama.cpp's names (gguf_names.ts): a GGUF text model with its mmproj file. */
const GGUF_SCHEME: Scheme = { name: "GGUF (token_embd, blk.N.*, v.blk.N.*, mm.*)", rename: ggufTensorName, layers: GGUF_LAYER_PREFIXES };

const SCHEMES: Record<ModelConfig["kind"], Scheme[]> = {
  llava: [
    prefixScheme("llava-hf (language_model.model.*, vision_tower.*, multi_modal_projector.*)", {
      text: "language_model.model.",
      lm_head: "language_model.lm_head.",
      vision: "vision_tower.vision_model.",
      projector: "multi_modal_projector.",
      image_newline: "image_newline",
    }),
    prefixScheme("transformers >= 4.52 (model.language_model.*, model.vision_tower.*, model.multi_modal_projector.*, lm_head.*)", {
      text: "model.language_model.",
      lm_head: "lm_head.",
      vision: "model.vision_tower.vision_model.",
      projector: "model.multi_modal_projector.",
      image_newline: "model.image_newline",
    }),
    GGUF_SCHEME,
  ],
  llama: [prefixScheme("LlamaForCausalLM (model.*, lm_head.*)", { text: "model.", lm_head: "lm_head." }), GGUF_SCHEME],
  clip_vision: [prefixScheme("CLIPVisionModel (vision_model.*)", { vision: "vision_model." }), GGUF_SCHEME],
  clip: [
    prefixScheme("CLIPModel (text_model.*, vision_model.*, text_projection, visual_projection, logit_scale)", {
      clip_text: "text_model.",
      vision: "vision_model.",
      text_projection: "text_projection.",
      visual_projection: "visual_projection.",
      logit_scale: "logit_scale",
    }),
  ],
};

/** A tensor of the architecture; `unusedBecause` marks one the model never reads. */
interface ArchitectureTensor extends ExpectedTensor {
  unusedBecause?: string;
}

function llamaTensors(c: LlamaConfig): ArchitectureTensor[] {
  const d = c.hiddenSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const out: ArchitectureTensor[] = [{ name: "text.embed_tokens.weight", shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `text.layers.${i}.`;
    out.push(
      { name: `${p}input_layernorm.weight`, shape: [d] },
      { name: `${p}self_attn.q_proj.weight`, shape: [q, d] },
      { name: `${p}self_attn.k_proj.weight`, shape: [kv, d] },
      { name: `${p}self_attn.v_proj.weight`, shape: [kv, d] },
      { name: `${p}self_attn.o_proj.weight`, shape: [d, q] },
    );
    if (c.attentionBias) {
      out.push(
        { name: `${p}self_attn.q_proj.bias`, shape: [q] },
        { name: `${p}self_attn.k_proj.bias`, shape: [kv] },
        { name: `${p}self_attn.v_proj.bias`, shape: [kv] },
        { name: `${p}self_attn.o_proj.bias`, shape: [d] },
      );
    }
    out.push(
      { name: `${p}post_attention_layernorm.weight`, shape: [d] },
      { name: `${p}mlp.gate_proj.weight`, shape: [c.intermediateSize, d] },
      { name: `${p}mlp.up_proj.weight`, shape: [c.intermediateSize, d] },
      { name: `${p}mlp.down_proj.weight`, shape: [d, c.intermediateSize] },
    );
  }
  out.push({ name: "text.norm.weight", shape: [d] });
  const tied = c.tieWordEmbeddings ? "lm_head is tied to embed_tokens (tie_word_embeddings)" : undefined;
  out.push({ name: "lm_head.weight", shape: [c.vocabSize, d], unusedBecause: tied });
  return out;
}

/**
 * The CLIP vision tower. `usedLayers` is how many encoder layers run (LLaVA stops at its
 * feature layer; `unusedLayerReason` says so, with {i} for the layer); `postLayernormUnused`
 * says why post_layernorm is not read, when it is not (LLaVA reads hidden states).
 */
function clipTensors(c: ClipVisionConfig, usedLayers: number, unusedLayerReason: string, postLayernormUnused?: string): ArchitectureTensor[] {
  const h = c.hiddenSize;
  const out: ArchitectureTensor[] = [
    { name: "vision.embeddings.class_embedding", shape: [h] },
    { name: "vision.embeddings.patch_embedding.weight", shape: [h, c.numChannels, c.patchSize, c.patchSize] },
    { name: "vision.embeddings.position_embedding.weight", shape: [c.numPatches + 1, h] },
    { name: "vision.pre_layrnorm.weight", shape: [h] }, // sic: transformers' spelling
    { name: "vision.pre_layrnorm.bias", shape: [h] },
  ];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const unusedBecause = i >= usedLayers ? unusedLayerReason.replace("{i}", String(i)) : undefined;
    out.push(...encoderLayerTensors(`vision.encoder.layers.${i}.`, h, c.intermediateSize).map((t) => ({ ...t, unusedBecause })));
  }
  out.push(
    { name: "vision.post_layernorm.weight", shape: [h], unusedBecause: postLayernormUnused },
    { name: "vision.post_layernorm.bias", shape: [h], unusedBecause: postLayernormUnused },
  );
  return out;
}

/** One CLIP encoder layer (either tower's): attention and MLP with biases, two layer norms. */
function encoderLayerTensors(p: string, h: number, intermediate: number): ExpectedTensor[] {
  const layer: ExpectedTensor[] = [];
  for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
    layer.push({ name: `${p}self_attn.${proj}.weight`, shape: [h, h] }, { name: `${p}self_attn.${proj}.bias`, shape: [h] });
  }
  for (const norm of ["layer_norm1", "layer_norm2"]) layer.push({ name: `${p}${norm}.weight`, shape: [h] }, { name: `${p}${norm}.bias`, shape: [h] });
  layer.push(
    { name: `${p}mlp.fc1.weight`, shape: [intermediate, h] },
    { name: `${p}mlp.fc1.bias`, shape: [intermediate] },
    { name: `${p}mlp.fc2.weight`, shape: [h, intermediate] },
    { name: `${p}mlp.fc2.bias`, shape: [h] },
  );
  return layer;
}

/** CLIP's text tower, both projections and the logit scale (a scalar). */
function clipTextTensors(config: Extract<ModelConfig, { kind: "clip" }>): ArchitectureTensor[] {
  const c = config.text;
  const h = c.hiddenSize;
  const out: ArchitectureTensor[] = [
    { name: "clip_text.embeddings.token_embedding.weight", shape: [c.vocabSize, h] },
    { name: "clip_text.embeddings.position_embedding.weight", shape: [c.maxPositionEmbeddings, h] },
  ];
  for (let i = 0; i < c.numHiddenLayers; i++) out.push(...encoderLayerTensors(`clip_text.encoder.layers.${i}.`, h, c.intermediateSize));
  out.push(
    { name: "clip_text.final_layer_norm.weight", shape: [h] },
    { name: "clip_text.final_layer_norm.bias", shape: [h] },
    { name: "text_projection.weight", shape: [config.projectionDim, h] },
    { name: "visual_projection.weight", shape: [config.projectionDim, config.vision.hiddenSize] },
    { name: "logit_scale", shape: [] },
  );
  return out;
}

function projectorTensors(config: Extract<ModelConfig, { kind: "llava" }>, kind: "mlp" | "linear"): ArchitectureTensor[] {
  const t = config.text.hiddenSize;
  const linear = (name: string, outputs: number, inputs: number): ArchitectureTensor[] => [
    { name: `projector.${name}.weight`, shape: [outputs, inputs] },
    ...(config.projectorBias ? [{ name: `projector.${name}.bias`, shape: [outputs] }] : []),
  ];
  return kind === "mlp" ? [...linear("linear_1", t, config.vision.hiddenSize), ...linear("linear_2", t, t)] : linear("linear_1", t, config.vision.hiddenSize);
}

/** How many vision encoder layers LLaVA runs: hidden_states[k] is the output of layer k - 1. */
export function visionLayersUsed(config: Extract<ModelConfig, { kind: "llava" }>): number {
  const layers = config.vision.numHiddenLayers;
  return config.visionFeatureLayer < 0 ? layers + 1 + config.visionFeatureLayer : config.visionFeatureLayer;
}

function architectureTensors(config: ModelConfig, projector: "mlp" | "linear"): ArchitectureTensor[] {
  switch (config.kind) {
    case "llama":
      return llamaTensors(config.text);
    case "clip_vision":
      return clipTensors(config.vision, config.vision.numHiddenLayers, "");
    case "clip":
      return [...clipTensors(config.vision, config.vision.numHiddenLayers, ""), ...clipTextTensors(config)];
    case "llava": {
      const used = visionLayersUsed(config);
      const after = `vision layer {i} comes after vision_feature_layer ${config.visionFeatureLayer}`;
      const post = "LLaVA reads the vision tower's hidden states, which come before post_layernorm";
      // LLaVA-NeXT's learned end-of-row vector, in the decoder's space.
      const newline = config.anyres ? [{ name: "image_newline", shape: [config.text.hiddenSize] }] : [];
      return [...clipTensors(config.vision, used, after, post), ...projectorTensors(config, projector), ...newline, ...llamaTensors(config.text)];
    }
  }
}

/** Every tensor the model reads, with its shape (LLaVA with the two-layer projector unless told otherwise). */
export function expectedTensors(config: ModelConfig, projector: "mlp" | "linear" = "mlp"): ExpectedTensor[] {
  return architectureTensors(config, projector)
    .filter((t) => !t.unusedBecause)
    .map(({ name, shape }) => ({ name, shape }));
}

/** Where a checkpoint saved with `config`'s model class keeps a tensor (scheme 0: llava-hf's names; 1: newer transformers'). */
export function checkpointNameFor(config: ModelConfig, canonical: string, scheme = 0): string {
  const schemes = SCHEMES[config.kind];
  const name = schemes[scheme] && checkpointName(canonical, schemes[scheme]);
  if (name === undefined) throw new WeightNameError(`no checkpoint name for ${canonical} in naming scheme ${scheme} of ${config.kind}`);
  return name;
}

/** The reason given for a checkpoint tensor outside the architecture (no `unusedBecause`, no recomputed buffer): warned about. */
const NOT_PART_OF_THE_MODEL = "not part of the model";

/** At most this many problems are listed in one error (a truncated checkpoint misses thousands). */
const MAX_LISTED = 50;

function checkpointName(canonical: string, scheme: Scheme): string | undefined {
  return scheme.rename(canonical);
}

/**
 * Finds every tensor the model needs in `checkpoint`. Throws a WeightNameError naming each
 * missing or misshapen tensor (expected against found shape) if any is wrong.
 */
export function resolveWeights(config: ModelConfig, checkpoint: TensorIndex): ResolvedWeights {
  const schemes = SCHEMES[config.kind];
  const found = (scheme: Scheme, canonical: string) => {
    const name = checkpointName(canonical, scheme);
    return name !== undefined && checkpoint.tensors.has(name);
  };
  const hits = (scheme: Scheme) => expectedTensors(config).filter((t) => found(scheme, t.name)).length;
  const scheme = schemes.reduce((best, s) => (hits(s) > hits(best) ? s : best));

  // LLaVA-1 checkpoints have a single linear projector: no linear_2.
  const projector = config.kind === "llava" ? (found(scheme, "projector.linear_2.weight") ? "mlp" : "linear") : undefined;
  const architecture = architectureTensors(config, projector ?? "mlp");

  const tensors = new Map<string, ResolvedTensor>();
  const problems: string[] = [];
  const skipped = new Map<string, string>();
  const layers = layerCounts(config, scheme, checkpoint);
  for (const t of architecture) {
    const name = checkpointName(t.name, scheme)!;
    const entry = checkpoint.tensors.get(name);
    if (t.unusedBecause) {
      if (entry) skipped.set(name, t.unusedBecause);
    } else if (!entry) {
      const untied = t.name === "lm_head.weight" ? "; if the LM head is tied to embed_tokens, the config should say tie_word_embeddings: true" : "";
      problems.push(`${name}: missing (expected shape [${t.shape.join(", ")}])${untied}`);
    } else if (!sameShape(entry.shape, t.shape)) {
      problems.push(`${name}: expected shape [${t.shape.join(", ")}], found [${entry.shape.join(", ")}]`);
    } else {
      tensors.set(t.name, { ...t, checkpointName: name });
    }
  }
  const extraLayers = layers.filter((l) => l.stored > l.configured);
  if (extraLayers.length > 0) {
    throw new WeightNameError(
      `${checkpoint.path}: ` +
        extraLayers.map(layerMismatch).join("; and ") +
        ": the model would skip the layers past it and answer nonsense (fix the config)",
    );
  }
  if (problems.length > 0) {
    const fewerLayers = layers.filter((l) => l.stored < l.configured).map((l) => `${layerMismatch(l)}\n  `);
    const listed = problems.slice(0, MAX_LISTED);
    if (problems.length > MAX_LISTED) listed.push(`... and ${problems.length - MAX_LISTED} more`);
    throw new WeightNameError(
      `${checkpoint.path}: ${problems.length} tensor${problems.length === 1 ? "" : "s"} missing or misshapen for this ${config.kind} config ` +
        `(names as in ${scheme.name}):\n  ${fewerLayers.join("")}${listed.join("\n  ")}`,
    );
  }

  const used = new Set([...tensors.values()].map((t) => t.checkpointName));
  const unused: { checkpointName: string; why: string }[] = [];
  for (const name of checkpoint.tensors.keys()) {
    if (used.has(name)) continue;
    unused.push({ checkpointName: name, why: skipped.get(name) ?? bufferReason(name) ?? NOT_PART_OF_THE_MODEL });
  }
  return { scheme: scheme.name, tensors, projector, unused, warnings: disagreements(config, scheme, checkpoint, unused) };
}

/** A component's layers: how many the checkpoint stores (highest index + 1) and how many the config runs. */
interface LayerCount {
  what: "decoder" | "vision" | "text";
  /** The config field that sets the count. */
  field: string;
  stored: number;
  configured: number;
}

function layerMismatch(l: LayerCount): string {
  return `the checkpoint holds ${l.stored} ${l.what} layer${l.stored === 1 ? "" : "s"}, but the config's ${l.field} is ${l.configured}`;
}

function layerCounts(config: ModelConfig, scheme: Scheme, checkpoint: TensorIndex): LayerCount[] {
  const counts: LayerCount[] = [];
  const count = (prefix: string | undefined, what: LayerCount["what"], field: string, configured: number) => {
    if (prefix === undefined) return;
    let stored = 0;
    for (const name of checkpoint.tensors.keys()) {
      if (!name.startsWith(prefix)) continue;
      const index = /^(\d+)\./.exec(name.slice(prefix.length));
      if (index) stored = Math.max(stored, Number(index[1]) + 1);
    }
    counts.push({ what, field, stored, configured });
  };
  const nested = config.kind === "llava";
  const nestedVision = config.kind === "llava" || config.kind === "clip";
  if (hasDecoder(config)) count(scheme.layers.text, "decoder", nested ? "text_config.num_hidden_layers" : "num_hidden_layers", config.text.numHiddenLayers);
  if (config.kind === "clip") count(scheme.layers.clipText, "text", "text_config.num_hidden_layers", config.text.numHiddenLayers);
  if (config.kind !== "llama") count(scheme.layers.vision, "vision", nestedVision ? "vision_config.num_hidden_layers" : "num_hidden_layers", config.vision.numHiddenLayers);
  return counts;
}

/** Warnings for a checkpoint that loads but does not match its config: a stored lm_head the config ties away, tensors nothing reads. */
function disagreements(config: ModelConfig, scheme: Scheme, checkpoint: TensorIndex, unused: ResolvedWeights["unused"]): string[] {
  const warnings: string[] = [];
  const lmHead = checkpointName("lm_head.weight", scheme);
  if (hasDecoder(config) && config.text.tieWordEmbeddings && lmHead !== undefined && checkpoint.tensors.has(lmHead)) {
    warnings.push(
      `${checkpoint.path}: the config says tie_word_embeddings: true, but the checkpoint stores a separate ${lmHead}; ` +
        "it is ignored and embed_tokens serves as the LM head (if the two differ, the config should say tie_word_embeddings: false)",
    );
  }
  const strangers = unused.filter((u) => u.why === NOT_PART_OF_THE_MODEL).map((u) => u.checkpointName);
  if (strangers.length > 0) {
    const shown = strangers.slice(0, 5).join(", ") + (strangers.length > 5 ? `, ... (${strangers.length - 5} more)` : "");
    warnings.push(
      `${checkpoint.path}: ${strangers.length} tensor${strangers.length === 1 ? " is" : "s are"} not part of this ${config.kind} model ` +
        `and ${strangers.length === 1 ? "is" : "are"} ignored: ${shown}`,
    );
  }
  return warnings;
}

/** Non-parameter buffers that older transformers saved into checkpoints. */
function bufferReason(name: string): string | undefined {
  if (name.endsWith("rotary_emb.inv_freq")) return "rotary frequencies are recomputed from rope_theta";
  if (name.endsWith("position_ids")) return "position indices are recomputed";
  return undefined;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

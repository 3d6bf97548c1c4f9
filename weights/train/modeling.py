"""
The shapes model in PyTorch: a LLaVA (CLIP vision tower, MLP projector, LLaMA decoder) whose
modules compute exactly what transformers 4.40's CLIPVisionModel, LlavaMultiModalProjector and
LlamaForCausalLM compute (eager attention, float32), written out so that training needs nothing
but Debian's python3-torch. Parameter names are transformers' own, so the state dict is saved
with llava-hf's tensor names (language_model.model.*, language_model.lm_head.*,
vision_tower.vision_model.*, multi_modal_projector.*) and the folder loads in transformers and
in wgsl-vlm alike.

Reading order: ClipVisionTower (patch conv, class token, positions, pre_layrnorm, encoder
layers with quick_gelu), Projector (linear_1, GELU with erf, linear_2), LlamaDecoder (RMSNorm,
rotate-half RoPE, grouped-query attention, SwiGLU), Llava (the image features take the place of
the <image> token). safetensors reading and writing is at the end.
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,  # erf form, as transformers' GELUActivation
    "silu": F.silu,
}


# ---------------------------------------------------------------- CLIP vision tower


class ClipAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        B, T, C = x.shape
        # transformers scales the queries before the product (CLIPAttention).
        q = (self.q_proj(x) * self.scale).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


class ClipMlp(nn.Module):
    def __init__(self, hidden, intermediate, act):
        super().__init__()
        self.act = ACTIVATIONS[act]
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.self_attn = ClipAttention(c["hidden_size"], c["num_attention_heads"])
        self.layer_norm2 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.mlp = ClipMlp(c["hidden_size"], c["intermediate_size"], c["hidden_act"])

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        hidden, patch, size = c["hidden_size"], c["patch_size"], c["image_size"]
        self.class_embedding = nn.Parameter(torch.zeros(hidden))
        self.patch_embedding = nn.Conv2d(3, hidden, kernel_size=patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding((size // patch) ** 2 + 1, hidden)

    def forward(self, pixels):
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(pixels.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class ClipVisionModel(nn.Module):
    """transformers' CLIPVisionTransformer (the `vision_model` inside CLIPVisionModel)."""

    def __init__(self, c):
        super().__init__()
        self.embeddings = ClipEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])  # sic
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(ClipEncoderLayer(c) for _ in range(c["num_hidden_layers"]))
        # Part of the checkpoint, never read by LLaVA (it reads hidden states, which come before it).
        self.post_layernorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def hidden_state(self, pixels, index):
        """hidden_states[index]: 0 is pre_layrnorm's output, i that of encoder layer i; only those layers run."""
        x = self.pre_layrnorm(self.embeddings(pixels))
        for layer in self.encoder.layers[:index]:
            x = layer(x)
        return x


class ClipVisionTower(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = ClipVisionModel(c)


# ---------------------------------------------------------------- projector


class Projector(nn.Module):
    """LlavaMultiModalProjector: linear_1, activation, linear_2."""

    def __init__(self, vision_hidden, text_hidden, act):
        super().__init__()
        self.linear_1 = nn.Linear(vision_hidden, text_hidden)
        self.act = ACTIVATIONS[act]
        self.linear_2 = nn.Linear(text_hidden, text_hidden)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


# ---------------------------------------------------------------- LLaMA decoder


class RmsNorm(nn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x):
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)


def rotary_tables(head_dim, theta, positions):
    """cos and sin [positions, head_dim] of LlamaRotaryEmbedding (the two halves repeat)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.arange(positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c["num_attention_heads"]
        self.kv_heads = c["num_key_value_heads"]
        self.head_dim = c["hidden_size"] // self.heads
        hidden = c["hidden_size"]
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)
        # Training reads one layer's attention probabilities [B, heads, S, S]; set keep_weights to keep them.
        self.keep_weights = False
        self.kept_weights = None

    def forward(self, x, cos, sin, mask):
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.heads // self.kv_heads
        k = k.repeat_interleave(groups, dim=1)  # repeat_kv: each KV head serves `groups` query heads
        v = v.repeat_interleave(groups, dim=1)
        weights = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        weights = torch.softmax(weights.float(), dim=-1).to(q.dtype)
        self.kept_weights = weights if self.keep_weights else None
        return self.o_proj((weights @ v).transpose(1, 2).reshape(B, S, -1))


class LlamaMlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.act = ACTIVATIONS[c["hidden_act"]]
        self.gate_proj = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(c["intermediate_size"], c["hidden_size"], bias=False)

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RmsNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = LlamaAttention(c)
        self.post_attention_layernorm = RmsNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = LlamaMlp(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(LlamaDecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RmsNorm(c["hidden_size"], c["rms_norm_eps"])
        self.head_dim = c["hidden_size"] // c["num_attention_heads"]
        self.rope_theta = c["rope_theta"]

    def forward(self, embeds, positions=None, allowed=None):
        """
        Embeddings [B, S, hidden] → final-normed hidden states. By default at positions 0..S-1
        with causal attention; training packs several sequences into one row by passing each
        token's position [B, S] and which keys each query may see (allowed [B, S, S], bool).
        """
        S = embeds.shape[1]
        if positions is None:
            cos, sin = rotary_tables(self.head_dim, self.rope_theta, S)
            mask = torch.full((S, S), torch.finfo(embeds.dtype).min).triu(1)
        else:
            cos, sin = rotary_tables(self.head_dim, self.rope_theta, int(positions.max()) + 1)
            cos, sin = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)  # [B, 1, S, head_dim]
            mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(embeds.dtype).min).unsqueeze(1)
        x = embeds
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)


# ---------------------------------------------------------------- LLaVA


class Llava(nn.Module):
    """LlavaForConditionalGeneration for prompts with one <image> token at the same index in every row."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        v, t = config["vision_config"], config["text_config"]
        self.vision_tower = ClipVisionTower(v)
        self.multi_modal_projector = Projector(v["hidden_size"], t["hidden_size"], config["projector_hidden_act"])
        self.language_model = LlamaForCausalLM(t)
        layers = v["num_hidden_layers"]
        layer = config["vision_feature_layer"]
        self.feature_index = layer if layer >= 0 else layers + 1 + layer
        self.keep_class_token = config["vision_feature_select_strategy"] == "full"

    def selected_features(self, pixels):
        """pixel_values [B, 3, H, W] → the vision features LLaVA selects (hidden_states[vision_feature_layer], CLS dropped by default)."""
        hidden = self.vision_tower.vision_model.hidden_state(pixels, self.feature_index)
        return hidden if self.keep_class_token else hidden[:, 1:]

    def image_features(self, pixels):
        """pixel_values [B, 3, H, W] → projected features [B, patches, text hidden]."""
        return self.multi_modal_projector(self.selected_features(pixels))

    def merge(self, ids, features):
        """Token embeddings with the <image> token's row replaced by the image's features."""
        where = (ids == self.config["image_token_index"]).nonzero()
        position = int(where[0, 1])
        assert where.shape[0] == ids.shape[0] and bool((where[:, 1] == position).all()), "one <image> token at the same index in every row"
        embed = self.language_model.model.embed_tokens
        return torch.cat([embed(ids[:, :position]), features, embed(ids[:, position + 1 :])], dim=1)

    def logits(self, ids, features):
        """Logits [B, merged length, vocab] of prompts `ids` [B, S] (right padding is harmless: attention is causal)."""
        hidden = self.language_model.model(self.merge(ids, features))
        return self.language_model.lm_head(hidden)


# ---------------------------------------------------------------- safetensors


def checkpoint_tensors(model):
    """The state dict as llava-hf names it, in float32 (lm_head kept: tie_word_embeddings is false)."""
    return {name: tensor.detach().to(torch.float32).contiguous() for name, tensor in model.state_dict().items()}


def save_safetensors(path, tensors, metadata=None):
    """The safetensors layout: 8-byte header length, JSON header (padded with spaces to 8), raw little-endian bytes, names sorted."""
    header = {"__metadata__": metadata} if metadata else {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        assert t.dtype == torch.float32
        size = t.numel() * 4
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in names:
            f.write(tensors[name].numpy().astype("<f4").tobytes())


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header.pop("__metadata__", None)
    base = 8 + length
    out = {}
    for name, entry in header.items():
        assert entry["dtype"] == "F32", f"{path}: {name} is {entry['dtype']}, expected F32"
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype="<f4").reshape(entry["shape"])
        out[name] = torch.from_numpy(array.copy())
    return out

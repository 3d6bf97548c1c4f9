"""
The shapes CLIP in PyTorch: a dual encoder whose modules compute exactly what transformers
4.40's CLIPModel computes (eager attention, float32), written out so that training needs nothing
but Debian's python3-torch. Parameter names are transformers' own (text_model.*, vision_model.*,
visual_projection, text_projection, logit_scale), so the state dict saves as a CLIPModel
checkpoint.

- The vision tower is ClipVisionModel from ../modeling.py (the shapes LLaVA's, already checked
  against transformers); its pooled output is post_layernorm of the last layer's class token.
- The text tower (CLIPTextTransformer): token + position embeddings, pre-norm encoder layers
  whose attention is causal and masks padded keys (attention_mask 0), final_layer_norm, pooled at
  the first token equal to eos_token_id (or, when eos_token_id is 2, as the openai checkpoints
  carry, at argmax(input_ids), transformers' legacy rule).
- ClipBpe: CLIP's byte-level BPE over a vocab.json and merges.txt (lower-casing and CLIP's
  word split, for ASCII text; the shapes texts are ASCII).

check_golden() runs the model on /work/shared/golden/clip-a (made with transformers) and
compares every output.
"""
import json
import os
import re
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from modeling import ACTIVATIONS, ClipMlp, ClipVisionModel, load_safetensors, save_safetensors  # noqa: E402,F401


class ClipTextAttention(nn.Module):
    """CLIPAttention with the additive mask transformers passes (causal plus padded keys)."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x, mask):
        B, T, C = x.shape
        q = (self.q_proj(x) * self.scale).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


class ClipTextLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.self_attn = ClipTextAttention(c["hidden_size"], c["num_attention_heads"])
        self.layer_norm2 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.mlp = ClipMlp(c["hidden_size"], c["intermediate_size"], c["hidden_act"])

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipTextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_embedding = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embedding = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])

    def forward(self, ids):
        return self.token_embedding(ids) + self.position_embedding.weight[: ids.shape[1]]


class ClipTextModel(nn.Module):
    """transformers' CLIPTextTransformer (the `text_model` inside CLIPModel)."""

    def __init__(self, c):
        super().__init__()
        self.eos_token_id = c["eos_token_id"]
        self.embeddings = ClipTextEmbeddings(c)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(ClipTextLayer(c) for _ in range(c["num_hidden_layers"]))
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def pooled_index(self, ids):
        if self.eos_token_id == 2:
            return ids.argmax(dim=-1)
        return (ids == self.eos_token_id).int().argmax(dim=-1)  # the first end token

    def forward(self, ids, attention_mask=None, hidden_states=None):
        """ids [B, T] (and attention_mask [B, T], 1 = real) → (last_hidden_state [B, T, H], pooled [B, H])."""
        B, T = ids.shape
        x = self.embeddings(ids)
        lowest = torch.finfo(x.dtype).min
        mask = torch.zeros(B, 1, T, T)
        mask = mask.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), lowest)
        if attention_mask is not None:
            # transformers adds the two masks; a key masked by both then gets lowest + lowest
            # (-inf in f32), which gives the same softmax: position 0 is never masked.
            mask = mask + torch.zeros(B, 1, 1, T).masked_fill(attention_mask[:, None, None, :] == 0, lowest)
        for layer in self.encoder.layers:
            if hidden_states is not None:
                hidden_states.append(x)
            x = layer(x, mask)
        if hidden_states is not None:
            hidden_states.append(x)
        x = self.final_layer_norm(x)
        return x, x[torch.arange(B), self.pooled_index(ids)]


class ClipModel(nn.Module):
    """transformers' CLIPModel: the two towers, their projections (no bias) and logit_scale."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        t, v = config["text_config"], config["vision_config"]
        self.text_model = ClipTextModel(t)
        self.vision_model = ClipVisionModel(v)
        self.visual_projection = nn.Linear(v["hidden_size"], config["projection_dim"], bias=False)
        self.text_projection = nn.Linear(t["hidden_size"], config["projection_dim"], bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config["logit_scale_init_value"])))

    def vision_pooled(self, pixels):
        x = self.vision_model.hidden_state(pixels, len(self.vision_model.encoder.layers))
        return self.vision_model.post_layernorm(x[:, 0])

    def get_image_features(self, pixels):
        return self.visual_projection(self.vision_pooled(pixels))

    def get_text_features(self, ids, attention_mask=None):
        return self.text_projection(self.text_model(ids, attention_mask)[1])

    def image_embeds(self, pixels):
        f = self.get_image_features(pixels)
        return f / f.norm(dim=-1, keepdim=True)

    def text_embeds(self, ids, attention_mask=None):
        f = self.get_text_features(ids, attention_mask)
        return f / f.norm(dim=-1, keepdim=True)


def checkpoint_tensors(model):
    return {name: t.detach().to(torch.float32).contiguous() for name, t in model.state_dict().items()}


def load_model(folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    model = ClipModel(config)
    missing, unexpected = model.load_state_dict(load_safetensors(os.path.join(folder, "model.safetensors")), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval()


# ---------------------------------------------------------------- CLIP's BPE


def bytes_to_unicode():
    """GPT-2's (and CLIP's) table from bytes to printable characters, in its own order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# CLIP's pattern, 's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+, restricted to ASCII
# (Python's re has no \p{L}); ClipBpe refuses other text.
WORD_PATTERN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


def clip_words(text):
    assert text.isascii(), f"not ASCII: {text!r}"
    return WORD_PATTERN.findall(" ".join(text.split()).lower())


def bpe(word, ranks):
    """CLIP's bpe(): a word's symbols (the last marked </w>), merged by rank until no pair is a merge."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


class ClipBpe:
    def __init__(self, folder):
        with open(os.path.join(folder, "vocab.json")) as f:
            self.vocab = json.load(f)
        with open(os.path.join(folder, "merges.txt")) as f:
            lines = f.read().split("\n")
        assert lines[0].startswith("#version"), "merges.txt must start with #version"
        merges = [tuple(line.split()) for line in lines[1:] if line]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.bos = self.vocab["<|startoftext|>"]
        self.eos = self.vocab["<|endoftext|>"]

    def tokens(self, text):
        out = []
        for word in clip_words(text):
            if word in ("<|startoftext|>", "<|endoftext|>"):
                out.append(word)
                continue
            out.extend(bpe("".join(self.byte_encoder[b] for b in word.encode("utf-8")), self.ranks))
        return out

    def encode(self, text):
        """CLIPTokenizer's ids: <|startoftext|>, the BPE tokens, <|endoftext|>."""
        return [self.bos] + [self.vocab[t] for t in self.tokens(text)] + [self.eos]

    def batch(self, texts, length):
        """input_ids and attention_mask [N, length]: padded with <|endoftext|>, mask 0 there."""
        ids = torch.full((len(texts), length), self.eos, dtype=torch.int64)
        mask = torch.zeros((len(texts), length), dtype=torch.int64)
        for i, text in enumerate(texts):
            row = self.encode(text)
            assert len(row) <= length, f"{text!r} is {len(row)} tokens, more than {length}"
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask


# ---------------------------------------------------------------- the golden check


def check_golden(golden="/work/shared/golden/clip-a"):
    """Largest differences from transformers' outputs on clip-a (config defaults filled in as CLIPConfig does)."""
    with open(os.path.join(golden, "model", "config.json")) as f:
        config = json.load(f)
    t_defaults = {"max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    v_defaults = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "num_channels": 3}
    config["text_config"] = {**t_defaults, **config["text_config"]}
    config["vision_config"] = {**v_defaults, **config["vision_config"]}
    model = ClipModel(config)
    model.load_state_dict(load_safetensors(os.path.join(golden, "model", "model.safetensors")), strict=True)
    model.eval()
    inputs = load_safetensors_any(os.path.join(golden, "inputs.safetensors"))
    gold = load_safetensors_any(os.path.join(golden, "golden.safetensors"))
    ids, mask, pixels = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]
    with torch.no_grad():
        hs = []
        last, pooled = model.text_model(ids, mask, hs)
        te = model.text_embeds(ids, mask)
        ie = model.image_embeds(pixels)
        logits = model.logit_scale.exp() * ie @ te.T
    diffs = {
        "text_hidden_states": (torch.stack(hs, 0) - gold["text_hidden_states"]).abs().max().item(),
        "text_last_hidden_state": (last - gold["text_last_hidden_state"]).abs().max().item(),
        "text_pooled_index": int((model.text_model.pooled_index(ids) != gold["text_pooled_index"]).sum()),
        "text_embeds": (te - gold["text_embeds"]).abs().max().item(),
        "image_embeds": (ie - gold["image_embeds"]).abs().max().item(),
        "logits_per_image": (logits - gold["logits_per_image"]).abs().max().item(),
    }
    return diffs


def load_safetensors_any(path):
    """safetensors with F32 and I64 tensors (the golden inputs hold int64 ids)."""
    import struct

    import numpy as np

    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header.pop("__metadata__", None)
    base = 8 + length
    kinds = {"F32": "<f4", "I64": "<i8"}
    out = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype=kinds[entry["dtype"]]).reshape(entry["shape"])
        out[name] = torch.from_numpy(array.copy())
    return out


if __name__ == "__main__":
    print(json.dumps(check_golden(), indent=2))

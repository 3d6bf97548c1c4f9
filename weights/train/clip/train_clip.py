"""
Trains the shapes CLIP on a dataset written by data_clip.ts, on the CPU, and saves it as a
Hugging Face CLIPModel folder (config.json and model.safetensors; build_tokenizer.py and
data_clip.ts wrote the tokenizer and preprocessor files there already).

    /usr/bin/python3 weights/train/clip/train_clip.py --data weights/.data/clip/train \
        --eval-data weights/.data/clip/eval-7 --out weights/shapes-clip

Needs Debian's python3-torch and python3-numpy (no pip). clip_modeling.py holds the model.

Each step takes a batch of distinct images and one of each image's training texts (drawn by
sampleClipText in src/shapes/clip_texts.ts: the full description half the time, else a short
phrase), and minimises CLIP's symmetric InfoNCE: cross-entropy of each image over the batch's
texts and of each text over the batch's images, with the pair's own image or text as the target.
Short phrases are often true of other images in the batch too ("a circle"), so by default
(--negatives true) a text that is true of an image other than its own is left out of that
image's softmax and that image out of the text's softmax: the dataset lists every text true of
each scene, so this is exact. --negatives duplicates leaves out only repeats of the same text,
--negatives all leaves nothing out (plain CLIP).

The vision tower starts from the shapes LLaVA's (--init-vision, its vision_tower.vision_model.*
tensors; its last layer and post_layernorm were never trained there); the text tower and both
projections start at random. AdamW, linear warm-up then cosine decay; logit_scale is trained
and clamped to ln(100), as CLIP does.

It prints, every --eval-every steps and at the end, on the evaluation set (scenes of another
seed): (a) choosing an image's description among 8 (its own and 7 of other scenes, drawn
seeded, all with a different description), (b) the colour of one-shape scenes among the 6
prompts "a {colour} shape", (c) text-to-image recall@1 and @5 over the first 300 images, the
query each image's description (also counted "by description": a hit when the image found has
the same description as the query, which one-shape scenes often share). It saves the model at
each evaluation, so a stopped run leaves its latest weights.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_modeling import ClipBpe, ClipModel, checkpoint_tensors, clip_words, load_safetensors, save_safetensors  # noqa: E402

VISION = {
    "model_type": "clip_vision_model",
    "hidden_size": 192,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 6,
    "image_size": 72,
    "patch_size": 24,
    "num_channels": 3,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
}
TEXT = {
    "model_type": "clip_text_model",
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
}
PROJECTION_DIM = 64
LOGIT_SCALE_INIT = 2.6592
MAX_LOGIT_SCALE = math.log(100.0)


def make_config(vocab_size, bos, eos):
    text = {**TEXT, "vocab_size": vocab_size, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos, "projection_dim": PROJECTION_DIM}
    vision = {**VISION, "projection_dim": PROJECTION_DIM}
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": PROJECTION_DIM,
        "logit_scale_init_value": LOGIT_SCALE_INIT,
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "text_config": text,
        "vision_config": vision,
    }


class Dataset:
    """images.u8 + scenes.jsonl + meta.json; texts as ids through a word lookup (checked against BPE)."""

    def __init__(self, folder, tokenizer, lookup):
        with open(os.path.join(folder, "meta.json")) as f:
            self.meta = json.load(f)
        size = self.meta["imageSize"]
        self.images = np.fromfile(os.path.join(folder, "images.u8"), dtype=np.uint8).reshape(-1, size, size, 3)
        with open(os.path.join(folder, "scenes.jsonl")) as f:
            self.records = [json.loads(line) for line in f if line.strip()]
        assert len(self.records) == len(self.images)
        self.table = torch.tensor(self.meta["pixelTable"], dtype=torch.float32)  # [3, 256]
        for r in self.records:
            for t in r["texts"] + r["true"]:
                lookup.index(t)
        self.texts = [[lookup.index(t) for t in r["texts"]] for r in self.records]
        self.true = [{lookup.index(t) for t in r["true"]} for r in self.records]
        self.descriptions = [lookup.index(r["description"]) for r in self.records]

    def pixels(self, index):
        """pixel_values [B, 3, H, W] of images `index` (the table gives exactly the runtime's values)."""
        img = torch.from_numpy(self.images[index].astype(np.int64))  # [B, H, W, 3]
        return torch.stack([self.table[c][img[..., c]] for c in range(3)], dim=1)


class TextTable:
    """Every distinct text, its ids [context] and length; ids by a word lookup, checked against CLIP BPE."""

    def __init__(self, tokenizer, context):
        self.tokenizer = tokenizer
        self.context = context
        self.word_ids = {w[: -len("</w>")]: i for w, i in tokenizer.vocab.items() if w.endswith("</w>")}
        self.ids_of = {}
        self.rows = []

    def index(self, text):
        if text in self.ids_of:
            return self.ids_of[text]
        ids = [self.tokenizer.bos] + [self.word_ids[w] for w in clip_words(text)] + [self.tokenizer.eos]
        assert ids == self.tokenizer.encode(text), f"the word lookup and CLIP BPE disagree on {text!r}"
        assert len(ids) <= self.context, f"{text!r}: {len(ids)} ids, context {self.context}"
        self.ids_of[text] = len(self.rows)
        self.rows.append(ids)
        return self.ids_of[text]

    def batch(self, uids):
        """input_ids and attention_mask [B, longest]: padded with <|endoftext|>, mask 0 there."""
        length = max(len(self.rows[u]) for u in uids)
        ids = torch.full((len(uids), length), self.tokenizer.eos, dtype=torch.int64)
        mask = torch.zeros((len(uids), length), dtype=torch.int64)
        for i, u in enumerate(uids):
            row = self.rows[u]
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask


def init_weights(model, seed):
    """Text tower: embeddings N(0, 0.02), linears N(0, 0.02) with zero bias, layer norms 1 and 0; projections N(0, hidden^-0.5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if name.endswith("bias"):
                p.zero_()
            elif "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                p.fill_(1.0)
            elif name.endswith("projection.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[1] ** -0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def load_vision(model, path):
    tensors = load_safetensors(path)
    prefix = "vision_tower.vision_model."
    vision = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = model.vision_model.load_state_dict(vision, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return len(vision)


def text_embeds(model, table, uids, chunk=512):
    out = []
    for s in range(0, len(uids), chunk):
        ids, mask = table.batch(uids[s : s + chunk])
        out.append(model.text_embeds(ids, mask))
    return torch.cat(out)


def image_embeds(model, data, index, chunk=500):
    return torch.cat([model.image_embeds(data.pixels(index[s : s + chunk])) for s in range(0, len(index), chunk)])


@torch.no_grad()
def evaluate(model, data, table, retrieval_images=300, choices=8, seed=0):
    model.eval()
    n = len(data.records)
    img = image_embeds(model, data, np.arange(n))
    desc = text_embeds(model, table, data.descriptions)
    descriptions = [r["description"] for r in data.records]
    # (a) the right description among `choices`
    rng = np.random.default_rng(seed)
    right = 0
    for i in range(n):
        others = [j for j in rng.permutation(n) if descriptions[j] != descriptions[i]][: choices - 1]
        candidates = [i] + others
        scores = desc[candidates] @ img[i]
        right += int(scores.argmax()) == 0
    a = right / n
    # (b) colour of one-shape scenes among "a {colour} shape"
    colours = data.meta["colours"]
    prompts = text_embeds(model, table, [table.index(f"a {c} shape") for c in colours])
    single = [i for i in range(n) if len(data.records[i]["scene"]["shapes"]) == 1]
    truth = torch.tensor([colours.index(data.records[i]["scene"]["shapes"][0]["colour"]) for i in single])
    guess = (img[single] @ prompts.T).argmax(dim=1)
    b = float((guess == truth).float().mean())
    # (c) text-to-image recall over the first `retrieval_images`
    m = min(retrieval_images, n)
    sims = desc[:m] @ img[:m].T  # [query, image]
    order = sims.argsort(dim=1, descending=True)
    rank = (order == torch.arange(m)[:, None]).int().argmax(dim=1)
    same = torch.tensor([[descriptions[q] == descriptions[int(j)] for j in order[q, :5]] for q in range(m)])
    c = {
        "r1": float((rank < 1).float().mean()),
        "r5": float((rank < 5).float().mean()),
        "r1_by_description": float(same[:, 0].float().mean()),
        "r5_by_description": float(same.any(dim=1).float().mean()),
    }
    model.train()
    return {"a_description_of_8": a, "a_images": n, "b_colour_of_6": b, "b_images": len(single), "c_retrieval": c, "c_images": m}


def format_eval(e):
    c = e["c_retrieval"]
    return (
        f"(a) description among 8: {100 * e['a_description_of_8']:.1f}% of {e['a_images']}  "
        f"(b) colour among 6: {100 * e['b_colour_of_6']:.1f}% of {e['b_images']}  "
        f"(c) text->image over {e['c_images']}: R@1 {100 * c['r1']:.1f}% R@5 {100 * c['r5']:.1f}% "
        f"(by description R@1 {100 * c['r1_by_description']:.1f}% R@5 {100 * c['r5_by_description']:.1f}%)"
    )


def save(model, config, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_safetensors(os.path.join(out, "model.safetensors"), checkpoint_tensors(model), {"format": "pt"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--eval-data", required=True)
    parser.add_argument("--out", required=True, help="the model folder (its tokenizer files are read from it)")
    parser.add_argument("--init-vision", default="weights/shapes-llava/model.safetensors", help="'none' to start the vision tower at random")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the text tower, the projections and logit_scale")
    parser.add_argument("--vision-lr", type=float, default=3e-4, help="peak learning rate of the vision tower")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--negatives", choices=["true", "duplicates", "all"], default="true")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this step (the schedule stays that of --steps): for comparing recipes early")
    parser.add_argument("--log", default=None, help="a JSON file for the losses and evaluations")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    tokenizer = ClipBpe(args.out)
    table = TextTable(tokenizer, TEXT["max_position_embeddings"])
    started = time.time()
    train = Dataset(args.data, tokenizer, table)
    evald = Dataset(args.eval_data, tokenizer, table)
    print(f"{len(train.records)} training images, {len(evald.records)} evaluation images, {len(table.rows)} distinct texts ({time.time() - started:.0f} s)", flush=True)

    config = make_config(len(tokenizer.vocab), tokenizer.bos, tokenizer.eos)
    model = ClipModel(config)
    init_weights(model, args.seed)
    if args.init_vision != "none":
        print(f"vision tower from {args.init_vision} ({load_vision(model, args.init_vision)} tensors)")
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters ({params * 4 / 2**20:.2f} MiB in f32)", flush=True)

    groups = {"vision": [], "decay": [], "no_decay": []}
    for name, p in model.named_parameters():
        if name.startswith("vision_model."):
            groups["vision"].append(p)
        elif p.dim() >= 2:
            groups["decay"].append(p)
        else:
            groups["no_decay"].append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": groups["vision"], "lr": args.vision_lr, "peak": args.vision_lr, "weight_decay": args.weight_decay},
            {"params": groups["decay"], "lr": args.lr, "peak": args.lr, "weight_decay": args.weight_decay},
            {"params": groups["no_decay"], "lr": args.lr, "peak": args.lr, "weight_decay": 0.0},
        ],
        betas=(0.9, 0.98),
        eps=1e-6,
    )

    rng = np.random.default_rng(args.seed)
    n = len(train.records)
    order, cursor = rng.permutation(n), 0
    log = {"args": vars(args), "steps": [], "evals": []}
    model.train()
    started = time.time()
    running = []
    for step in range(1, args.steps + 1):
        scale = step / args.warmup if step <= args.warmup else 0.5 * (1 + math.cos(math.pi * (step - args.warmup) / max(1, args.steps - args.warmup)))
        for g in optimizer.param_groups:
            g["lr"] = g["peak"] * scale
        if cursor + args.batch > n:
            order, cursor = rng.permutation(n), 0
        index = order[cursor : cursor + args.batch]
        cursor += args.batch
        uids = [train.texts[i][rng.integers(len(train.texts[i]))] for i in index]
        pixels = train.pixels(index)
        ids, mask = table.batch(uids)

        img = model.image_embeds(pixels)
        txt = model.text_embeds(ids, mask)
        logits = model.logit_scale.exp() * img @ txt.T  # [image, text]
        B = len(index)
        eye = torch.eye(B, dtype=torch.bool)
        if args.negatives == "true":
            hide = torch.tensor([[uids[j] in train.true[i] for j in range(B)] for i in range(B)]) & ~eye
        elif args.negatives == "duplicates":
            u = torch.tensor(uids)
            hide = (u[:, None] == u[None, :]) & ~eye
        else:
            hide = torch.zeros(B, B, dtype=torch.bool)
        target = torch.arange(B)
        loss_i = F.cross_entropy(logits.masked_fill(hide, float("-inf")), target)
        loss_t = F.cross_entropy(logits.T.masked_fill(hide.T, float("-inf")), target)
        loss = (loss_i + loss_t) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        running.append(loss.item())
        if step % 50 == 0 or step == 1:
            elapsed = time.time() - started
            mean = sum(running) / len(running)
            running = []
            print(f"step {step}  loss {mean:.4f}  logit scale {model.logit_scale.exp().item():.1f}  hidden {int(hide.sum())}  {elapsed / step:.2f} s/step  {elapsed / 60:.1f} min", flush=True)
            log["steps"].append({"step": step, "loss": mean, "logit_scale": model.logit_scale.exp().item(), "seconds": elapsed})
        if step % args.eval_every == 0 or step == args.steps:
            e = evaluate(model, evald, table)
            e["step"] = step
            e["minutes"] = (time.time() - started) / 60
            print(f"eval step {step}: {format_eval(e)}", flush=True)
            log["evals"].append(e)
            save(model, config, args.out)
            if args.log:
                with open(args.log, "w") as f:
                    json.dump(log, f, indent=1)
            if args.stop_after is not None and step >= args.stop_after:
                print(f"stopped after step {step} (--stop-after)", flush=True)
                break
    print(f"trained {step} steps in {(time.time() - started) / 60:.1f} min; saved to {args.out}", flush=True)


if __name__ == "__main__":
    main()

"""
Trains the shapes model from scratch on a dataset written by data.ts, on the CPU, and saves it as
a Hugging Face LLaVA folder (config.json, generation_config.json, model.safetensors; data.ts
wrote the tokenizer and preprocessor files there already).

    /usr/bin/python3 weights/train/train.py --data weights/.data/train --eval-data weights/.data/eval-7 --out weights/shapes-llava

Needs Debian's python3-torch and python3-numpy (no pip; modeling.py, beside this file, holds the
model). train.sh runs the whole pipeline: tokenizer, datasets, this script, the evaluations.

Each step takes a batch of images, runs the vision tower once per image, and asks each image
a few of its questions, drawn at random (so the types come as often as the dataset holds them:
colour and position questions for every shape, a few counts and presence questions, one
description); the loss is the cross-entropy of the answer tokens (and the end-of-sequence token
after them) only. An image's questions run packed in one row that computes their shared prompt
prefix once (PackedBatch; checked against separate sequences when training starts). Everything
random is seeded: the same dataset and arguments give the same weights (on the same build of
PyTorch and BLAS).

Two training aids, neither part of the saved model, make learning faster:

- CellProbe: learning to see from the answers alone is slow at first (until the vision tower's
  features mean something the decoder has nothing to attend to, and until the decoder attends
  the tower gets no useful gradient), so a probe also reads each patch's feature, as the decoder
  sees it, and predicts what is in that patch's cell of the 3x3 grid and which cell it is: a
  dense signal straight into the vision tower. Weight --probe-weight.
- LookupGuide: questions about one named shape need the decoder to find that shape among the
  image features by content; the guide tells one attention head, at every answer token, which
  image positions the answer is about (and another head, in descriptions, which shape the
  phrase being written is about). Weight --guide-weight.

With --eval-data it prints exact-match accuracy per question type as it goes, measured
teacher-forced: a greedy decoder reproduces the answer exactly when, and only when, every
answer token (and EOS) is the argmax given the right tokens before it, so one forward pass per
question gives the accuracy free-running greedy decoding would.

What this recipe reaches, how it got there, what did not work and how long a run takes:
NOTES.md, beside this file.
"""
import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modeling import Llava, checkpoint_tensors, load_safetensors, save_safetensors  # noqa: E402

# The architecture, as config.json spells it (every field that matters written out, so the file
# does not depend on anyone's defaults). ids come from the tokenizer (meta.json).
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
}
TEXT = {
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "attention_bias": False,
}
QUESTION_TYPES = ["colour", "count", "presence", "position", "description"]


def model_config(meta):
    text = dict(TEXT, vocab_size=meta["vocabSize"], bos_token_id=meta["bosTokenId"], eos_token_id=meta["eosTokenId"], pad_token_id=meta["padTokenId"])
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": meta["imageTokenId"],
        "pad_token_id": meta["padTokenId"],
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "ignore_index": -100,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "text_config": text,
        "vision_config": dict(VISION),
    }


CELLS = 9


class Dataset:
    """images.u8 + scenes.jsonl + examples.jsonl + meta.json, as data.ts writes them."""

    def __init__(self, folder):
        with open(os.path.join(folder, "meta.json")) as f:
            self.meta = json.load(f)
        size = self.meta["imageSize"]
        self.images = np.fromfile(os.path.join(folder, "images.u8"), dtype=np.uint8).reshape(-1, size, size, 3)
        assert self.images.shape[0] == self.meta["images"], f"{folder}: images.u8 does not hold {self.meta['images']} images"
        self.table = np.array(self.meta["pixelTable"], dtype=np.float32)  # [3, 256]
        # What is in each cell: 0 for nothing, else 1 + the index of the shape's kind (colour).
        kinds = {k: i + 1 for i, k in enumerate(self.meta["shapeKinds"])}
        colours = {c: i + 1 for i, c in enumerate(self.meta["colours"])}
        self.cell_kinds = np.zeros((len(self.images), CELLS), dtype=np.int64)
        self.cell_colours = np.zeros((len(self.images), CELLS), dtype=np.int64)
        with open(os.path.join(folder, "scenes.jsonl")) as f:
            for i, line in enumerate(f):
                for shape in json.loads(line)["shapes"]:
                    self.cell_kinds[i, shape["cell"]] = kinds[shape["kind"]]
                    self.cell_colours[i, shape["cell"]] = colours[shape["colour"]]
        with open(os.path.join(folder, "examples.jsonl")) as f:
            self.examples = [json.loads(line) for line in f]
        # per image: the indices of its examples
        self.by_image = [[] for _ in range(len(self.images))]
        for i, e in enumerate(self.examples):
            self.by_image[e["image"]].append(i)

    def pixels(self, indices):
        """pixel_values [B, 3, H, W]: table[c, byte], exactly what the runtime's preprocessing gives."""
        rgb = self.images[indices]
        return torch.from_numpy(np.stack([self.table[c][rgb[..., c]] for c in range(3)], axis=1))


def batch_tensors(examples, pad_id):
    """Input ids (prompt + target without its last token, right-padded) and labels (-100 off the target)."""
    lengths = [len(e["prompt"]) + len(e["target"]) - 1 for e in examples]
    width = max(lengths)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, e in enumerate(examples):
        full = e["prompt"] + e["target"]
        ids[row, : len(full) - 1] = torch.tensor(full[:-1])
        p = len(e["prompt"])
        labels[row, p - 1 : len(full) - 1] = torch.tensor(e["target"])
    return ids, labels


def answer_logits(model, ids, labels, features):
    """Logits [n, vocab] at every labelled position (the LM head runs only there), and their labels."""
    hidden = model.language_model.model(model.merge(ids, features))
    shift = features.shape[1] - 1  # the <image> token became `patches` positions
    rows, cols = (labels != -100).nonzero(as_tuple=True)
    return model.language_model.lm_head(hidden[rows, cols + shift]), labels[rows, cols], rows


class PackedBatch:
    """
    The questions asked of each image packed into one row: the prompt prefix they share (BOS,
    "USER:", the image, the newline) once, then each question's own tokens and its answer, each
    attending only to the prefix and to itself, at the positions it would have alone. Every
    token sees exactly what it would in a sequence of its own, so the losses are the same, but
    the prefix, most of a short question's length, runs once per image instead of once per
    question.
    """

    def __init__(self, groups, pad_id, image_token_id, patches):
        """groups: for each image (row), the examples asked of it."""
        rows = []
        for examples in groups:
            shared = min(len(e["prompt"]) for e in examples) - 1  # each block keeps its last prompt token
            while any(e["prompt"][:shared] != examples[0]["prompt"][:shared] for e in examples):
                shared -= 1
            assert image_token_id in examples[0]["prompt"][:shared], "the shared prefix must hold the <image> token"
            tokens, blocks, positions = list(examples[0]["prompt"][:shared]), [0] * shared, list(range(shared))
            answers = []  # (token index, example, which answer token)
            for b, e in enumerate(examples, start=1):
                first = len(tokens) + len(e["prompt"]) - shared - 1  # the token that predicts the first answer token
                answers += [(first + t, e, t) for t in range(len(e["target"]))]
                own = (e["prompt"] + e["target"])[shared:-1]
                tokens += own
                blocks += [b] * len(own)
                positions += range(shared, shared + len(own))
            rows.append((tokens, blocks, positions, answers))
        width = max(len(tokens) for tokens, _, _, _ in rows)
        self.ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        block = torch.full((len(rows), width), -1, dtype=torch.long)  # padding: a block of its own
        position = torch.zeros((len(rows), width), dtype=torch.long)
        # Merged with the image's features, the <image> token (at the same index in every row's
        # prefix) becomes `patches` positions, and every later token moves `patches - 1` along.
        self.answers = []  # (row, merged position that predicts it, example, which answer token)
        for r, (tokens, blocks, positions, answers) in enumerate(rows):
            self.ids[r, : len(tokens)] = torch.tensor(tokens)
            block[r, : len(tokens)] = torch.tensor(blocks)
            position[r, : len(tokens)] = torch.tensor(positions)
            self.answers += [(r, i + patches - 1, e, t) for i, e, t in answers]
        image = int((self.ids[0] == image_token_id).nonzero()[0, 0])
        self.image_start = image
        spread = torch.cat([torch.arange(image), torch.full((patches,), image), torch.arange(image + 1, width)])
        block, position = block[:, spread], position[:, spread]
        position[:, image : image + patches] = torch.arange(image, image + patches)
        position[:, image + patches :] += patches - 1
        key, query = block.unsqueeze(1), block.unsqueeze(2)
        causal = torch.ones(len(spread), len(spread), dtype=torch.bool).tril()
        self.allowed = causal & ((key == 0) | (key == query))
        self.positions = position

    def logits(self, model, features):
        """Logits [n, vocab] at every answer position (in self.answers' order) and the answer tokens."""
        hidden = model.language_model.model(model.merge(self.ids, features), self.positions, self.allowed)
        rows = torch.tensor([r for r, _, _, _ in self.answers])
        cols = torch.tensor([i for _, i, _, _ in self.answers])
        targets = torch.tensor([e["target"][t] for _, _, e, t in self.answers])
        return model.language_model.lm_head(hidden[rows, cols]), targets


@torch.no_grad()
def check_packing(model, data, pad_id, images=8, questions=4):
    """Packed rows must give the logits separate sequences give (run once before training)."""
    groups = [[data.examples[i] for i in data.by_image[image][:questions]] for image in range(images)]
    features = model.image_features(data.pixels(list(range(images))))
    batch = PackedBatch(groups, pad_id, data.meta["imageTokenId"], features.shape[1])
    packed, packed_targets = batch.logits(model, features)
    owners = [image for image, group in enumerate(groups) for _ in group]
    ids, labels = batch_tensors([e for group in groups for e in group], pad_id)
    separate, separate_targets, _ = answer_logits(model, ids, labels, features[owners])
    assert torch.equal(packed_targets, separate_targets), "packed batch: answer tokens out of order"
    difference = (packed - separate).abs().max().item()
    assert difference < 1e-3 * (1 + separate.abs().max().item()), f"packed batch: logits differ from separate sequences by {difference}"


@torch.no_grad()
def exact_match(model, data, pad_id, limit=None, batch=64):
    """Teacher-forced exact match per question type over (the first `limit` of) a dataset."""
    model.eval()
    examples = data.examples[:limit] if limit else data.examples
    right = {t: 0 for t in QUESTION_TYPES}
    total = {t: 0 for t in QUESTION_TYPES}
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        features = model.image_features(data.pixels([e["image"] for e in chunk]))
        ids, labels = batch_tensors(chunk, pad_id)
        logits, targets, rows = answer_logits(model, ids, labels, features)
        wrong = torch.zeros(len(chunk), dtype=torch.bool).index_put_((rows,), logits.argmax(-1) != targets, accumulate=True)
        for e, w in zip(chunk, wrong.tolist()):
            total[e["type"]] += 1
            right[e["type"]] += 0 if w else 1
    model.train()
    per_type = {t: right[t] / total[t] for t in QUESTION_TYPES if total[t]}
    return sum(right.values()) / max(1, sum(total.values())), per_type


class CellProbe(torch.nn.Module):
    """
    Training aid: from each image feature as the decoder sees it (after the projector, scaled to
    unit RMS as the decoder's first RMSNorm scales it), predict what is in that patch's own cell
    (which kind of shape, which colour, or none) and which of the nine cells it is. With
    24-pixel patches on the 3x3 grid, patch i is cell i.

    The probe is a cosine classifier (unit-norm weight rows, a fixed scale), so it cannot make up
    for a weak signal with large weights: to be confident it needs each fact to take a large
    share of the feature's norm. That is what the decoder needs too, since it learns the
    strong directions of its input first; a linear probe is content with a fact that is only a
    faint direction, which the decoder then ignores (NOTES.md).
    """

    SCALE = 10.0

    def __init__(self, config, kinds, colours):
        super().__init__()
        v = config["vision_config"]
        self.patches = (v["image_size"] // v["patch_size"]) ** 2
        assert self.patches == CELLS, "the probe expects one patch per grid cell"
        self.kinds, self.colours = kinds + 1, colours + 1
        self.weight = torch.nn.Parameter(torch.randn(self.kinds + self.colours + CELLS, config["text_config"]["hidden_size"]))

    def loss(self, projected, cell_kinds, cell_colours):
        x = projected * torch.rsqrt(projected.pow(2).mean(-1, keepdim=True) + 1e-6)
        out = self.SCALE * (x @ F.normalize(self.weight, dim=-1).T) / math.sqrt(x.shape[-1])
        kinds, colours, cells = out.split([self.kinds, self.colours, CELLS], dim=-1)
        where = torch.arange(CELLS).expand(projected.shape[0], CELLS)
        return (
            F.cross_entropy(kinds.reshape(-1, self.kinds), cell_kinds.flatten())
            + F.cross_entropy(colours.reshape(-1, self.colours), cell_colours.flatten())
            + F.cross_entropy(cells.reshape(-1, CELLS), where.flatten())
        )


class LookupGuide:
    """
    Training aid: shows two attention heads of the decoder where to look. At every position
    that predicts an answer token (the end of sequence aside), a head of layer GUIDE_LAYER
    should put its attention on the image features of the cells that token is about. For a
    question (head QUESTION_HEAD): the cells the question is about (the named shape, the shapes
    to count, the shape whose presence makes "yes"), or the BOS token when there are none (a
    "no", a count of zero). For a description (head DESCRIPTION_HEAD, which reads the image in
    reading order rather than by content, so it gets a head of its own): the shape whose phrase
    the token belongs to ("A red circle at the top left" is about the first shape, " and a blue
    square ..." the next). The loss is -log of the attention mass on those positions, averaged
    over each head's tokens, the two heads' losses added.

    Finding a key by its content needs a query and a key that both already carry the shape, and
    neither gets a gradient until the other does, so without help the decoder may never learn
    to look a named shape up (NOTES.md); the guide breaks that tie. It leaves the model's
    architecture as it is: only which head does the looking up is chosen for it.
    """

    GUIDE_LAYER = 2
    QUESTION_HEAD = 0
    DESCRIPTION_HEAD = 2  # with two key-value heads, heads 0-1 share one and 2-3 the other

    def __init__(self, model, pieces):
        """pieces: the tokenizer's piece for each id, to find which phrase of a description a token is in."""
        self.attention = model.language_model.model.layers[self.GUIDE_LAYER].self_attn
        self.attention.keep_weights = True
        self.pieces = pieces

    def token_cells(self, example):
        """For each answer token but the last (EOS): the cells it is about ([] = none, look at BOS)."""
        if example["type"] != "description":
            return [example["cells"]] * (len(example["target"]) - 1)
        # Phrases are listed in reading order, one per shape, each starting at its article.
        shapes = sorted(example["cells"])
        text = "".join(self.pieces[i] for i in example["target"][:-1]).replace("\u2581", " ")
        assert text == " " + example["answer"], f"description tokens do not spell the answer: {text!r}"
        articles = [m.start(2) + 1 for m in re.finditer(r"(^|, | and )(an?) ", example["answer"].lower())]  # + 1: the leading space
        assert len(articles) == len(shapes), f"{len(shapes)} shapes but {len(articles)} phrases in {example['answer']!r}"
        cells, end = [], 0
        for i in example["target"][:-1]:
            end += len(self.pieces[i])
            cells.append([shapes[sum(a < end for a in articles) - 1]])
        return cells

    def loss(self, batch):
        """Call right after the decoder's forward pass over a PackedBatch."""
        probs = self.attention.kept_weights  # [B, heads, S', S'] over merged positions
        cells_of = {}
        losses = []
        for head, descriptions in ((self.QUESTION_HEAD, False), (self.DESCRIPTION_HEAD, True)):
            rows, queries, keys, guided = [], [], [], []  # guided: which guided query each key belongs to
            for row, i, e, t in batch.answers:
                if (e["type"] == "description") != descriptions or t == len(e["target"]) - 1:
                    continue
                if id(e) not in cells_of:
                    cells_of[id(e)] = self.token_cells(e)
                looked_at = [batch.image_start + c for c in cells_of[id(e)][t]] or [0]
                rows += [row] * len(looked_at)
                queries += [i] * len(looked_at)
                keys += looked_at
                guided += [guided[-1] + 1 if guided else 0] * len(looked_at)
            if guided:
                mass = torch.zeros(guided[-1] + 1).index_add(0, torch.tensor(guided), probs[rows, head, queries, keys])
                losses.append(-torch.log(mass + 1e-9).mean())
        return sum(losses)


def tokenizer_pieces(path):
    """Each id's piece (its text, with \u2581 for a space) from a tokenizer.json."""
    if not os.path.exists(path):
        sys.exit(f"{path}: no tokenizer.json (run `npx tsx weights/train/data.ts model-files DIR` first, or pass --tokenizer)")
    with open(path) as f:
        vocab = json.load(f)["model"]["vocab"]
    pieces = [""] * (max(vocab.values()) + 1)
    for piece, i in vocab.items():
        pieces[i] = piece
    return pieces


def init_weights(model, config):
    """Small normal weights (std 0.02), residual output projections scaled down by depth, zero biases, unit norms."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif "norm" in name:  # LayerNorm and RMSNorm weights
            torch.nn.init.ones_(p)
        else:
            std = 0.02
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                std /= math.sqrt(2 * config["text_config"]["num_hidden_layers"])
            if name.endswith(("out_proj.weight", "fc2.weight")):
                std /= math.sqrt(2 * config["vision_config"]["num_hidden_layers"])
            torch.nn.init.normal_(p, std=std)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="training set folder (data.ts dataset --kind train)")
    parser.add_argument("--eval-data", help="evaluation set folder (data.ts dataset --kind eval), measured during training")
    parser.add_argument("--out", required=True, help="the model folder to write config.json and model.safetensors into")
    parser.add_argument("--steps", type=int, default=6500)
    parser.add_argument("--images-per-step", type=int, default=16)
    parser.add_argument("--questions-per-image", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe-weight", type=float, default=1.0, help="weight of the cell probe's loss (0: answers only)")
    parser.add_argument("--guide-weight", type=float, default=1.0, help="weight of the lookup guide's loss (0: no guide)")
    parser.add_argument("--tokenizer", help="the tokenizer.json the dataset was made with (default: the one in --out, where data.ts model-files wrote it)")
    parser.add_argument("--init", help="a model folder to start from (its config must match) instead of fresh weights")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=0, help="stop after this long (0: run all steps); the LR schedule still follows --steps")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train = Dataset(args.data)
    held_out = Dataset(args.eval_data) if args.eval_data else None
    meta = train.meta
    config = model_config(meta)
    pad_id = meta["padTokenId"]
    model = Llava(config)
    init_weights(model, config)
    if args.init:
        model.load_state_dict(load_safetensors(os.path.join(args.init, "model.safetensors")), strict=True)
    probe = CellProbe(config, len(meta["shapeKinds"]), len(meta["colours"]))
    guide = LookupGuide(model, tokenizer_pieces(args.tokenizer or os.path.join(args.out, "tokenizer.json")))
    # The vision layers after vision_feature_layer are never read; they stay at their initial values.
    params = [p for p in model.parameters()] + [p for p in probe.parameters()]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98)
    )

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    check_packing(model, train, pad_id)
    total_params = sum(p.numel() for p in model.parameters())
    print(f"{total_params} parameters; {len(train.images)} training images, {len(train.examples)} questions", flush=True)
    started = time.time()
    order = rng.permutation(len(train.images))
    cursor = 0
    smoothed = None
    for step in range(args.steps):
        if cursor + args.images_per_step > len(order):
            order = rng.permutation(len(train.images))
            cursor = 0
        images = order[cursor : cursor + args.images_per_step]
        cursor += args.images_per_step
        asked = []  # per image: the questions asked of it this step
        for image in images:
            mine = train.by_image[image]
            asked.append([train.examples[mine[i]] for i in rng.choice(len(mine), size=min(args.questions_per_image, len(mine)), replace=False)])
        vision = model.selected_features(train.pixels(images))
        projected = model.multi_modal_projector(vision)
        batch = PackedBatch(asked, pad_id, meta["imageTokenId"], probe.patches)
        logits, targets = batch.logits(model, projected)
        guide_loss = guide.loss(batch)
        token_losses = F.cross_entropy(logits, targets, reduction="none")
        answer_loss = token_losses.sum() / len(token_losses)  # every answer token counts the same
        probe_loss = probe.loss(projected[:, -probe.patches :], torch.from_numpy(train.cell_kinds[images]), torch.from_numpy(train.cell_colours[images]))
        loss = answer_loss + args.probe_weight * probe_loss + args.guide_weight * guide_loss
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses = np.array([answer_loss.item(), probe_loss.item(), guide_loss.item()])
        smoothed = losses if smoothed is None else 0.98 * smoothed + 0.02 * losses
        elapsed = time.time() - started
        if step % 50 == 0:
            print(f"step {step} answer loss {smoothed[0]:.4f} probe loss {smoothed[1]:.4f} guide loss {smoothed[2]:.4f} lr {lr_at(step):.2e} {elapsed / 60:.1f} min", flush=True)
        last = step == args.steps - 1 or (args.minutes and elapsed > args.minutes * 60)
        if held_out and ((step + 1) % args.eval_every == 0 or last):
            accuracy, per_type = exact_match(model, held_out, pad_id, limit=None if last else 250)
            print(f"step {step} exact match {accuracy:.4f} " + " ".join(f"{t} {a:.3f}" for t, a in per_type.items()), flush=True)
        if last:
            break

    os.makedirs(args.out, exist_ok=True)
    save_safetensors(os.path.join(args.out, "model.safetensors"), checkpoint_tensors(model), {"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": meta["bosTokenId"], "eos_token_id": meta["eosTokenId"], "pad_token_id": pad_id}, f, indent=2)
        f.write("\n")
    print(f"saved {args.out} after {step + 1} steps, {(time.time() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()

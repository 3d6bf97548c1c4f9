"""
A float32 PyTorch reference of the shapes CLIP, for checking the runtime against: given the
model folder, computes text_embeds for a few fixed texts (tokenized with CLIP BPE from the
folder's vocab.json and merges.txt) and image_embeds for the first images of a shapes CLIP
dataset, and writes them with everything needed to reproduce the inputs to a JSON file.

    /usr/bin/python3 weights/train/clip/reference.py [--model weights/shapes-clip] \
        [--data weights/.data/clip/eval-7] [--images 4] [--out weights/.data/clip/reference.json]

The images are scene i of the dataset's seed, i = 0..N-1: sampleScene(exampleRandom(seed, i))
rendered by src/shapes/world.ts at 72 px, so a runtime check can render them again; each entry
holds the image's byte sum to confirm it rendered the same bytes, and pixel_values come from the
dataset's pixel table (which data_clip.ts checked against the runtime's preprocessing).

The JSON holds, per text: text, input_ids (unpadded, start and end tokens included), the
pooled index, text_features (before normalising) and text_embeds; per image: seed, index,
description, byte_sum, image_features and image_embeds; then logit_scale (the raw parameter),
and logits_per_image [image][text] = exp(logit_scale) * image_embeds . text_embeds. The texts
run as one batch padded with <|endoftext|> (attention mask 0 there), as CLIPTokenizer pads.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_modeling import ClipBpe, load_model  # noqa: E402

TEXTS = [
    "A red circle at the top left and a blue square in the centre.",
    "a red circle",
    "two shapes",
    "a square at the top left",
    "a red circle and a blue square",
    "An orange diamond at the bottom right, a green triangle on the left and a purple circle at the top.",
    "a yellow shape",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="weights/shapes-clip")
    parser.add_argument("--data", default="weights/.data/clip/eval-7")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", default="weights/.data/clip/reference.json")
    args = parser.parse_args()

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = load_model(args.model)
    tok = ClipBpe(args.model)
    context = model.config["text_config"]["max_position_embeddings"]
    longest = max(len(tok.encode(t)) for t in TEXTS)
    ids, mask = tok.batch(TEXTS, longest)
    assert longest <= context

    with open(os.path.join(args.data, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(args.data, "scenes.jsonl")) as f:
        records = [json.loads(next(f)) for _ in range(args.images)]
    size = meta["imageSize"]
    images = np.fromfile(os.path.join(args.data, "images.u8"), dtype=np.uint8, count=args.images * size * size * 3).reshape(-1, size, size, 3)
    table = torch.tensor(meta["pixelTable"], dtype=torch.float32)
    img = torch.from_numpy(images.astype(np.int64))
    pixels = torch.stack([table[c][img[..., c]] for c in range(3)], dim=1)

    with torch.no_grad():
        tf = model.get_text_features(ids, mask)
        te = tf / tf.norm(dim=-1, keepdim=True)
        imf = model.get_image_features(pixels)
        ie = imf / imf.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * ie @ te.T
        pooled = model.text_model.pooled_index(ids)

    out = {
        "model": args.model,
        "made_with": f"weights/train/clip/reference.py, torch {torch.__version__}, float32",
        "texts": [
            {
                "text": t,
                "input_ids": tok.encode(t),
                "pooled_index": int(pooled[i]),
                "text_features": tf[i].tolist(),
                "text_embeds": te[i].tolist(),
            }
            for i, t in enumerate(TEXTS)
        ],
        "images": [
            {
                "seed": meta["seed"],
                "index": i,
                "description": records[i]["description"],
                "byte_sum": int(images[i].astype(np.int64).sum()),
                "image_features": imf[i].tolist(),
                "image_embeds": ie[i].tolist(),
            }
            for i in range(args.images)
        ],
        "logit_scale": float(model.logit_scale),
        "logits_per_image": logits.tolist(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    np.set_printoptions(precision=4, suppress=True)
    print(f"wrote {args.out}: {len(TEXTS)} texts, {args.images} images (seed {meta['seed']})")
    for i, r in enumerate(records):
        best = int(logits[i].argmax())
        print(f"  image {i} ({r['description']}): best text {best} ({TEXTS[best]!r}), logits {logits[i].numpy()}")
    print(f"  text_embeds[0][:6] {te[0, :6].numpy()}  image_embeds[0][:6] {ie[0, :6].numpy()}")


if __name__ == "__main__":
    main()

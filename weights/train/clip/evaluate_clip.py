"""
Evaluates a saved shapes CLIP folder on a dataset of data_clip.ts (scenes of a seed training
never saw): train_clip.py's three measures, then zero-shot probes of the short phrases.

    /usr/bin/python3 weights/train/clip/evaluate_clip.py [--model weights/shapes-clip] [--data weights/.data/clip/eval-7]

  (a) (b) (c)       as train_clip.evaluate (its docstring says how)
  count among 3     every image: "one shape" / "two shapes" / "three shapes"
  kind among 4      one-shape images: "a circle" / "a square" / "a triangle" / "a diamond"
  pair among 24     one-shape images: "a {colour} {kind}"
  position among 9  one-shape images: "a shape at the top left" / ... / "a shape in the centre" / ...
  true vs false     every image, every phrase family: a true phrase of the family against a false
                    one of the same family (a true phrase of another scene that is false here),
                    the share of pairs where the true one scores higher
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_modeling import ClipBpe, load_model  # noqa: E402
from train_clip import Dataset, TextTable, evaluate, format_eval, image_embeds, text_embeds  # noqa: E402

POSITIONS = ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"]


def position_phrase(p):
    if p == "centre":
        return "in the centre"
    if p in ("left", "right"):
        return f"on the {p}"
    return f"at the {p}"


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="weights/shapes-clip")
    parser.add_argument("--data", default="weights/.data/clip/eval-7")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = load_model(args.model)
    tok = ClipBpe(args.model)
    table = TextTable(tok, model.config["text_config"]["max_position_embeddings"])
    data = Dataset(args.data, tok, table)
    results = evaluate(model, data, table)
    print(format_eval(results))

    with torch.no_grad():
        n = len(data.records)
        img = image_embeds(model, data, np.arange(n))
        scenes = [r["scene"] for r in data.records]
        single = [i for i in range(n) if len(scenes[i]["shapes"]) == 1]

        def probe(name, prompts, images, answer):
            emb = text_embeds(model, table, [table.index(p) for p in prompts])
            guess = (img[images] @ emb.T).argmax(dim=1).tolist()
            right = sum(prompts[g] == answer(i) for g, i in zip(guess, images))
            results[name] = right / len(images)
            print(f"{name}: {100 * right / len(images):.1f}% of {len(images)}")

        counts = ["one shape", "two shapes", "three shapes"]
        probe("count_of_3", counts, list(range(n)), lambda i: counts[len(scenes[i]["shapes"]) - 1])
        kinds = data.meta["shapeKinds"]
        colours = data.meta["colours"]
        probe("kind_of_4", [f"a {k}" for k in kinds], single, lambda i: f"a {scenes[i]['shapes'][0]['kind']}")
        pairs = [f"{article(c)} {c} {k}" for c in colours for k in kinds]
        probe("pair_of_24", pairs, single, lambda i: f"{article(scenes[i]['shapes'][0]['colour'])} {scenes[i]['shapes'][0]['colour']} {scenes[i]['shapes'][0]['kind']}")
        places = [f"a shape {position_phrase(p)}" for p in POSITIONS]
        probe("position_of_9", places, single, lambda i: f"a shape {position_phrase(POSITIONS[scenes[i]['shapes'][0]['cell']])}")

        # true vs false phrases of one family: phrases come from the dataset's true lists, each
        # phrase's family found by its shape (the eval set's records hold texts, not families).
        rng = np.random.default_rng(0)
        true_sets = [set(r["true"][1:]) for r in data.records]
        every = sorted(set().union(*true_sets))
        emb = text_embeds(model, table, [table.index(t) for t in every])
        where = {t: k for k, t in enumerate(every)}
        wins, total = 0, 0
        for i in range(n):
            for t in true_sets[i]:
                words = len(t.split())
                falses = [u for u in every if u not in true_sets[i] and len(u.split()) == words and (" and " in u) == (" and " in t)]
                if not falses:
                    continue
                u = falses[rng.integers(len(falses))]
                wins += int(img[i] @ emb[where[t]] > img[i] @ emb[where[u]])
                total += 1
        results["true_vs_false_phrase"] = wins / total
        print(f"true vs false phrase (same length and form): {100 * wins / total:.1f}% of {total} pairs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

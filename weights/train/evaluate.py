"""
The trained shapes model in PyTorch, on an evaluation set written by data.ts (--kind eval, the
same examples `wgsl-vlm eval --seed S` asks):

    /usr/bin/python3 weights/train/evaluate.py --model weights/shapes-llava --data weights/.data/eval-7
        exact-match accuracy per question type (greedy decoding)
    ... --runtime eval-7.json
        and how often the runtime (`wgsl-vlm eval --n N --seed S --json > eval-7.json`) generated
        exactly the tokens PyTorch generates
    ... --fixture test/fixtures/shapes/teacher_forced.safetensors --fixture-examples 30
        writes the test fixture: for the first examples, the pixels, the ids of prompt and
        answer, and PyTorch's logits at the answer positions (teacher-forced), top 16 of each row
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modeling import Llava, load_safetensors  # noqa: E402
from train import QUESTION_TYPES, Dataset  # noqa: E402

MAX_NEW_TOKENS = 40  # as src/shapes/eval.ts
TOP_K = 16


def load_model(folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    model = Llava(config)
    model.load_state_dict(load_safetensors(os.path.join(folder, "model.safetensors")), strict=True)
    model.eval()
    return model, config


@torch.no_grad()
def greedy(model, data, eos_id, batch=64):
    """Greedy ids (without EOS) for every example; rows of equal prompt length decode together, each step a full forward pass."""
    out = [None] * len(data.examples)
    groups = {}
    for i, e in enumerate(data.examples):
        groups.setdefault(len(e["prompt"]), []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            features = model.image_features(data.pixels([data.examples[i]["image"] for i in chunk]))
            ids = torch.tensor([data.examples[i]["prompt"] for i in chunk])
            generated = [[] for _ in chunk]
            done = [False] * len(chunk)
            for _ in range(MAX_NEW_TOKENS):
                next_ids = model.logits(ids, features)[:, -1].argmax(-1)
                for row, token in enumerate(next_ids.tolist()):
                    if not done[row]:
                        if token == eos_id:
                            done[row] = True
                        else:
                            generated[row].append(token)
                if all(done):
                    break
                ids = torch.cat([ids, next_ids[:, None]], dim=1)
            for row, i in enumerate(chunk):
                out[i] = generated[row]
    return out


def write_safetensors(path, tensors):
    """Like modeling.save_safetensors, for the fixture's mixed dtypes."""
    kinds = {np.dtype("float32"): "F32", np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}
    header, offset, names = {"__metadata__": {"format": "pt"}}, 0, sorted(tensors, key=lambda n: (-tensors[n].dtype.itemsize, n))
    for name in names:
        a = tensors[name]
        header[name] = {"dtype": kinds[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes())


@torch.no_grad()
def write_fixture(model, data, path, count):
    """Teacher-forced logits at the answer positions of the first `count` examples, top TOP_K per row."""
    examples = data.examples[:count]
    ids, offsets, answer_rows, top_values, top_indices, images = [], [0], [], [], [], []
    for e in examples:
        full = e["prompt"] + e["target"]
        features = model.image_features(data.pixels([e["image"]]))
        logits = model.logits(torch.tensor([full[:-1]]), features)[0]
        shift = features.shape[1] - 1
        # logits at the positions that predict the target tokens (the last prompt token onwards)
        rows = logits[len(e["prompt"]) - 1 + shift :]
        values, indices = rows.topk(TOP_K, dim=-1)
        top_values.append(values.numpy())
        top_indices.append(indices.numpy().astype(np.int32))
        answer_rows.append(len(e["target"]))
        ids.extend(full)
        offsets.append(len(ids))
        images.append(data.images[e["image"]])
    write_safetensors(
        path,
        {
            "rgb": np.stack(images).astype(np.uint8),
            "ids": np.array(ids, dtype=np.int32),
            "offsets": np.array(offsets, dtype=np.int32),
            "prompt_lengths": np.array([len(e["prompt"]) for e in examples], dtype=np.int32),
            "top_values": np.concatenate(top_values).astype(np.float32),
            "top_indices": np.concatenate(top_indices),
        },
    )
    print(f"wrote {path}: {count} examples, {sum(answer_rows)} answer positions, top {TOP_K} logits each")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--runtime", help="`wgsl-vlm eval --json` output for the same set")
    parser.add_argument("--fixture", help="where to write the teacher-forced fixture")
    parser.add_argument("--fixture-examples", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, config = load_model(args.model)
    data = Dataset(args.data)
    assert data.meta["kind"] == "eval", f"{args.data} is not an evaluation set (data.ts dataset --kind eval)"
    eos = config["text_config"]["eos_token_id"]
    generated = greedy(model, data, eos)
    right = {t: [0, 0] for t in QUESTION_TYPES}
    for e, ids in zip(data.examples, generated):
        right[e["type"]][0] += ids + [eos] == e["target"]
        right[e["type"]][1] += 1
    correct = sum(r[0] for r in right.values())
    print(f"PyTorch, {len(data.examples)} examples (seed {data.meta['seed']}): exact match {correct}/{len(data.examples)} = {correct / len(data.examples):.4f}")
    for t, (c, n) in right.items():
        print(f"  {t:12} {c}/{n}")
    if args.runtime:
        with open(args.runtime) as f:
            report = json.load(f)
        records = report["records"]
        assert report["seed"] == data.meta["seed"] and len(records) <= len(generated), "the runtime's report is for another set"
        same = sum(r["tokens"] == generated[r["index"]] for r in records)
        print(f"runtime vs PyTorch: the same tokens on {same}/{len(records)} = {same / len(records):.4f}; runtime exact match {report['correct']}/{len(records)}")
        for r in records:
            if r["tokens"] != generated[r["index"]]:
                print(f"  #{r['index']} {r['question']!r}: runtime {r['answer']!r}, PyTorch ids {generated[r['index']]}")
    if args.fixture:
        write_fixture(model, data, args.fixture, args.fixture_examples)


if __name__ == "__main__":
    main()

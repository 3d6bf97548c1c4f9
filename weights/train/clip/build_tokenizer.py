"""
Writes the shapes CLIP's tokenizer into a model folder: vocab.json, merges.txt,
tokenizer_config.json and special_tokens_map.json, in the format of the Hub's openai/clip-vit-*
repositories (CLIPTokenizer), with a vocabulary made so that every word the shapes texts use is
one token `word</w>`.

    /usr/bin/python3 weights/train/clip/build_tokenizer.py --words WORDS.json --out DIR [--context 32]

WORDS.json is the word list of src/shapes/clip_texts.ts (`data_clip.ts words`). The ids, as in
CLIP: 0-255 the byte symbols in GPT-2's bytes_to_unicode order, 256-511 the same with </w>, then
one id per merge in rank order, then <|startoftext|> and <|endoftext|> (also pad and unknown).

The merges: words are taken shortest first (ties in the list's order); each word is run through
BPE with the merges made so far, and if that leaves more than one symbol, merges joining the
symbols left to right (s1 s2 -> s1s2, s1s2 s3 -> s1s2s3, ...) are appended. A new merge always
ranks after every earlier one, so it never changes how an earlier word splits: BPE applies the
lowest-ranked pair first, and an earlier word becomes one symbol through earlier merges alone.
At the end every word is checked to come out of plain CLIP BPE (clip_modeling.bpe) as the one
token word</w>.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_modeling import ClipBpe, bpe, bytes_to_unicode, clip_words  # noqa: E402

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_merges(words):
    byte_encoder = bytes_to_unicode()
    merges, ranks = [], {}
    for word in sorted(words, key=len):  # sorted() is stable: ties keep the list's order
        symbols = bpe("".join(byte_encoder[b] for b in word.encode("utf-8")), ranks)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
            symbols = [symbols[0] + symbols[1]] + symbols[2:]
    return merges


def build_vocab(merges):
    symbols = list(bytes_to_unicode().values())
    names = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    assert len(set(names)) == len(names), "a merge made a token twice"
    return {name: i for i, name in enumerate(names)}


def special(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--context", type=int, default=32)
    args = parser.parse_args()
    with open(args.words) as f:
        words = json.load(f)
    for word in words:
        assert clip_words(word) == [word], f"{word!r} is not one CLIP word (lower case, as CLIP's regex splits)"
    merges = build_merges(words)
    vocab = build_vocab(merges)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "vocab.json"), "w") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    bos, eos = vocab[BOS], vocab[EOS]
    config = {
        "added_tokens_decoder": {str(bos): {**special(BOS), "special": True}, str(eos): {**special(EOS), "special": True}},
        "bos_token": BOS,
        "clean_up_tokenization_spaces": True,
        "eos_token": EOS,
        "errors": "replace",
        "model_max_length": args.context,
        "pad_token": EOS,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS,
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": special(BOS), "eos_token": special(EOS), "pad_token": EOS, "unk_token": special(EOS)}, f, indent=2)
        f.write("\n")

    # The check, from the files as written: every word is one token word</w>.
    tok = ClipBpe(args.out)
    for word in words:
        pieces = tok.tokens(word)
        assert pieces == [word + "</w>"], f"{word!r} splits as {pieces}"
    print(f"{len(words)} words, {len(merges)} merges, {len(vocab)} ids (<|startoftext|> {bos}, <|endoftext|> {eos}); every word is one token")


if __name__ == "__main__":
    main()

/**
 * The shapes tokenizer: learnt by src/shapes/tokenizer_builder.ts, committed in
 * weights/shapes-llava, read by the same code that reads LLaMA's tokenizer.json.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { conversationText, encodeExample, promptText, tokenizerCorpus } from "../src/shapes/examples.js";
import { buildTokenizer, learnBpe, pretokenize } from "../src/shapes/tokenizer_builder.js";
import { MAX_POSITIONS, MAX_VOCAB_SIZE, TOKENIZER_IMAGES, TOKENIZER_SEED } from "../src/shapes/training_data.js";
import { loadTokenizer } from "../src/tokenizer/index.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");

describe("shapes tokenizer", async () => {
  const tokenizer = await loadTokenizer(MODEL);
  const config = JSON.parse(await readFile(join(MODEL, "config.json"), "utf8"));

  it("learns merges by frequency, ties to the pair that sorts first, and stops at pairs seen once", () => {
    // Words: ▁ab x3, ▁cd x1. (a, b) and (▁, a) both occur 3 times; "a b" sorts before "▁ a".
    expect(learnBpe(["ab ab ab cd"], 100)).toEqual({
      characters: ["a", "b", "c", "d", "▁"],
      merges: [
        ["a", "b"],
        ["▁", "ab"],
      ],
    });
    // The vocabulary limit counts characters and merges.
    expect(learnBpe(["ab ab ab cd"], 6).merges).toEqual([["a", "b"]]);
  });

  it("splits text as the tokenizer.json it writes does: added tokens out, ▁ for spaces, ▁ first only at the start", () => {
    expect(pretokenize("USER: <image>\nWhat is it? ASSISTANT: red", ["<image>"])).toEqual(["▁USER:", "▁", "\nWhat", "▁is", "▁it?", "▁ASSISTANT:", "▁red"]);
  });

  it("is what the builder makes from the recipe's corpus (the committed files are reproducible)", async () => {
    const files = buildTokenizer(tokenizerCorpus(TOKENIZER_SEED, TOKENIZER_IMAGES), { maxVocabSize: MAX_VOCAB_SIZE, modelMaxLength: MAX_POSITIONS });
    const read = async (name: string) => JSON.parse(await readFile(join(MODEL, name), "utf8"));
    expect(await read("tokenizer.json")).toEqual(files.tokenizer);
    expect(await read("tokenizer_config.json")).toEqual(files.config);
    expect(await read("special_tokens_map.json")).toEqual(files.specialTokensMap);
    expect(files.vocabSize).toBe(config.text_config.vocab_size);
    expect(files.imageTokenId).toBe(config.image_token_index);
  });

  it("has a few hundred ids in LLaMA's layout, with the model's special ids", () => {
    expect(tokenizer.vocabSize).toBeGreaterThan(300);
    expect(tokenizer.vocabSize).toBeLessThanOrEqual(MAX_VOCAB_SIZE);
    expect([tokenizer.unkId, tokenizer.bosId, tokenizer.eosId]).toEqual([0, 1, 2]);
    expect(tokenizer.pieceOf(3)).toBe("<0x00>");
    expect(tokenizer.pieceOf(258)).toBe("<0xFF>");
    expect(tokenizer.idOf("<image>")).toBe(config.image_token_index);
    expect(tokenizer.padId).toBe(config.pad_token_id);
    expect(tokenizer.eosId).toBe(config.text_config.eos_token_id);
    expect(tokenizer.isSpecial(tokenizer.idOf("<image>")!)).toBe(true);
  });

  it("encodes every conversation of the world with whole-word pieces and decodes it back", () => {
    const newline = tokenizer.idOf("<0x0A>")!;
    for (const text of tokenizerCorpus(TOKENIZER_SEED + 100, 300)) {
      const ids = tokenizer.encode(text);
      expect(ids[0]).toBe(tokenizer.bosId);
      expect(ids).not.toContain(tokenizer.unkId);
      // The newline of the chat template is the only byte-fallback token.
      expect(ids.filter((id) => id >= 3 && id <= 258)).toEqual([newline]);
      expect(tokenizer.decode(ids.slice(1), { skipSpecialTokens: false })).toBe(text);
      // Every word of the world is one piece.
      expect(ids.length).toBe(1 + pretokenize(text, ["<image>"]).length + 2);
    }
  });

  it("puts each answer after its prompt's ids and ends it with EOS", () => {
    const { promptIds, targetIds } = encodeExample(tokenizer, "Where is the red circle?", "top left");
    expect(promptIds).toEqual(tokenizer.encode(promptText("Where is the red circle?")));
    expect(tokenizer.decode(promptIds)).toBe("USER: \nWhere is the red circle? ASSISTANT:");
    expect(targetIds.map((id) => tokenizer.pieceOf(id))).toEqual(["▁top", "▁left", "</s>"]);
    expect(tokenizer.decode(targetIds)).toBe("top left");
    expect(tokenizer.encode(conversationText("Where is the red circle?", "top left"))).toEqual([...promptIds, ...targetIds.slice(0, -1)]);
  });

  it("spells text from outside the world in characters and bytes, and decodes it back", () => {
    for (const text of ["Qué es esto? 🙂", "zebra\tXYZ", "Is there a red circle?\n\nyes"]) {
      const ids = tokenizer.encode(text, { addBos: false });
      expect(ids).not.toContain(tokenizer.unkId);
      expect(tokenizer.decode(ids)).toBe(text);
    }
  });
});

/**
 * The SentencePiece path: tokenizer.model read by hand, encoded and decoded id for id as Debian's
 * python3-sentencepiece 0.1.97 does (fixtures made by test/fixtures/tokenizer/make_fixtures.py,
 * plus ../shared/tokenizer/expected-encodings.json copied as expected-encodings.json).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTokenizer, parseSentencePieceModel, sentencePieceTokenizer, type Tokenizer } from "../src/tokenizer/index.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/tokenizer/${name}`, import.meta.url));
const readCases = <T>(name: string): T[] => JSON.parse(readFileSync(fixture(name), "utf8")).cases;

interface EncodeCase {
  text: string;
  ids: number[];
  decoded: string;
}

let llama: Tokenizer;
beforeAll(async () => {
  llama = await loadTokenizer(fixture("tokenizer.model"));
});

describe("LLaMA-2 tokenizer.model", () => {
  it("reads the model: 32000 pieces, BOS 1, EOS 2, UNK 0, byte pieces", () => {
    expect(llama.vocabSize).toBe(32000);
    expect([llama.bosId, llama.eosId, llama.unkId, llama.padId]).toEqual([1, 2, 0, undefined]);
    expect([llama.pieceOf(0), llama.pieceOf(1), llama.pieceOf(2), llama.pieceOf(3), llama.pieceOf(13), llama.pieceOf(258)]).toEqual([
      "<unk>",
      "<s>",
      "</s>",
      "<0x00>",
      "<0x0A>",
      "<0xFF>",
    ]);
    expect(llama.idOf("▁Hello")).toBe(15043);
    expect(llama.idOf("\uFEFF")).toBe(30143); // a piece that is a byte order mark must survive UTF-8 decoding
    expect(llama.idOf("no such piece")).toBeUndefined();
    expect(llama.isSpecial(1) && llama.isSpecial(2) && !llama.isSpecial(15043)).toBe(true);
    expect(() => llama.pieceOf(32000)).toThrow(/32000 is not in the vocabulary/);
  });

  it("matches SentencePiece on the shared expected encodings", () => {
    for (const c of readCases<EncodeCase>("expected-encodings.json")) {
      expect(llama.encode(c.text, { addBos: false }), JSON.stringify(c.text)).toEqual(c.ids);
      expect(llama.decode(c.ids)).toBe(c.decoded);
    }
  });

  it("matches SentencePiece id for id on 600 tricky texts", () => {
    const cases = readCases<EncodeCase>("sentencepiece-cases.json");
    expect(cases.length).toBe(600);
    for (const c of cases) expect(llama.encode(c.text, { addBos: false }), JSON.stringify(c.text)).toEqual(c.ids);
  });

  it("decodes like SentencePiece: round trips, split bytes, control and unknown ids", () => {
    for (const c of readCases<EncodeCase>("sentencepiece-cases.json")) expect(llama.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded);
    const decodeCases = readCases<{ ids: number[]; text: string }>("decode-cases.json");
    expect(decodeCases.length).toBe(300);
    for (const c of decodeCases) expect(llama.decode(c.ids), JSON.stringify(c.ids)).toBe(c.text);
  });

  it("adds BOS by default, EOS on request", () => {
    expect(llama.encode("Hello world")).toEqual([1, 15043, 3186]);
    expect(llama.encode("Hello world", { addBos: false, addEos: true })).toEqual([15043, 3186, 2]);
    expect(llama.encode("")).toEqual([1]);
    expect(llama.encode("", { addBos: false })).toEqual([]);
  });

  it("treats added-token look-alikes as plain text (SentencePiece knows no <image>)", () => {
    // From the shared expected encodings: "<image>" is "▁<", "image", ">".
    expect(llama.encode("<image>", { addBos: false })).toEqual([529, 3027, 29958]);
    expect(llama.encode("<s>", { addBos: false })).toEqual([529, 29879, 29958]);
  });

  it("breaks ties between whitespace pieces (all scored -1e9) leftmost first", () => {
    // 17 spaces then x: "▁x" merges first, then the 17 "▁" join from the left into 16 + 1.
    expect(llama.encode(`${" ".repeat(17)}x`, { addBos: false }).map((id) => llama.pieceOf(id))).toEqual(["▁".repeat(16), "▁", "▁x"]);
    expect(llama.encode(" ".repeat(33), { addBos: false })).toEqual([462, 462, 259]);
  });

  it("encodes lone surrogates as U+FFFD, like the UTF-8 they would be written as", () => {
    expect(llama.encode("a\uD800b", { addBos: false })).toEqual(llama.encode("a\uFFFDb", { addBos: false }));
    expect(llama.encode("\uDE00", { addBos: false })).toEqual(llama.encode("\uFFFD", { addBos: false }));
  });

  it("decodes special tokens only when asked", () => {
    expect(llama.decode([1, 15043, 3186, 2])).toBe("Hello world");
    expect(llama.decode([1, 15043, 3186, 2], { skipSpecialTokens: false })).toBe("<s> Hello world</s>");
    expect(llama.decode([0, 15043])).toBe(" ⁇  Hello");
  });

  it("refuses ids outside the vocabulary", () => {
    expect(() => llama.decode([15043, 32000])).toThrow(/token id 32000/);
    expect(() => llama.decode([-1])).toThrow(/token id -1/);
    expect(() => llama.decode([1.5])).toThrow(/token id 1.5/);
  });

  it("encodes a 112,000-character word without quadratic rescans", () => {
    // One 112,000-character "word" (no spaces): the heap merge is O(n log n); a rescanning
    // merge would take minutes here.
    const long = "antidisestablishmentarianism".repeat(4000);
    const start = performance.now();
    const ids = llama.encode(long, { addBos: false });
    expect(performance.now() - start).toBeLessThan(5000);
    expect(llama.decode(ids)).toBe(long);
  });
});

describe("SentencePiece features LLaMA does not use (tiny models trained for the tests)", () => {
  it("matches SentencePiece on user-defined, control, UNUSED pieces, no byte fallback, whitespace options", async () => {
    const cases = readCases<EncodeCase & { model: string }>("tiny-cases.json");
    const tokenizers = new Map<string, Tokenizer>();
    for (const c of cases) {
      if (!tokenizers.has(c.model)) tokenizers.set(c.model, await loadTokenizer(fixture(c.model)));
      const tokenizer = tokenizers.get(c.model)!;
      const where = `${c.model}: ${JSON.stringify(c.text)}`;
      expect(tokenizer.encode(c.text, { addBos: false }), where).toEqual(c.ids);
      expect(tokenizer.decode(c.ids), where).toBe(c.decoded);
    }
    expect(tokenizers.size).toBe(2);
  });

  it("resegments UNUSED pieces into the pieces that made them", async () => {
    const tokenizer = sentencePieceTokenizer(parseSentencePieceModel(readFileSync(fixture("tiny-bytes-unused.model")), "tiny"));
    // "ll" is UNUSED in this model: it still merges, then splits back into "l", "l".
    const pieces = tokenizer.encode("Hello", { addBos: false }).map((id) => tokenizer.pieceOf(id));
    expect(pieces).toEqual(["<0x48>", "e", "l", "l", "o"]);
  });
});

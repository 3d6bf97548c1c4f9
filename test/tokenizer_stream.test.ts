/**
 * Streaming decode: ids pushed one at a time never print half a character, and everything
 * printed (plus the final flush) is exactly decode() of the same ids, which the SentencePiece
 * fixtures pin down.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTokenizer, type Tokenizer } from "../src/tokenizer/index.js";
import { rng, SEED } from "./helpers.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/tokenizer/${name}`, import.meta.url));
const readCases = <T>(name: string): T[] => JSON.parse(readFileSync(fixture(name), "utf8")).cases;

let llama: Tokenizer;
beforeAll(async () => {
  llama = await loadTokenizer(fixture("tokenizer.model"));
});

/** Every chunk push() returned, then the flush. */
function stream(ids: number[]): string[] {
  const decoder = llama.decoder();
  return [...ids.map((id) => decoder.push(id)), decoder.flush()];
}

const hasLoneSurrogate = (text: string) => /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);

describe("streaming decoder", () => {
  it("holds a character split over byte pieces until its last byte", () => {
    // 😀 is F0 9F 98 80: byte pieces <0xF0> <0x9F> <0x98> <0x80> (ids 243 162 155 131).
    expect(stream([243, 162, 155, 131])).toEqual(["", "", "", "😀", ""]);
    // After BOS, the first piece loses its dummy-prefix space; "什" waits for its last byte.
    const ids = llama.encode("图片里是什么");
    expect(ids).toContain(231); // "什" has no piece: it goes as three byte pieces
    expect(stream(ids).join("")).toBe("图片里是什么");
    expect(stream(ids).every((chunk) => !chunk.includes("\uFFFD"))).toBe(true);
  });

  it("prints bytes that can no longer complete a character as U+FFFD, as SentencePiece does", () => {
    // E4 BB is the start of a 3-byte character; a normal piece ends the byte run.
    expect(stream([231, 190, 15043])).toEqual(["", "", "\uFFFD\uFFFD Hello", ""]);
    // A byte that cannot continue the sequence ends it at once.
    expect(stream([231, 68])).toEqual(["", "\uFFFDA", ""]);
    // Still incomplete at the end: flush() gives it up.
    expect(stream([243, 162])).toEqual(["", "", "\uFFFD\uFFFD"]);
  });

  it("drops the dummy-prefix space once, after any BOS", () => {
    expect(stream([1, 15043, 3186])).toEqual(["", "Hello", " world", ""]);
    expect(stream([1, 29871, 15043])).toEqual(["", "", " Hello", ""]);
    expect(stream([13, 15043]).join("")).toBe("\n Hello");
  });

  it("agrees with decode() and never splits a character, on every fixture", () => {
    const texts = readCases<{ text: string; ids: number[] }>("sentencepiece-cases.json");
    const sequences = readCases<{ ids: number[] }>("decode-cases.json");
    for (const { ids } of [...texts, ...sequences]) {
      const chunks = stream(ids);
      expect(chunks.join(""), JSON.stringify(ids)).toBe(llama.decode(ids));
      for (const chunk of chunks) expect(hasLoneSurrogate(chunk), JSON.stringify(ids)).toBe(false);
    }
    for (const { text, ids } of texts) {
      if (text.includes("\uFFFD")) continue;
      for (const chunk of stream(ids)) expect(chunk.includes("\uFFFD"), JSON.stringify(text)).toBe(false);
    }
  });

  it(`agrees with decode() on random byte-heavy id sequences (seed ${SEED})`, () => {
    const random = rng(SEED);
    for (let n = 0; n < 300; n++) {
      const ids = Array.from({ length: 1 + Math.floor(random() * 20) }, () => {
        const r = random();
        if (r < 0.6) return 3 + Math.floor(random() * 256); // byte pieces
        if (r < 0.7) return Math.floor(random() * 3); // <unk>, <s>, </s>
        return 259 + Math.floor(random() * (32000 - 259));
      });
      expect(stream(ids).join(""), `seed ${SEED}: ${JSON.stringify(ids)}`).toBe(llama.decode(ids));
    }
  });
});

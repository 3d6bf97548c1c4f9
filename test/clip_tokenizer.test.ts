/**
 * CLIP's tokenizer against transformers' CLIPTokenizer (4.40.2, the slow one): the 62 texts of
 * fixtures/golden/clip-tokenizer/hf-clip-tokenizer.json with the full vocabulary, in both cleaning
 * variants (with and without ftfy), and clip-a's padded batch with its cut vocabulary.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import tokenize from "../src/cli/tokenize.js";
import { UsageError } from "../src/cli/command.js";
import { ClipTokenizer, TokenizerError, bytesToUnicode, cleanClipText, isClipTokenizerFolder, loadClipTokenizer, parseClipMerges, parseClipVocab, type ClipClean } from "../src/tokenizer/index.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { runCommand } from "./helpers.js";

const fixture = (path: string) => fileURLToPath(new URL(`./fixtures/${path}`, import.meta.url));
const FULL = fixture("golden/clip-tokenizer");
const CUT = fixture("golden/clip-a/model");
const LLAMA = fixture("tokenizer/tokenizer.model");

interface GoldenCase {
  text: string;
  ids: number[];
  tokens: string[];
  decoded_skip_special: string;
  ids_truncated_77?: number[];
}
const golden = JSON.parse(readFileSync(join(FULL, "hf-clip-tokenizer.json"), "utf8")) as { variants: Record<ClipClean, GoldenCase[]>; differs: number[] };

let full: ClipTokenizer;
beforeAll(async () => {
  full = await loadClipTokenizer(FULL);
});

describe("CLIP tokenizer, full vocabulary, against transformers", () => {
  it("reads the vocabulary and the special tokens", () => {
    expect([full.vocabSize, full.bosId, full.eosId, full.padId, full.contextLength, full.clean]).toEqual([49408, 49406, 49407, 49407, 77, "ftfy"]);
  });

  for (const clean of ["ftfy", "basic"] as const) {
    describe(`clean: ${clean}`, () => {
      golden.variants[clean].forEach((c, i) => {
        it(`text ${i}: ${JSON.stringify(c.text).slice(0, 60)}`, () => {
          expect(full.encode(c.text, { clean })).toEqual(c.ids);
          expect(["<|startoftext|>", ...full.tokenize(c.text, clean), "<|endoftext|>"]).toEqual(c.tokens);
          expect(full.decode(c.ids, { skipSpecial: true })).toBe(c.decoded_skip_special);
          expect(full.encode(c.text, { clean, truncate: 77 })).toEqual(c.ids_truncated_77 ?? c.ids);
        });
      });
    });
  }

  it("gives different ids for exactly the texts in `differs`", () => {
    const differs = golden.variants.ftfy.flatMap((c, i) => (JSON.stringify(full.encode(c.text, { clean: "ftfy" })) === JSON.stringify(full.encode(c.text, { clean: "basic" })) ? [] : [i]));
    expect(differs).toEqual(golden.differs);
  });

  it("truncates long texts to 77 ids ending with <|endoftext|>, and leaves the special tokens out on request", () => {
    const long = golden.variants.ftfy.find((c) => c.ids_truncated_77 !== undefined)!;
    const cut = full.encode(long.text, { truncate: true });
    expect(cut).toHaveLength(77);
    expect(cut.at(-1)).toBe(49407);
    expect(full.encode("a photo of a cat", { addSpecial: false })).toEqual([320, 1125, 539, 320, 2368]);
    expect(full.encode(long.text, { addSpecial: false, truncate: 10 })).toEqual(long.ids.slice(1, 11));
  });

  it("reads special tokens in the text, in any case once lowercased", () => {
    expect(full.encode("a <|ENDOFTEXT|>", { addSpecial: false })).toEqual([320, 49407]);
  });

  it("decodes special tokens as text when they are not skipped", () => {
    // transformers 4.40 spells special tokens inline, through the same byte decoding as the rest.
    expect(full.decode([49406, 320, 2368, 49407])).toBe("<|startoftext|>a cat <|endoftext|>");
    expect(full.decode(Int32Array.from([49406, 320, 2368, 49407]), { skipSpecial: true })).toBe("a cat");
    expect(() => full.decode([49408])).toThrow(TokenizerError);
  });

  it("is fast on long texts (each word is merged once)", () => {
    const text = golden.variants.ftfy.map((c) => c.text).join(" ").repeat(50);
    const start = performance.now();
    expect(full.encode(text).length).toBeGreaterThan(20_000);
    expect(performance.now() - start).toBeLessThan(5000);
  });

  it("maps all 256 bytes to distinct printable characters", () => {
    const table = bytesToUnicode();
    expect(new Set(table).size).toBe(256);
    expect([table[0x20], table[0x41], table[0x0a]]).toEqual(["Ġ", "A", "Ċ"]);
  });
});

describe("CLIP text cleaning", () => {
  // Texts for the ftfy fixes the golden texts do not reach (entities, mojibake, line breaks, ...), run through ftfy 6.3.1 itself.
  const { cases } = JSON.parse(readFileSync(join(FULL, "ftfy-cases.json"), "utf8")) as { cases: { text: string; clip: string }[] };
  cases.forEach((c, i) => {
    it(`cleans as ftfy.fix_text does, case ${i}: ${JSON.stringify(c.text).slice(0, 50)}`, () => {
      expect(cleanClipText(c.text, "ftfy")).toBe(c.clip);
    });
  });

  it("is ftfy by default, and basic on request", () => {
    expect(full.encode("fish &amp; chips")).toEqual(golden.variants.ftfy[44].ids);
    expect(cleanClipText("zero\u200bwidth ＡＢＣ 日本 &amp;", "basic")).toBe("zerowidth ａｂｃ 日 本 &amp;");
  });
});

describe("CLIP tokenizer, clip-a's cut vocabulary", () => {
  it("pads the batch with <|endoftext|> exactly as clip-a's inputs.safetensors holds it", async () => {
    const spec = JSON.parse(readFileSync(fixture("golden/clip-a/golden.json"), "utf8")) as { texts: { text: string; ids: number[]; length: number }[] };
    const tokenizer = await loadClipTokenizer(CUT);
    expect([tokenizer.vocabSize, tokenizer.bosId, tokenizer.eosId, tokenizer.padId]).toEqual([1514, 1512, 1513, 1513]);
    const batch = tokenizer.encodeBatch(spec.texts.map((t) => t.text));
    const inputs = await SafetensorsFile.open(fixture("golden/clip-a/inputs.safetensors"));
    try {
      const ids = await inputs.readIntegers("input_ids");
      const mask = await inputs.readIntegers("attention_mask");
      expect(ids.shape).toEqual([4, 16]);
      expect(batch.ids.flat()).toEqual(ids.data);
      expect(batch.attentionMask.flat()).toEqual(mask.data);
    } finally {
      await inputs.close();
    }
    expect(batch.lengths).toEqual(spec.texts.map((t) => t.length));
    spec.texts.forEach((t) => expect(tokenizer.encode(t.text, { clean: "basic" })).toEqual(t.ids));
    const padded = tokenizer.encodeBatch(["diagram"], { padding: "max_length" });
    expect(padded.ids[0]).toHaveLength(77);
    expect(padded.attentionMask[0].filter((m) => m === 1)).toHaveLength(6);
  });
});

describe("CLIP tokenizer files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "clip-tok-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const folderWith = async (name: string, files: Record<string, string>): Promise<string> => {
    const folder = join(dir, name);
    await rm(folder, { recursive: true, force: true });
    await mkdir(folder);
    for (const file of ["vocab.json", "merges.txt"]) await copyFile(join(CUT, file), join(folder, file));
    for (const [file, text] of Object.entries(files)) await writeFile(join(folder, file), text);
    return folder;
  };

  it("recognises CLIP folders, and not LLaMA ones", async () => {
    expect(await isClipTokenizerFolder(FULL)).toBe(true);
    expect(await isClipTokenizerFolder(CUT)).toBe(true);
    expect(await isClipTokenizerFolder(fixture("tokenizer"))).toBe(false);
    expect(await isClipTokenizerFolder(LLAMA)).toBe(false);
    expect(await isClipTokenizerFolder(await folderWith("gpt2", { "tokenizer_config.json": '{"tokenizer_class": "GPT2Tokenizer"}' }))).toBe(false);
  });

  it("takes special tokens written as objects, and treats model_max_length 1e30 as unset", async () => {
    const folder = await folderWith("config", {
      "tokenizer_config.json": JSON.stringify({ tokenizer_class: "CLIPTokenizerFast", model_max_length: 1e30, bos_token: { content: "<|startoftext|>" } }),
      "special_tokens_map.json": JSON.stringify({ eos_token: { content: "<|endoftext|>" }, pad_token: "<|endoftext|>" }),
    });
    const tokenizer = await loadClipTokenizer(folder);
    expect([tokenizer.bosId, tokenizer.eosId, tokenizer.padId, tokenizer.contextLength]).toEqual([1512, 1513, 1513, 77]);
  });

  it("names the file and the line or field of what is wrong", async () => {
    const vocab = (text: string) => () => parseClipVocab(text, "v/vocab.json");
    expect(vocab("[1, 2]")).toThrow(/v\/vocab\.json: expected a JSON object/);
    expect(vocab('{"a": 0, "b": "1"}')).toThrow(/v\/vocab\.json: "b": the id must be a non-negative integer, got "1"/);
    expect(vocab('{"a": 0, "b": 0}')).toThrow(/v\/vocab\.json: id 0 is given to both "a" and "b"/);
    expect(vocab('{"a": 0,')).toThrow(/v\/vocab\.json is truncated/);
    const map = new Map([["a", 0], ["b", 1], ["ab", 2]]);
    expect(parseClipMerges("#version: 0.2\na b\n", "m.txt", map)).toEqual([["a", "b"]]);
    expect(() => parseClipMerges("#version: 0.2\na b\nab\n", "m.txt", map)).toThrow(/m\.txt: line 3: expected two symbols separated by one space, got "ab"/);
    expect(() => parseClipMerges("#version: 0.2\nb a\n", "m.txt", map)).toThrow(/m\.txt: line 2: "ba" is not in the vocabulary/);
    expect(() => parseClipMerges("#version: 0.2\na c\n", "m.txt", map)).toThrow(/m\.txt: line 2: "c" is not in the vocabulary/);

    const noMerges = await folderWith("no-merges", {});
    await rm(join(noMerges, "merges.txt"));
    await expect(loadClipTokenizer(noMerges)).rejects.toThrow(/merges\.txt: missing/);
    const badVocab = await folderWith("bad-vocab", { "vocab.json": "{ not json" });
    await expect(loadClipTokenizer(badVocab)).rejects.toThrow(new RegExp(`${badVocab}/vocab\\.json: not valid JSON`));
    const badConfig = await folderWith("bad-config", { "tokenizer_config.json": '{"model_max_length": "long"}' });
    await expect(loadClipTokenizer(badConfig)).rejects.toThrow(/tokenizer_config\.json: model_max_length must be an integer/);
    const badToken = await folderWith("bad-token", { "special_tokens_map.json": '{"bos_token": "<s>"}' });
    await expect(loadClipTokenizer(badToken)).rejects.toThrow(/the bos token "<s>" is not in .*vocab\.json/);
  });

  it("refuses bad arguments", () => {
    expect(() => full.encode(42 as unknown as string)).toThrow(TokenizerError);
    expect(() => full.encode("a", { truncate: 1 })).toThrow(/truncate: expected an integer of at least 2/);
    expect(() => full.encodeBatch(["a"], { padding: "left" as "longest" })).toThrow(/padding/);
  });
});

describe("wgsl-vlm tokenize on a CLIP folder", () => {
  const run = (argv: string[]) => runCommand(tokenize, argv);

  it("prints the ids with <|startoftext|> and <|endoftext|>, or without them with --no-bos", async () => {
    expect(await run(["--tokenizer", FULL, "a photo of a cat"])).toEqual({ code: 0, stdout: "49406 320 1125 539 320 2368 49407\n", stderr: "" });
    expect((await run(["--tokenizer", FULL, "--no-bos", "--json", "a photo of a cat"])).stdout).toBe('{"ids":[320,1125,539,320,2368]}\n');
  });

  it("cleans the text as --clean says", async () => {
    const fish = golden.variants.basic[44];
    expect((await run(["--tokenizer", FULL, "--clean", "basic", "--json", fish.text])).stdout).toBe(`${JSON.stringify({ ids: fish.ids })}\n`);
    expect((await run(["--tokenizer", FULL, "--json", fish.text])).stdout).toBe(`${JSON.stringify({ ids: golden.variants.ftfy[44].ids })}\n`);
    await expect(run(["--tokenizer", FULL, "--clean", "nfkc", "x"])).rejects.toThrow(UsageError);
    await expect(run(["--tokenizer", LLAMA, "--clean", "ftfy", "x"])).rejects.toThrow(/--clean is for CLIP tokenizers only/);
  });
});

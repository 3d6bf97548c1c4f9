/**
 * The transformers side: a model folder with tokenizer_config.json (LlamaTokenizer, legacy on and
 * off, with LLaVA's <image>), and tokenizer.json (LlamaTokenizerFast) derived from tokenizer.model
 * the way transformers' LlamaConverter does, checked against transformers 4.40.2's ids
 * (hf-llama-tokenizer.json) and against SentencePiece on every fixture text.
 */
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  loadTokenizer,
  parseSentencePieceModel,
  parseTokenizerConfig,
  sentencePieceTokenizer,
  tokenizerFromJson,
  tokenizerJsonFromModel,
  type SentencePieceModel,
  type Tokenizer,
} from "../src/tokenizer/index.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/tokenizer/${name}`, import.meta.url));
const readJson = (name: string) => JSON.parse(readFileSync(fixture(name), "utf8"));

interface HfCase {
  text: string;
  ids: number[];
  decoded_skip_special: string;
}
const HF = readJson("hf-llama-tokenizer.json");
const LEGACY: HfCase[] = HF.variants["legacy=True"];
const NON_LEGACY: HfCase[] = HF.variants["legacy=False"];
const SPM_CASES: { text: string; ids: number[]; decoded: string }[] = readJson("sentencepiece-cases.json").cases;
/** Texts where tokenizer.json and SentencePiece must agree: those without an added token in them. */
const PLAIN_CASES = SPM_CASES.filter((c) => !/<unk>|<s>|<\/s>|<image>|<pad>/.test(c.text));

const CONFIG_TEXT = readFileSync(fixture("llava-1.5/tokenizer_config.json"), "utf8");
const configWith = (legacy: boolean) => JSON.stringify({ ...JSON.parse(CONFIG_TEXT), legacy });

let model: SentencePieceModel;
/** tokenizer.json derived from tokenizer.model with LLaVA's added tokens (legacy, the default). */
let derived: string;
const folders: string[] = [];
const addedTokens = () => parseTokenizerConfig(CONFIG_TEXT, "config").addedTokens;
/** A fresh copy of the derived tokenizer.json to edit. */
const derivedCopy = () => JSON.parse(derived) as { model: { merges: string[]; vocab: Record<string, number> }; added_tokens: unknown[] } & Record<string, unknown>;
beforeAll(() => {
  model = parseSentencePieceModel(readFileSync(fixture("tokenizer.model")), "tokenizer.model");
  derived = JSON.stringify(tokenizerJsonFromModel(model, { addedTokens: addedTokens() }));
});
afterAll(async () => {
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
});

/** A model folder holding tokenizer.model and the given files (name → text). */
async function modelFolder(files: Record<string, string>): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), "wgsl-vlm-tokenizer-"));
  folders.push(folder);
  await copyFile(fixture("tokenizer.model"), join(folder, "tokenizer.model"));
  for (const [name, text] of Object.entries(files)) await writeFile(join(folder, name), text);
  return folder;
}

function expectCases(tokenizer: Tokenizer, cases: HfCase[], skipDecode: string[] = []): void {
  for (const c of cases) {
    expect(tokenizer.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
    if (!skipDecode.includes(c.text)) expect(tokenizer.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded_skip_special);
  }
}

describe("tokenizer.model with tokenizer_config.json (transformers LlamaTokenizer)", () => {
  it("loads a LLaVA-1.5 folder: legacy=false, <image> 32000, <pad> 32001, special_tokens_map", async () => {
    const folder = await modelFolder({
      "tokenizer_config.json": CONFIG_TEXT,
      "special_tokens_map.json": readFileSync(fixture("llava-1.5/special_tokens_map.json"), "utf8"),
    });
    const tokenizer = await loadTokenizer(folder);
    expect(tokenizer.description).toMatch(/LlamaTokenizer, legacy=false/);
    expect([tokenizer.vocabSize, tokenizer.bosId, tokenizer.eosId, tokenizer.unkId, tokenizer.padId]).toEqual([32002, 1, 2, 0, 32001]);
    expect([tokenizer.idOf("<image>"), tokenizer.pieceOf(32000), tokenizer.isSpecial(32000)]).toEqual([32000, "<image>", true]);
    expectCases(tokenizer, NON_LEGACY);
  });

  it("matches transformers with legacy=true (a '▁' after every added token)", async () => {
    const tokenizer = await loadTokenizer(await modelFolder({ "tokenizer_config.json": configWith(true) }));
    // transformers' legacy decode strips the leading "▁" twice (once by hand, once in
    // SentencePiece) and so prints "Hello" for [<s>, ▁, ▁Hello]; we decode as SentencePiece does.
    expectCases(tokenizer, LEGACY, [" Hello"]);
    expect(tokenizer.decode(LEGACY.find((c) => c.text === " Hello")!.ids)).toBe(" Hello");
  });

  it("shows special tokens in decode only when asked", async () => {
    const tokenizer = await loadTokenizer(await modelFolder({ "tokenizer_config.json": CONFIG_TEXT }));
    const ids = tokenizer.encode("USER: <image>\nHi");
    expect(tokenizer.decode(ids)).toBe("USER: \nHi");
    expect(tokenizer.decode(ids, { skipSpecialTokens: false })).toBe("<s> USER: <image>\nHi");
  });

  it("lets lstrip/rstrip added tokens swallow the whitespace around them", () => {
    const json = JSON.parse(CONFIG_TEXT);
    json.added_tokens_decoder["32000"] = { content: "<image>", lstrip: true, rstrip: true, normalized: false, special: true };
    const tokenizer = sentencePieceTokenizer(model, parseTokenizerConfig(JSON.stringify(json), "config"));
    // "USER:" <image> "What": the space before and the newline after are gone (compare the
    // legacy=false case of hf-llama-tokenizer.json, which has ▁ (29871) and \n (13) around 32000).
    expect(tokenizer.encode("USER: <image>\nWhat")).toEqual([1, 3148, 1001, 29901, 32000, 5618]);
  });

  it("honours add_bos_token and add_eos_token", () => {
    const config = parseTokenizerConfig(JSON.stringify({ ...JSON.parse(CONFIG_TEXT), add_bos_token: false, add_eos_token: true }), "config");
    const tokenizer = tokenizerFromJson(derived, "tokenizer.json", config);
    expect(tokenizer.encode("Hello world")).toEqual([15043, 3186, 2]);
  });
});

describe("tokenizer.json (transformers LlamaTokenizerFast), derived from tokenizer.model", () => {
  it("writes what LlamaConverter writes", () => {
    const json = derivedCopy();
    expect(Object.keys(json.model.vocab).length).toBe(32000);
    expect(json.model.merges.length).toBe(61249);
    // Best score first: "▁t" is piece 260 (score -1); "▁▁" (score -1e9) and its kin come last.
    expect(json.model.merges.slice(0, 4)).toEqual(["▁ t", "e r", "i n", "▁ a"]);
    expect(json.model.merges.slice(-100).every((merge) => /^▁+ ▁+$/.test(merge))).toBe(true);
    expect(json.normalizer).toEqual({
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    });
    expect((json.added_tokens as { content: string }[]).map((t) => t.content)).toEqual(["<unk>", "<s>", "</s>", "<image>", "<pad>"]);
  });

  it("gives SentencePiece's ids by merge rank on every fixture text, and decodes the same", () => {
    const tokenizer = tokenizerFromJson(derived, "tokenizer.json");
    expect(PLAIN_CASES.length).toBeGreaterThan(550);
    for (const c of PLAIN_CASES) {
      expect(tokenizer.encode(c.text, { addBos: false }), JSON.stringify(c.text)).toEqual(c.ids);
      expect(tokenizer.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded);
    }
  });

  it("is preferred in a folder, and matches transformers with legacy=true (Prepend normalizer)", async () => {
    const folder = await modelFolder({
      "tokenizer.json": derived,
      "tokenizer_config.json": CONFIG_TEXT,
    });
    const tokenizer = await loadTokenizer(folder);
    expect(tokenizer.description).toMatch(/tokenizer\.json \(Hugging Face BPE\)/);
    expect(tokenizer.vocabSize).toBe(32002);
    expectCases(tokenizer, LEGACY, [" Hello"]);
  });

  it("matches transformers with legacy=false (Metaspace pre-tokenizer, prepend_scheme first)", () => {
    const tokenizer = tokenizerFromJson(JSON.stringify(tokenizerJsonFromModel(model, { legacy: false, addedTokens: addedTokens() })), "tokenizer.json");
    const differs = " Hello";
    expectCases(tokenizer, NON_LEGACY.filter((c) => c.text !== differs));
    // tokenizers' Metaspace does not prepend "▁" to text that already starts with one (the space),
    // so the fast tokenizer gives [<s>, ▁Hello] where the slow one gives [<s>, ▁, ▁Hello].
    expect(tokenizer.encode(differs)).toEqual([1, 15043]);
  });

  it("matches normalized added tokens in the normalized text, and prints non-special ones", () => {
    const json = derivedCopy();
    json.added_tokens = json.added_tokens.slice(0, 3); // <unk> <s> </s>
    json.added_tokens.push({ id: 32000, content: "hello world", single_word: false, lstrip: false, rstrip: false, normalized: true, special: false });
    const tokenizer = tokenizerFromJson(JSON.stringify(json), "tokenizer.json");
    // The token's content is normalized too ("▁hello▁world"), as tokenizers does.
    expect(tokenizer.encode("say hello world")).toEqual([1, 1827, 32000]);
    expect(tokenizer.decode([1, 1827, 32000, 1827])).toBe("sayhello world say");
  });

  it("reads merges written as pairs, and Metaspace with split on", () => {
    const json = derivedCopy();
    json.model.merges = json.model.merges.map((merge) => merge.split(" ")) as unknown as string[];
    json.normalizer = null;
    json.pre_tokenizer = { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true };
    const tokenizer = tokenizerFromJson(JSON.stringify(json), "tokenizer.json");
    // Splitting at each "▁" changes nothing for LLaMA, whose pieces only start with "▁" runs,
    // except inside runs of spaces, which the split cuts into single "▁".
    const singleSpaced = PLAIN_CASES.filter((c) => !/ {2}|▁/.test(c.text) && !c.text.startsWith(" "));
    expect(singleSpaced.length).toBeGreaterThan(100);
    for (const c of singleSpaced) expect(tokenizer.encode(c.text, { addBos: false }), JSON.stringify(c.text)).toEqual(c.ids);
    expect(tokenizer.encode("a  b", { addBos: false }).map((id) => tokenizer.pieceOf(id))).toEqual(["▁a", "▁", "▁b"]);
  });
});

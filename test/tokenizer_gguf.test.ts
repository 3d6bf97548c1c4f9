/**
 * SentencePiece vocabularies in GGUF metadata (src/tokenizer/gguf_vocab.ts): LLaMA-2's
 * tokenizer.model written as llama.cpp's converter writes it, through a real GGUF file (encodeGguf,
 * then GgufFile), and read back into a tokenizer that encodes as llama.cpp does. Where llama.cpp
 * and SentencePiece agree (text without "<s>", "</s>", "<unk>") its ids are SentencePiece's, from
 * the fixtures of tokenizer.test.ts; with LLaVA's added tokens they are transformers' legacy=true
 * ids (hf-llama-tokenizer.json), which is what llama.cpp's space-after-special rule gives.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GGUF_TOKENIZER_KEYS as K,
  ggufTokenizer,
  ggufTokenizerMetadata,
  parseSentencePieceModel,
  parseTokenizerConfig,
  sentencePieceModelFromGguf,
  sentencePieceTokenizer,
  TokenizerError,
  type AddedToken,
  type GgufMetadataValue,
  type GgufTokenizerValue,
  type SentencePieceModel,
  type Tokenizer,
} from "../src/tokenizer/index.js";
import { GgufFile } from "../src/weights/gguf.js";
import type { GgufValue } from "../src/weights/gguf_types.js";
import { encodeGguf } from "../src/weights/gguf_writer.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/tokenizer/${name}`, import.meta.url));
const readCases = <T>(name: string): T[] => JSON.parse(readFileSync(fixture(name), "utf8")).cases;

interface EncodeCase {
  text: string;
  ids: number[];
  decoded: string;
}
interface HfCase {
  text: string;
  ids: number[];
}

/** The texts llama.cpp reads special tokens out of (parse_special): SentencePiece keeps them as text. */
const hasSpecialText = (text: string) => ["<s>", "</s>", "<unk>"].some((s) => text.includes(s));

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-gguf-vocab-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Writes the metadata into a GGUF file (no tensors) and reads it back as GgufFile does. */
async function readThroughFile(name: string, metadata: Record<string, GgufTokenizerValue>): Promise<{ path: string; metadata: Map<string, GgufValue> }> {
  const path = join(dir, name);
  await writeFile(path, encodeGguf({ metadata: { "general.architecture": { type: "STRING", value: "llama" }, ...metadata }, tensors: {} }));
  const file = await GgufFile.open(path);
  await file.close();
  return { path, metadata: file.metadata };
}

/** LLaMA's token 30143 is a byte order mark alone. */
const BOM_TOKEN = 30143;

let model: SentencePieceModel;
let sentencePiece: Tokenizer;
let written: Record<string, GgufTokenizerValue>;
let fromFile: { path: string; metadata: Map<string, GgufValue> };
let gguf: Tokenizer;

beforeAll(async () => {
  model = parseSentencePieceModel(readFileSync(fixture("tokenizer.model")), "tokenizer.model");
  sentencePiece = sentencePieceTokenizer(model);
  written = ggufTokenizerMetadata(model, { addBos: true, addEos: false });
  fromFile = await readThroughFile("llama2.gguf", written);
  gguf = ggufTokenizer(fromFile.metadata, fromFile.path);
});

const arrayOf = (value: GgufTokenizerValue | GgufMetadataValue) => (value.value as { values: unknown[] }).values;

describe("writing a tokenizer.model as llama.cpp's converter does", () => {
  it("writes its keys, in its order, with its types", () => {
    expect(Object.keys(written)).toEqual([K.model, K.pre, K.tokens, K.scores, K.tokenType, K.bosId, K.eosId, K.unkId, K.addBos, K.addEos]);
    expect(written[K.model]).toEqual({ type: "STRING", value: "llama" });
    expect(written[K.pre]).toEqual({ type: "STRING", value: "default" });
    expect([written[K.tokens].type, (written[K.tokens].value as { itemType: string }).itemType]).toEqual(["ARRAY", "STRING"]);
    expect((written[K.scores].value as { itemType: string }).itemType).toBe("FLOAT32");
    expect((written[K.tokenType].value as { itemType: string }).itemType).toBe("INT32");
    expect([written[K.bosId], written[K.eosId], written[K.unkId]]).toEqual([1, 2, 0].map((value) => ({ type: "UINT32", value })));
    expect([written[K.addBos], written[K.addEos]]).toEqual([true, false].map((value) => ({ type: "BOOL", value })));
    const [tokens, scores, types] = [K.tokens, K.scores, K.tokenType].map((key) => arrayOf(written[key]));
    expect(tokens.length).toBe(32000);
    expect(tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
    expect(types.slice(0, 4)).toEqual([2, 3, 3, 6]); // UNKNOWN, CONTROL, CONTROL, BYTE
    expect([tokens[15043], scores[15043], types[15043]]).toEqual(["▁Hello", model.pieces[15043].score, 1]);
    expect(scores.slice(0, 3)).toEqual([0, 0, 0]);
  });

  it("reads a token that is a byte order mark back from the GGUF file", async () => {
    const file = await readThroughFile("bom.gguf", written);
    expect(arrayOf(file.metadata.get(K.tokens)!)[BOM_TOKEN]).toBe("\uFEFF");
  });

  it("reads back from the GGUF file into the same SentencePiece model", () => {
    const back = sentencePieceModelFromGguf(fromFile.metadata, fromFile.path);
    expect(JSON.stringify(back.pieces) === JSON.stringify(model.pieces)).toBe(true); // scores survive FLOAT32 exactly
    const flags = (m: SentencePieceModel) => [m.byteFallback, m.unkPiece, m.bosPiece, m.eosPiece, m.addDummyPrefix, m.removeExtraWhitespaces, m.escapeWhitespaces];
    expect(flags(back)).toEqual(flags(model));
    expect([back.bosId, back.eosId, back.unkId, back.padId, back.addBos, back.addEos, back.chatTemplate]).toEqual([1, 2, 0, undefined, true, false, undefined]);
    // It is a SentencePieceModel: plain SentencePiece over it gives SentencePiece's ids.
    expect(sentencePieceTokenizer(back).encode("<s> Hello")).toEqual(sentencePiece.encode("<s> Hello"));
  });

  it("writes tokenizer_config.json's added tokens as the converter does (LLaVA-1.5: <image> 32000, <pad> 32001)", async () => {
    const config = parseTokenizerConfig(readFileSync(fixture("llava-1.5/tokenizer_config.json"), "utf8"), "tokenizer_config.json");
    const extra: AddedToken[] = [
      { id: 32002, content: "▁wgsl▁", special: false, lstrip: false, rstrip: false, normalized: true },
      { id: 32003, content: "<|im_end|>", special: false, lstrip: false, rstrip: false, normalized: true },
    ];
    const metadata = ggufTokenizerMetadata(model, { vocabSize: 32064, addedTokens: [...config.addedTokens, ...extra], addBos: true, addEos: false, chatTemplate: "{{ x }}" });
    const [tokens, scores, types] = [K.tokens, K.scores, K.tokenType].map((key) => arrayOf(metadata[key]));
    const at = (id: number) => [tokens[id], scores[id], types[id]];
    expect(tokens.length).toBe(32064);
    expect(at(32000)).toEqual(["<image>", -1000, 3]); // special: CONTROL, score -1000
    expect(at(32001)).toEqual(["<pad>", -1000, 3]);
    expect(at(32002)).toEqual([" wgsl ", -1000, 4]); // not special: USER_DEFINED, "▁" written as spaces
    expect(at(32003)).toEqual(["<|im_end|>", -1000, 3]); // not marked special, but looks it
    expect(at(32004)).toEqual(["[PAD32004]", -10000, 5]); // padding to config.json's vocab_size: UNUSED
    // The added_tokens_decoder lists <unk>, <s>, </s> as special too: they become CONTROL, -1000.
    expect([0, 1, 2].map(at)).toEqual([
      ["<unk>", -1000, 3],
      ["<s>", -1000, 3],
      ["</s>", -1000, 3],
    ]);
    expect(metadata[K.padId]).toEqual({ type: "UINT32", value: 32001 });
    expect(metadata[K.chatTemplate]).toEqual({ type: "STRING", value: "{{ x }}" });

    const file = await readThroughFile("llava.gguf", metadata);
    const tokenizer = ggufTokenizer(file.metadata, file.path);
    expect([tokenizer.vocabSize, tokenizer.bosId, tokenizer.eosId, tokenizer.unkId, tokenizer.padId]).toEqual([32064, 1, 2, 0, 32001]);
    expect(sentencePieceModelFromGguf(file.metadata, file.path).chatTemplate).toBe("{{ x }}");
    // llama.cpp puts "▁" after every special token: transformers' legacy=true ids, every case.
    const variants = JSON.parse(readFileSync(fixture("hf-llama-tokenizer.json"), "utf8")).variants as Record<string, HfCase[]>;
    for (const c of variants["legacy=True"]) expect(tokenizer.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
    // ... not llava-hf's legacy=false ones, which have none after <image>.
    const first = variants["legacy=False"][0];
    expect(tokenizer.encode(first.text)).toEqual([...first.ids.slice(0, 6), 29871, ...first.ids.slice(6)]);
    expect(tokenizer.decode(tokenizer.encode("USER: <image>\nHi"))).toBe("USER:  \nHi");
    expect(tokenizer.decode(tokenizer.encode("USER: <image>\nHi"), { skipSpecialTokens: false })).toBe("<s> USER: <image> \nHi");
    // A USER_DEFINED token is cut out of the text and prints verbatim; UNUSED padding prints
    // nothing. (The text after it got its "▁" too, so the round trip has one space more.)
    expect(tokenizer.encode("use wgsl now", { addBos: false })).toEqual([671, 32002, 1286]);
    expect(tokenizer.decode([671, 32002, 1286, 32010])).toBe("use wgsl  now");
  });

  it("follows the model's whitespace settings, and keeps SentencePiece's user-defined pieces only as NORMAL", () => {
    const unused = parseSentencePieceModel(readFileSync(fixture("tiny-bytes-unused.model")), "tiny-bytes-unused.model");
    const noPrefix = ggufTokenizerMetadata(unused);
    expect(noPrefix[K.addSpacePrefix]).toEqual({ type: "BOOL", value: false }); // else llama.cpp would add a space
    const tokenizer = ggufTokenizer(noPrefix, "tiny-bytes-unused.gguf");
    // "ll" is UNUSED: SentencePiece splits it back into "l", "l"; llama.cpp keeps it.
    expect(tokenizer.encode("Hello", { addBos: false }).map((id) => tokenizer.pieceOf(id))).toEqual(["<0x48>", "e", "ll", "o"]);

    const userDefined = parseSentencePieceModel(readFileSync(fixture("tiny-user-defined.model")), "tiny-user-defined.model");
    const metadata = ggufTokenizerMetadata(userDefined);
    expect(metadata[K.removeExtraWhitespaces]).toEqual({ type: "BOOL", value: true });
    const sep = userDefined.pieces.findIndex((p) => p.piece === "<sep>");
    expect([userDefined.pieces[sep].type, arrayOf(metadata[K.tokenType])[sep]]).toEqual(["user-defined", 1]);
    // No byte fallback: llama.cpp has no <unk> to fall back on.
    expect(() => ggufTokenizer(metadata, "tiny.gguf").encode("a\nb")).toThrow(/tiny\.gguf: cannot encode "\\n": the vocabulary has no token for it and no <0x0A> byte token/);
  });

  it("refuses options the converter would silently drop, and vocabularies llama.cpp refuses", () => {
    const token = (id: number, content: string): AddedToken => ({ id, content, special: true, lstrip: false, rstrip: false, normalized: false });
    expect(() => ggufTokenizerMetadata(model, { vocabSize: 31999 })).toThrow(/vocabSize 31999 is smaller than the 32000 pieces/);
    expect(() => ggufTokenizerMetadata(model, { vocabSize: 32000, addedTokens: [token(32000, "<image>")] })).toThrow(/'<image>' has id 32000, past vocabSize 32000/);
    expect(() => ggufTokenizerMetadata(model, { addedTokens: [token(32000, "<s>")] })).toThrow(/token '<s>' would be both id 1 and id 32000/);
    expect(() => ggufTokenizerMetadata(model, { bosId: 40000 })).toThrow(/bosId 40000 is not an id of the 32000 tokens/);
    expect(Object.keys(ggufTokenizerMetadata(model, { bosId: null, unkId: null }))).not.toContain(K.bosId);
  });
});

describe("encoding as llama.cpp does", () => {
  it("gives SentencePiece's ids on the shared expected encodings, special-token text aside", () => {
    const cases = readCases<EncodeCase>("expected-encodings.json");
    for (const c of cases.filter((c) => !hasSpecialText(c.text))) {
      expect(gguf.encode(c.text, { addBos: false }), JSON.stringify(c.text)).toEqual(c.ids);
      expect(gguf.decode(c.ids)).toBe(c.decoded);
    }
    // With parse_special, "<s>" and "</s>" are the control tokens, and the text after each gets a "▁".
    expect(gguf.encode("<s> not special in text </s>", { addBos: false })).toEqual([1, 29871, 451, 4266, 297, 1426, 29871, 2]);
  });

  it("agrees with SentencePiece id for id on the 600 tricky texts, except where it reads special tokens", () => {
    const cases = readCases<EncodeCase>("sentencepiece-cases.json");
    const special = cases.filter((c) => hasSpecialText(c.text));
    expect(special.length).toBe(24);
    for (const c of cases) {
      const ids = gguf.encode(c.text, { addBos: false });
      if (hasSpecialText(c.text)) expect(ids, JSON.stringify(c.text)).not.toEqual(c.ids);
      else expect(ids, JSON.stringify(c.text)).toEqual(c.ids);
    }
    // Without parse_special llama.cpp leaves control tokens to the merges, which never make them here.
    const plain = ggufTokenizer(fromFile.metadata, fromFile.path, { parseSpecial: false });
    for (const c of special) expect(plain.encode(c.text, { addBos: false }), JSON.stringify(c.text)).toEqual(c.ids);
  });

  it("decodes like SentencePiece, and round trips", () => {
    for (const c of readCases<EncodeCase>("sentencepiece-cases.json")) {
      expect(gguf.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded);
      if (!hasSpecialText(c.text)) expect(gguf.decode(gguf.encode(c.text)), JSON.stringify(c.text)).toBe(c.decoded);
    }
    for (const c of readCases<{ ids: number[]; text: string }>("decode-cases.json")) expect(gguf.decode(c.ids), JSON.stringify(c.ids)).toBe(c.text);
    const text = "The image shows a llama 🦙 standing in grass.\n\tDone.";
    expect(gguf.decode(gguf.encode(text))).toBe(text);
  });

  it("adds BOS and EOS as the file says, with llama.cpp's defaults", () => {
    expect([gguf.vocabSize, gguf.bosId, gguf.eosId, gguf.unkId, gguf.padId, gguf.addBos, gguf.addEos]).toEqual([32000, 1, 2, 0, undefined, true, false]);
    expect(gguf.encode("Hello world")).toEqual([1, 15043, 3186]);
    expect(gguf.encode("Hello world", { addBos: false, addEos: true })).toEqual([15043, 3186, 2]);
    expect(gguf.encode("")).toEqual([1]);
    expect(gguf.encode("", { addBos: false })).toEqual([]);
    expect(gguf.isSpecial(1) && gguf.isSpecial(2) && !gguf.isSpecial(15043)).toBe(true);

    const flipped = ggufTokenizer(edit({ [K.addBos]: bool(false), [K.addEos]: bool(true) }), "flipped.gguf");
    expect(flipped.encode("Hello world")).toEqual([15043, 3186, 2]);
    // No id keys at all: BOS 1, EOS 2, UNK 0, as llama.cpp assumes for "llama".
    const bare = ggufTokenizer(edit({ [K.bosId]: undefined, [K.eosId]: undefined, [K.unkId]: undefined, [K.addBos]: undefined, [K.addEos]: undefined }), "bare.gguf");
    expect([bare.bosId, bare.eosId, bare.unkId, bare.addBos, bare.addEos]).toEqual([1, 2, 0, true, false]);
  });

  it("honours a BOS id whose token is not CONTROL, as llama.cpp does", () => {
    const tokenizer = ggufTokenizer(edit({ [K.bosId]: uint(15043) }), "odd-bos.gguf");
    expect(tokenizer.encode("world")).toEqual([15043, 3186]);
    expect(tokenizer.isSpecial(15043)).toBe(false);
    expect(tokenizer.decode([15043, 3186])).toBe("Hello world");
  });
});

// --- validation ---------------------------------------------------------------------------

const uint = (value: number): GgufMetadataValue => ({ type: "UINT32", value });
const bool = (value: boolean): GgufMetadataValue => ({ type: "BOOL", value });
const str = (value: string): GgufMetadataValue => ({ type: "STRING", value });
const array = (itemType: string, values: unknown[]): GgufMetadataValue => ({ type: "ARRAY", value: { itemType, values } });

/** The written LLaMA metadata with some keys replaced (undefined: removed). */
function edit(changes: Record<string, GgufMetadataValue | undefined>): Record<string, GgufMetadataValue> {
  const out: Record<string, GgufMetadataValue> = { ...written };
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete out[key];
    else out[key] = value;
  }
  return out;
}

/** The written LLaMA metadata with entries of one array changed. */
function editArray(key: string, change: (values: unknown[]) => void): Record<string, GgufMetadataValue> {
  const value = written[key].value as { itemType: string; values: unknown[] };
  const values = [...value.values];
  change(values);
  return edit({ [key]: array(value.itemType, values) });
}

function refuses(metadata: Record<string, GgufMetadataValue>, message: RegExp): void {
  let error: unknown;
  try {
    ggufTokenizer(metadata, "bad.gguf");
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(TokenizerError);
  expect((error as Error).message).toMatch(/^bad\.gguf: /);
  expect((error as Error).message).toMatch(message);
}

describe("checking the metadata, naming the file and the key", () => {
  it("accepts only SentencePiece ('llama') vocabularies, and says what the file has", () => {
    refuses(edit({ [K.model]: undefined }), /no tokenizer\.ggml\.model/);
    refuses(edit({ [K.model]: str("gpt2") }), /tokenizer\.ggml\.model is "gpt2" \(GPT-2-style byte-level BPE with merges\); only SentencePiece \("llama"\) vocabularies are supported/);
    refuses(edit({ [K.model]: str("bert") }), /tokenizer\.ggml\.model is "bert" \(BERT WordPiece\); only SentencePiece \("llama"\)/);
    refuses(edit({ [K.model]: str("mystery") }), /tokenizer\.ggml\.model is "mystery"; only SentencePiece/);
    refuses(edit({ [K.model]: uint(1) }), /tokenizer\.ggml\.model must be a STRING \(as llama\.cpp reads it\), got UINT32/);
  });

  it("needs the tokens, scores and types as arrays of the right item type and length", () => {
    refuses(edit({ [K.tokens]: undefined }), /no tokenizer\.ggml\.tokens \(an ARRAY of STRING\)/);
    refuses(edit({ [K.tokens]: array("INT32", [1, 2, 3]) }), /tokenizer\.ggml\.tokens must be an ARRAY of STRING, got an ARRAY of INT32/);
    refuses(edit({ [K.tokens]: str("<unk>") }), /tokenizer\.ggml\.tokens must be an ARRAY of STRING, got STRING/);
    refuses(edit({ [K.scores]: undefined }), /no tokenizer\.ggml\.scores/);
    refuses(edit({ [K.scores]: array("FLOAT64", arrayOf(written[K.scores])) }), /tokenizer\.ggml\.scores must be an ARRAY of FLOAT32 or INT32, got an ARRAY of FLOAT64/);
    refuses(edit({ [K.tokenType]: array("UINT32", arrayOf(written[K.tokenType])) }), /tokenizer\.ggml\.token_type must be an ARRAY of INT32, got an ARRAY of UINT32/);
    refuses(editArray(K.tokenType, (v) => (v[7] = "1")), /tokenizer\.ggml\.token_type\[7\] is "1", not a number/);
    refuses(editArray(K.scores, (v) => v.pop()), /tokenizer\.ggml\.scores has 31999 entries but tokenizer\.ggml\.tokens has 32000/);
    refuses(editArray(K.tokenType, (v) => v.push(1)), /tokenizer\.ggml\.token_type has 32001 entries but tokenizer\.ggml\.tokens has 32000/);
    refuses(edit({ [K.tokens]: array("STRING", []), [K.scores]: array("FLOAT32", []), [K.tokenType]: array("INT32", []) }), /tokenizer\.ggml\.tokens is empty/);
  });

  it("refuses unknown token types, empty and repeated tokens, half a set of byte tokens", () => {
    refuses(editArray(K.tokenType, (v) => (v[500] = 7)), /tokenizer\.ggml\.token_type\[500\] \(token '.+'\) is 7, not a token type/);
    refuses(editArray(K.tokenType, (v) => (v[500] = 0)), /tokenizer\.ggml\.token_type\[500\] \(token '.+'\) is 0, not a token type/);
    refuses(editArray(K.tokens, (v) => (v[600] = "")), /tokenizer\.ggml\.tokens\[600\] is empty/);
    refuses(editArray(K.tokens, (v) => (v[600] = "▁Hello")), /tokenizer\.ggml\.tokens: '▁Hello' is both token 600 and token 15043/);
    refuses(editArray(K.tokenType, (v) => (v[3 + 0x41] = 1)), /tokenizer\.ggml\.token_type: 255 of the 256 <0xNN> BYTE tokens are present/);
    refuses(editArray(K.tokenType, (v) => (v[15043] = 6)), /tokenizer\.ggml\.tokens\[15043\] '▁Hello' is typed BYTE in tokenizer\.ggml\.token_type but is not of the form <0xNN>/);
    refuses(editArray(K.tokenType, (v) => (v[1] = 2)), /tokenizer\.ggml\.token_type: 2 tokens are typed UNKNOWN/);
  });

  it("checks the special ids, flags and chat template: type, and range", () => {
    refuses(edit({ [K.bosId]: uint(32000) }), /tokenizer\.ggml\.bos_token_id is 32000, past the 32000 tokens of tokenizer\.ggml\.tokens/);
    refuses(edit({ [K.padId]: uint(99999) }), /tokenizer\.ggml\.padding_token_id is 99999, past the 32000 tokens/);
    refuses(edit({ [K.eosId]: { type: "INT32", value: 2 } }), /tokenizer\.ggml\.eos_token_id must be a UINT32 \(as llama\.cpp reads it\), got INT32/);
    refuses(edit({ [K.unkId]: { type: "UINT32", value: -1 } }), /tokenizer\.ggml\.unknown_token_id: -1 is not a UINT32 value/);
    refuses(edit({ [K.addBos]: { type: "UINT8", value: 1 } }), /tokenizer\.ggml\.add_bos_token must be a BOOL \(as llama\.cpp reads it\), got UINT8/);
    refuses(edit({ [K.addSpacePrefix]: str("yes") }), /tokenizer\.ggml\.add_space_prefix must be a BOOL/);
    refuses(edit({ [K.chatTemplate]: array("STRING", ["{{ x }}"]) }), /tokenizer\.chat_template must be a STRING \(as llama\.cpp reads it\), got an ARRAY of STRING/);
  });

  it("refuses to add a BOS the vocabulary does not have (llama.cpp's check_add_special_token)", () => {
    const one = { [K.model]: str("llama"), [K.tokens]: array("STRING", ["<unk>"]), [K.scores]: array("FLOAT32", [0]), [K.tokenType]: array("INT32", [2]) };
    refuses(one, /tokenizer\.ggml\.add_bos_token is true, but tokenizer\.ggml\.bos_token_id is not set/);
    const tokenizer = ggufTokenizer({ ...one, [K.addBos]: bool(false) }, "one.gguf");
    expect([tokenizer.bosId, tokenizer.eosId, tokenizer.unkId, tokenizer.encode("")]).toEqual([undefined, undefined, 0, []]);
  });
});

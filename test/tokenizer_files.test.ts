/**
 * Reading tokenizer files: hand-built SentencePiece protobufs (to pin the parser and the BPE tie
 * rule on models small enough to reason about), and every way a file can be wrong, each of which
 * must be a clear TokenizerError naming the file.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  loadTokenizer,
  parseSentencePieceModel,
  parseTokenizerConfig,
  sentencePieceTokenizer,
  tokenizerFromJson,
  TokenizerError,
} from "../src/tokenizer/index.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/tokenizer/${name}`, import.meta.url));

// A small protobuf writer, the mirror of the reader under test.
function varint(value: number): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(value)); // negative int32s are written as 64-bit two's complement
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v) byte |= 0x80;
    out.push(byte);
  } while (v);
  return out;
}
const key = (field: number, wireType: number) => varint(field * 8 + wireType);
const varintField = (field: number, value: number) => [...key(field, 0), ...varint(value)];
const bytesField = (field: number, data: number[]) => [...key(field, 2), ...varint(data.length), ...data];
const stringField = (field: number, text: string) => bytesField(field, [...new TextEncoder().encode(text)]);
function floatField(field: number, value: number): number[] {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setFloat32(0, value, true);
  return [...key(field, 5), ...bytes];
}

const NORMAL = 1;
const UNKNOWN = 2;
const CONTROL = 3;
const USER_DEFINED = 4;
const BYTE = 6;
const piece = (text: string, score: number, type = NORMAL) => bytesField(1, [...stringField(1, text), ...floatField(2, score), ...varintField(3, type)]);
const trainerSpec = (...fields: number[][]) => bytesField(2, fields.flat());
const normalizerSpec = (...fields: number[][]) => bytesField(3, fields.flat());
const BPE = varintField(3, 2);
const model = (...parts: number[][]) => new Uint8Array(parts.flat());

/** <unk> <s> </s> then the given pieces; BPE, no dummy prefix, whitespace kept. */
function tinyModel(pieces: number[][], ...extra: number[][]): Uint8Array {
  return model(
    piece("<unk>", 0, UNKNOWN),
    piece("<s>", 0, CONTROL),
    piece("</s>", 0, CONTROL),
    ...pieces,
    trainerSpec(BPE, varintField(43, -1)),
    normalizerSpec(stringField(1, "identity"), varintField(3, 0), varintField(4, 0)),
    ...extra,
  );
}

function expectTokenizerError(run: () => unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TokenizerError);
  expect((thrown as Error).message).toMatch(message);
}

const folders: string[] = [];
afterAll(async () => {
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
});
async function folderWith(files: Record<string, string | Uint8Array>): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), "wgsl-vlm-tokenizer-"));
  folders.push(folder);
  for (const [name, data] of Object.entries(files)) await writeFile(join(folder, name), data);
  return folder;
}

describe("hand-built SentencePiece models", () => {
  it("merges the best-scored pair first and the leftmost pair on ties", () => {
    const pieces = [piece("a", -10), piece("b", -11), piece("c", -12), piece("ab", -1), piece("bc", -1), piece("abc", -5), piece("cab", -0.5)];
    const tokenizer = sentencePieceTokenizer(parseSentencePieceModel(tinyModel(pieces), "tiny"));
    const pieceList = (text: string) => tokenizer.encode(text, { addBos: false }).map((id) => tokenizer.pieceOf(id));
    // "ab" and "bc" tie at -1: the leftmost wins, then "ab"+"c" makes "abc".
    expect(pieceList("abc")).toEqual(["abc"]);
    // In "cabc", "ab" (leftmost of the two ties) first; then "c"+"ab" = "cab" (-0.5) beats "ab"+"c".
    expect(pieceList("cabc")).toEqual(["cab", "c"]);
    // "d" is no piece and there is no byte fallback: it is <unk>, and a run of them is one <unk>.
    expect(tokenizer.encode("abdd", { addBos: false })).toEqual([6, 0]);
  });

  it("skips unknown fields of every wire type, ten-byte negative varints included", () => {
    const extra = [...varintField(99, 7), ...key(100, 1), 1, 2, 3, 4, 5, 6, 7, 8, ...key(101, 5), 1, 2, 3, 4, ...stringField(102, "ignored")];
    const bytes = tinyModel([piece("a", -1), bytesField(1, [...stringField(1, "b"), ...floatField(2, -2), ...varintField(50, 1)])], extra);
    const parsed = parseSentencePieceModel(bytes, "tiny");
    expect(parsed.pieces.map((p) => [p.piece, p.score, p.type])).toEqual([
      ["<unk>", 0, "unknown"],
      ["<s>", 0, "control"],
      ["</s>", 0, "control"],
      ["a", -1, "normal"],
      ["b", -2, "normal"], // no type field: NORMAL by default
    ]);
    expect([parsed.addDummyPrefix, parsed.removeExtraWhitespaces, parsed.escapeWhitespaces, parsed.byteFallback]).toEqual([false, false, true, false]);
  });

  it("keeps user-defined symbols whole", () => {
    const tokenizer = sentencePieceTokenizer(parseSentencePieceModel(tinyModel([piece("a", -1), piece("b", -2), piece("ab", -3), piece("<b>", 0, USER_DEFINED)]), "tiny"));
    expect(tokenizer.encode("a<b>b", { addBos: false }).map((id) => tokenizer.pieceOf(id))).toEqual(["a", "<b>", "b"]);
  });

  it("reads LLaMA's own settings", () => {
    const parsed = parseSentencePieceModel(readFileSync(fixture("tokenizer.model")), "tokenizer.model");
    expect([parsed.addDummyPrefix, parsed.removeExtraWhitespaces, parsed.escapeWhitespaces, parsed.byteFallback]).toEqual([true, false, true, true]);
    expect(parsed.pieces.filter((p) => p.type === "byte").length).toBe(256);
  });
});

describe("bad tokenizer.model files", () => {
  const good = readFileSync(fixture("tokenizer.model"));

  it("says a file cut short anywhere is truncated, and where it ends", () => {
    // The file is 32000 pieces, then trainer_spec (key at byte 499437), then normalizer_spec (499703).
    const firstPieceEnd = 2 + good[1];
    const cuts: [number, RegExp][] = [
      [1, /cut\.model is truncated: it ends at byte 1, inside a varint at byte 1$/],
      [2, /cut\.model is truncated: it ends at byte 2, inside pieces\[0\] of 14 bytes at byte 2$/],
      [1000, /cut\.model is truncated: it ends at byte 1000, inside pieces\[59\] of 15 bytes at byte 999$/],
      // Between two fields the protobuf parses: only what is missing tells.
      [firstPieceEnd, /cut\.model is truncated, or not a whole SentencePiece model: it ends at byte 16, after 1 piece, with no trainer_spec$/],
      [499437, /it ends at byte 499437, after 32000 pieces, with no trainer_spec$/],
      [499440, /cut\.model is truncated: it ends at byte 499440, inside trainer_spec of 263 bytes at byte 499440$/],
      [499703, /it ends at byte 499703, after 32000 pieces, with no normalizer_spec$/],
      [good.length - 1, /cut\.model is truncated: it ends at byte 499722, inside normalizer_spec of 18 bytes at byte 499705$/],
    ];
    for (const [length, message] of cuts) expectTokenizerError(() => parseSentencePieceModel(good.subarray(0, length), "cut.model"), message);
  });

  it("says a file that does not parse is not a SentencePiece model, naming the part and the byte", () => {
    const notModel = /: not a SentencePiece model, or a corrupt one: /;
    expectTokenizerError(() => parseSentencePieceModel(new TextEncoder().encode('{"model": {}}'), "json.model"), /^json\.model: not a SentencePiece model, or a corrupt one: unsupported wire type 3 for field 15 at byte 0$/);
    expectTokenizerError(() => parseSentencePieceModel(new Uint8Array([0x0a, 0xff]), "short.model"), /^short\.model is truncated: it ends at byte 2, inside a varint at byte 1$/);
    expectTokenizerError(() => parseSentencePieceModel(new Uint8Array([0x0b]), "group.model"), notModel);
    expectTokenizerError(() => parseSentencePieceModel(new Uint8Array([]), "empty.model"), /empty\.model: the model has no pieces/);
    expectTokenizerError(() => parseSentencePieceModel(model(varintField(1, 5)), "wire.model"), /wire\.model: not a .*: field pieces \(1\) at byte 0 has wire type 0, expected 2/);
    // A piece whose own length ends inside its score: corrupt, not truncated (the file goes on).
    const short = tinyModel([bytesField(1, [...stringField(1, "a"), ...key(2, 5), 0, 0])]);
    expectTokenizerError(() => parseSentencePieceModel(short, "short.model"), /short\.model: pieces\[3\]: not a .*: a float of 4 bytes at byte \d+ runs past the end of pieces\[3\]/);
    // The real file with one piece's score given the wrong wire type.
    const wrong = Uint8Array.from(good);
    const scoreKey = 2 + 2 + good[3];
    expect(wrong[scoreKey]).toBe(0x15); // field 2, fixed32
    wrong[scoreKey] = 0x10;
    expectTokenizerError(() => parseSentencePieceModel(wrong, "wrong.model"), new RegExp(`wrong\\.model: pieces\\[0\\]: not a .*: field score \\(2\\) at byte ${scoreKey} has wire type 0, expected 5`));
  });

  it("refuses models it does not run, by name", () => {
    const pieces = [piece("a", -1)];
    const unigram = model(piece("<unk>", 0, UNKNOWN), ...pieces, trainerSpec(varintField(3, 1)), normalizerSpec());
    expectTokenizerError(() => parseSentencePieceModel(unigram, "uni.model"), /uni\.model: SentencePiece model type UNIGRAM is not supported; only BPE/);
    const nfkc = tinyModel(pieces, normalizerSpec(stringField(1, "nmt_nfkc"), bytesField(2, [1, 2, 3, 4, 5])));
    expectTokenizerError(() => parseSentencePieceModel(nfkc, "nfkc.model"), /normalization rule 'nmt_nfkc'.*not supported/);
    const suffix = tinyModel(pieces, trainerSpec(BPE, varintField(24, 1)));
    expectTokenizerError(() => parseSentencePieceModel(suffix, "suffix.model"), /treat_whitespace_as_suffix/);
  });

  it("refuses inconsistent pieces", () => {
    expectTokenizerError(() => parseSentencePieceModel(tinyModel([piece("a", -1), piece("a", -2)]), "dup.model"), /piece 'a' \(id 4\) is defined twice/);
    expectTokenizerError(() => parseSentencePieceModel(model(piece("a", -1), trainerSpec(BPE), normalizerSpec()), "nounk.model"), /exactly one UNKNOWN piece, found 0/);
    expectTokenizerError(() => parseSentencePieceModel(tinyModel([piece("", -1)]), "emptypiece.model"), /piece 3 is empty/);
    expectTokenizerError(() => parseSentencePieceModel(tinyModel([piece("<0x41>", 0, BYTE)]), "bytes.model"), /byte_fallback is off/);
    const someBytes = tinyModel([piece("<0x41>", 0, BYTE)], trainerSpec(BPE, varintField(35, 1)));
    expectTokenizerError(() => parseSentencePieceModel(someBytes, "bytes.model"), /only 1 of the 256 <0xNN> byte pieces/);
    expectTokenizerError(() => parseSentencePieceModel(tinyModel([piece("a", -1, 9)]), "type.model"), /piece 'a' has unknown type 9/);
    expectTokenizerError(() => parseSentencePieceModel(tinyModel([piece("a", -1, -1)]), "type.model"), /piece 'a' has unknown type -1/);
  });
});

describe("bad tokenizer.json and config files", () => {
  const minimal = (overrides: Record<string, unknown> = {}, modelOverrides: Record<string, unknown> = {}) =>
    JSON.stringify({
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: { type: "BPE", vocab: { "<unk>": 0, a: 1, b: 2, ab: 3 }, merges: ["a b"], unk_token: "<unk>", ...modelOverrides },
      ...overrides,
    });

  it("reads a minimal one", () => {
    const tokenizer = tokenizerFromJson(minimal(), "min.json");
    expect(tokenizer.encode("abac")).toEqual([3, 1, 0]);
    expect(tokenizer.addBos).toBe(false);
  });

  it("refuses malformed or unsupported ones, naming the file and the part", () => {
    expectTokenizerError(() => tokenizerFromJson("{ not json", "bad.json"), /bad\.json: not valid JSON/);
    expectTokenizerError(() => tokenizerFromJson("[]", "list.json"), /list\.json: expected a JSON object/);
    expectTokenizerError(() => tokenizerFromJson('{"add_bos_token": true}', "tokenizer_config.json"), /no "model" object \(is this a tokenizer\.json\?\)/);
    expectTokenizerError(() => tokenizerFromJson(minimal({}, { type: "WordPiece" }), "wp.json"), /model type "WordPiece" is not supported; only BPE/);
    expectTokenizerError(() => tokenizerFromJson(minimal({}, { merges: ["a c"] }), "m.json"), /m\.json: model\.merges\[0\]: 'a' \+ 'c'/);
    expectTokenizerError(() => tokenizerFromJson(minimal({}, { merges: ["a b c"] }), "m.json"), /merges\[0\]: expected "left right"/);
    expectTokenizerError(() => tokenizerFromJson(minimal({}, { byte_fallback: true }), "bf.json"), /byte_fallback is on but the vocabulary has no <0x00>/);
    expectTokenizerError(() => tokenizerFromJson(minimal({ normalizer: { type: "BertNormalizer" } }), "n.json"), /n\.json: normalizer: normalizer type "BertNormalizer" is not supported/);
    expectTokenizerError(() => tokenizerFromJson(minimal({ pre_tokenizer: { type: "ByteLevel" } }), "p.json"), /pre-tokenizer type "ByteLevel" is not supported/);
    expectTokenizerError(() => tokenizerFromJson(minimal({ decoder: { type: "WordPiece" } }), "d.json"), /decoder type "WordPiece" is not supported/);
    expectTokenizerError(() => tokenizerFromJson(minimal({ post_processor: { type: "RobertaProcessing" } }), "pp.json"), /only TemplateProcessing/);
    expectTokenizerError(
      () => tokenizerFromJson(minimal({ added_tokens: [{ id: 1, content: "x", special: true }] }), "a.json"),
      /added token 1 is 'x' but the vocabulary has 'a'/,
    );
  });

  it("refuses bad tokenizer_config.json values", () => {
    expectTokenizerError(() => parseTokenizerConfig('{"legacy": "yes"}', "c.json"), /c\.json: legacy must be true or false/);
    expectTokenizerError(() => parseTokenizerConfig('{"added_tokens_decoder": {"x": {"content": "a"}}}', "c.json"), /key 'x' is not a token id/);
    expectTokenizerError(
      () => parseTokenizerConfig('{"added_tokens_decoder": {"5": {"content": "a", "single_word": true}}}', "c.json"),
      /single_word added tokens \('a'\) are not supported/,
    );
  });
});

describe("loadTokenizer", () => {
  it("names what is missing", async () => {
    await expect(loadTokenizer("/no/such/tokenizer.model")).rejects.toThrow(/\/no\/such\/tokenizer\.model: no such file or folder/);
    const empty = await folderWith({ "config.json": "{}" });
    await expect(loadTokenizer(empty)).rejects.toThrow(/no tokenizer\.json or tokenizer\.model in this folder/);
  });

  it("reads a file given directly on its own, and checks a folder's config against the model", async () => {
    const folder = await folderWith({
      "tokenizer.model": readFileSync(fixture("tokenizer.model")),
      "tokenizer_config.json": '{"pad_token": "<pad>"}',
    });
    // The model alone: plain SentencePiece, the config is not read.
    expect((await loadTokenizer(join(folder, "tokenizer.model"))).padId).toBeUndefined();
    // The folder: the config names a pad token that exists nowhere.
    await expect(loadTokenizer(folder)).rejects.toThrow(/special token '<pad>' is neither a piece of .*tokenizer\.model nor in added_tokens_decoder/);
  });

  it("reports a broken tokenizer.json in a folder by its path", async () => {
    const folder = await folderWith({ "tokenizer.json": '{"model": [}' });
    await expect(loadTokenizer(folder)).rejects.toThrow(/tokenizer\.json: not valid JSON/);
  });

  it("says a tokenizer.json or tokenizer_config.json cut short anywhere is truncated", async () => {
    const json = readFileSync(fixture("hf-llama-tokenizer.json"), "utf8");
    const config = readFileSync(fixture("llava-1.5/tokenizer_config.json"), "utf8");
    for (const fraction of [0.001, 0.3, 0.5, 0.9, 0.999]) {
      const folder = await folderWith({
        "tokenizer.json": json.slice(0, Math.floor(json.length * fraction)),
        "tokenizer_config.json": config,
      });
      await expect(loadTokenizer(folder)).rejects.toThrow(/tokenizer\.json is truncated: it ends before its JSON does/);
      await writeFile(join(folder, "tokenizer_config.json"), config.slice(0, Math.floor(config.length * fraction)));
      await expect(loadTokenizer(folder)).rejects.toThrow(/tokenizer_config\.json is truncated: it ends before its JSON does/);
    }
  });
});

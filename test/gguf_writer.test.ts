/**
 * The GGUF writer (src/weights/gguf_writer.ts), checked against @huggingface/gguf, a parser
 * written independently of it: a file with every value type (64-bit integers past 2^53,
 * negatives, floats, booleans, non-ASCII and empty strings, a vocabulary-sized STRING array,
 * an empty and a nested array) and tensors of the common ggml types reads back the same, with
 * each tensor's bytes where its offset says, in the layout llama.cpp's reader demands (each
 * offset the previous plus its padded size), for the default alignment, 64, and version 2.
 * Then a few hand-assembled bytes, seeded random files (fast-check) parsed the same way, every
 * refusal naming the key or tensor, garbage that must never end in anything but a
 * GgufWriteError, and no file replaced without force.
 *
 * Block sizes here are ggml-common.h's, written out again rather than taken from
 * gguf_types.ts, and type ids are the parser's own enum, so the table is checked too.
 */
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGMLQuantizationType, gguf as parseGguf, type GGUFParseOutput, type GGUFTypedMetadata } from "@huggingface/gguf";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { FileError } from "../src/files/read.js";
import { GGML_TYPES, GGUF_VALUE_TYPES, type GgufArray, type GgufValue, type GgufValueType } from "../src/weights/gguf_types.js";
import { encodeGguf, encodeGgufHeader, GgufWriteError, writeGguf, type GgufTensorToWrite, type GgufToWrite } from "../src/weights/gguf_writer.js";
import { rng, SEED } from "./helpers.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-gguf-writer-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const random = rng(SEED);
const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));

/** Elements per block and bytes per block, from ggml-common.h's block structs. */
const BLOCKS: Record<string, [number, number]> = {
  F32: [1, 4],
  F16: [1, 2],
  BF16: [1, 2],
  Q8_0: [32, 34],
  Q4_0: [32, 18],
  Q4_K: [256, 144],
  Q6_K: [256, 210],
};

function tensor(type: string, dims: number[]): GgufTensorToWrite {
  const [elements, bytes] = BLOCKS[type];
  return { type, dims, data: randomBytes((dims.reduce((n, d) => n * d, 1) / elements) * bytes) };
}

const bytesOf = (data: ArrayBufferView) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** Byte-equal, compared fast (toEqual walks a large array element by element), failing with the first difference. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (Buffer.from(bytesOf(actual)).equals(bytesOf(expected))) return;
  let at = 0;
  while (at < Math.min(actual.byteLength, expected.byteLength) && actual[at] === expected[at]) at++;
  expect.fail(`${what}: ${actual.byteLength} bytes where ${expected.byteLength} were expected, first different at byte ${at} (seed ${SEED})`);
}
const padded = (n: number, alignment: number) => Math.ceil(n / alignment) * alignment;

const TOKENS = Array.from({ length: 5000 }, (_, i) => (i === 0 ? "" : i % 7 === 0 ? `▁wörd${i}` : i % 11 === 0 ? `<0x${(i % 256).toString(16).toUpperCase()}>` : `tok${i}`));

const METADATA: Record<string, GgufValue> = {
  "general.architecture": { type: "STRING", value: "llama" },
  "general.name": { type: "STRING", value: "Ünïcødé ✓ 模型 🦙" },
  "general.description": { type: "STRING", value: "" },
  "test.u8": { type: "UINT8", value: 255 },
  "test.i8": { type: "INT8", value: -128 },
  "test.i8_small": { type: "INT8", value: -1 },
  "test.u16": { type: "UINT16", value: 65535 },
  "test.i16": { type: "INT16", value: -32768 },
  "test.u32": { type: "UINT32", value: 4294967295 },
  "test.i32": { type: "INT32", value: -2147483648 },
  "test.f32": { type: "FLOAT32", value: 0.1 },
  "test.f32_inf": { type: "FLOAT32", value: -Infinity },
  "test.f64": { type: "FLOAT64", value: -1.2345678901234567e-300 },
  "test.u64": { type: "UINT64", value: 2n ** 64n - 1n },
  "test.u64_past_2_53": { type: "UINT64", value: 2n ** 53n + 1n },
  "test.i64": { type: "INT64", value: -(2n ** 63n) },
  "test.i64_past_2_53": { type: "INT64", value: -(2n ** 53n) - 3n },
  "test.i64_max": { type: "INT64", value: 2n ** 63n - 1n },
  "test.true": { type: "BOOL", value: true },
  "test.false": { type: "BOOL", value: false },
  "tokenizer.ggml.token_type": { type: "ARRAY", value: { itemType: "UINT32", values: [0, 1, 4294967295, 7] } },
  "tokenizer.ggml.tokens": { type: "ARRAY", value: { itemType: "STRING", values: TOKENS } },
  "tokenizer.ggml.scores": { type: "ARRAY", value: { itemType: "FLOAT32", values: [0.5, -2, 0, 1e-7] } },
  "test.u64s": { type: "ARRAY", value: { itemType: "UINT64", values: [0n, 2n ** 64n - 1n] } },
  "test.bools": { type: "ARRAY", value: { itemType: "BOOL", values: [true, false, true] } },
  "test.empty": { type: "ARRAY", value: { itemType: "INT64", values: [] } },
  "test.nested": {
    type: "ARRAY",
    value: {
      itemType: "ARRAY",
      values: [
        { itemType: "INT32", values: [1, -2, 3] },
        { itemType: "INT32", values: [] },
        { itemType: "INT32", values: [2147483647] },
      ],
    },
  },
};

const F32_BACKING = new Float32Array(1000).map(() => random() * 2 - 1);

const TENSORS: Record<string, GgufTensorToWrite> = {
  "token_embd.weight": tensor("F16", [64, 3]),
  "blk.0.attn_q.weight": tensor("Q8_0", [64, 3]),
  "blk.0.attn_k.weight": tensor("Q4_0", [64, 3]),
  "blk.0.ffn_up.weight": tensor("Q4_K", [256, 2]),
  "blk.0.ffn_down.weight": tensor("Q6_K", [256, 2]),
  "v.patch_embd.weight": tensor("BF16", [64, 3]),
  "blk.0.attn_norm.weight": tensor("F32", [64]),
  "output_norm.bias": tensor("F32", [5]),
  // A view into the middle of a larger array: only its own bytes may be written.
  "output.weight": { type: "F32", dims: [64, 3], data: F32_BACKING.subarray(7, 7 + 64 * 3) },
};

/** What @huggingface/gguf gives for a value: plain numbers (FLOAT32 rounded), bigints, arrays of them. */
function asParsed(type: GgufValueType, value: unknown): unknown {
  if (type === "FLOAT32") return Math.fround(value as number);
  if (type === "ARRAY") return (value as GgufArray).values.map((item) => asParsed((value as GgufArray).itemType, item));
  return value;
}

/** Checks the parser's reading of `bytes` against what was written. */
function expectParsedAs(parsed: GGUFParseOutput & { typedMetadata: GGUFTypedMetadata }, bytes: Uint8Array, file: GgufToWrite): void {
  const alignment = file.metadata["general.alignment"]?.value ?? 32;
  expect(parsed.littleEndian).toBe(true);
  const typed = parsed.typedMetadata as unknown as Record<string, { value: unknown; type: number; subType?: number }>;
  expect(typed.version.value).toBe(file.version ?? 3);
  expect(typed.tensor_count.value).toBe(BigInt(Object.keys(file.tensors).length));
  expect(typed.kv_count.value).toBe(BigInt(Object.keys(file.metadata).length));
  expect(Object.keys(typed).slice(3)).toEqual(Object.keys(file.metadata));
  for (const [key, { type, value }] of Object.entries(file.metadata)) {
    expect(typed[key].type, key).toBe(GGUF_VALUE_TYPES.indexOf(type));
    if (type === "ARRAY") expect(typed[key].subType, key).toBe(GGUF_VALUE_TYPES.indexOf(value.itemType));
    expect(typed[key].value, key).toEqual(asParsed(type, value));
  }

  const dataStart = Number(parsed.tensorDataOffset);
  expect(dataStart % Number(alignment)).toBe(0);
  expect(bytes.subarray(parsed.tensorInfoByteRange[1], dataStart).every((b) => b === 0), "the header's padding is zeros").toBe(true);
  expect(parsed.tensorInfos.map((t) => t.name)).toEqual(Object.keys(file.tensors));
  let expectedOffset = 0;
  for (const info of parsed.tensorInfos) {
    const t = file.tensors[info.name];
    const data = bytesOf(t.data as ArrayBufferView);
    expect(info.n_dims, info.name).toBe(t.dims.length);
    expect(info.shape, info.name).toEqual(t.dims.map(BigInt));
    expect(info.dtype, info.name).toBe(GGMLQuantizationType[t.type as keyof typeof GGMLQuantizationType]);
    // llama.cpp's reader accepts exactly these offsets: each the previous plus its padded size.
    expect(Number(info.offset), info.name).toBe(expectedOffset);
    const begin = dataStart + Number(info.offset);
    expectSameBytes(bytes.subarray(begin, begin + data.byteLength), data, info.name);
    const end = begin + padded(data.byteLength, Number(alignment));
    expect(bytes.subarray(begin + data.byteLength, end).every((b) => b === 0), `${info.name}: its padding is zeros`).toBe(true);
    expectedOffset += padded(data.byteLength, Number(alignment));
  }
  expect(bytes.byteLength, "the file ends after the last tensor's padding").toBe(dataStart + expectedOffset);
}

/** @huggingface/gguf reading bytes from memory, through a fetch that answers its range requests. */
function parseBytes(bytes: Uint8Array) {
  const fetchRange = (async (_url: unknown, init?: RequestInit) => {
    const [, from, to] = /bytes=(\d+)-(\d+)/.exec(new Headers(init?.headers).get("range") ?? "") ?? [];
    const start = Math.min(Number(from), bytes.byteLength);
    const end = Math.min(Number(to) + 1, bytes.byteLength);
    return new Response(bytes.slice(start, end), { status: 206, headers: { "content-range": `bytes ${start}-${end - 1}/${bytes.byteLength}` } });
  }) as typeof fetch;
  return parseGguf("https://example.invalid/model.gguf", { fetch: fetchRange, typedMetadata: true });
}

describe("GGUF files written", () => {
  it("uses ggml-common.h's block sizes and the parser's type ids", () => {
    for (const [name, [elements, bytes]] of Object.entries(BLOCKS)) {
      const type = [...GGML_TYPES.values()].find((t) => t.name === name)!;
      expect([type.id, type.blockElements, type.blockBytes], name).toEqual([GGMLQuantizationType[name as keyof typeof GGMLQuantizationType], elements, bytes]);
    }
    for (const type of GGML_TYPES.values()) expect(GGMLQuantizationType[type.id], `type ${type.id}`).toBe(type.name);
  });

  for (const [alignment, version] of [[undefined, 3], [64, 3], [undefined, 2], [64, 2]] as const) {
    it(`read back the same with @huggingface/gguf (alignment ${alignment ?? "32 by default"}, version ${version})`, async () => {
      const metadata: Record<string, GgufValue> = alignment ? { "general.alignment": { type: "UINT32", value: alignment }, ...METADATA } : METADATA;
      const file: GgufToWrite = { metadata, tensors: TENSORS, version };
      const path = join(dir, `all-${alignment ?? 32}-v${version}.gguf`);
      await writeGguf(path, file);
      const bytes = new Uint8Array(await readFile(path));
      expectSameBytes(bytes, encodeGguf(file), "writeGguf writes what encodeGguf returns");
      expect([...bytes.subarray(0, 8)]).toEqual([0x47, 0x47, 0x55, 0x46, version, 0, 0, 0]);

      const parsed = await parseGguf(path, { allowLocalFile: true, typedMetadata: true });
      expectParsedAs(parsed, bytes, file);
      expect(Number(parsed.tensorDataOffset)).toBe(encodeGgufHeader(file).dataStart);
      expect((parsed.metadata as unknown as Record<string, unknown>)["tokenizer.ggml.tokens"]).toEqual(TOKENS);
    });
  }

  it("are byte for byte the format: counts, keys, typed values, tensor infos, padding", () => {
    const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
    const u64 = (v: number) => [...u32(v), 0, 0, 0, 0];
    const text = (s: string) => [...u64(Buffer.byteLength(s)), ...Buffer.from(s)];
    const header = [
      [0x47, 0x47, 0x55, 0x46], u32(3), u64(2), u64(3),
      text("a"), u32(0), [7],
      text("s"), u32(8), text("hé"),
      text("n"), u32(9), u32(9), u64(2), u32(5), u64(1), u32(0xfffffffe), u32(7), u64(0),
      text("w"), u32(1), u64(2), u32(0), u64(0),
      text("q"), u32(2), u64(32), u64(1), u32(8), u64(32),
    ].flat();
    expect(header.length).toBe(189);
    const w = new Float32Array([1, -2]);
    const q = randomBytes(34);
    const expected = new Uint8Array(192 + 32 + 64);
    expected.set(header);
    expected.set(bytesOf(w), 192);
    expected.set(q, 224);
    const actual = encodeGguf({
      metadata: {
        a: { type: "UINT8", value: 7 },
        s: { type: "STRING", value: "hé" },
        n: { type: "ARRAY", value: { itemType: "ARRAY", values: [{ itemType: "INT32", values: [-2] }, { itemType: "BOOL", values: [] }] } },
      },
      tensors: { w: { type: "F32", dims: [2], data: w }, q: { type: "Q8_0", dims: [32, 1], data: q } },
    });
    expect(actual).toEqual(expected);
    // No tensors: the header alone, padded as llama.cpp pads it.
    expect(encodeGguf({ metadata: {}, tensors: {} })).toEqual(Uint8Array.from([...[0x47, 0x47, 0x55, 0x46], ...u32(3), ...u64(0), ...u64(0), ...new Array(8).fill(0)]));
  });

  it("read back the same with @huggingface/gguf when random (seeded)", async () => {
    const types = GGUF_VALUE_TYPES.filter((t) => t !== "ARRAY");
    const scalar: Record<string, fc.Arbitrary<unknown>> = {
      UINT8: fc.integer({ min: 0, max: 255 }),
      INT8: fc.integer({ min: -128, max: 127 }),
      UINT16: fc.integer({ min: 0, max: 65535 }),
      INT16: fc.integer({ min: -32768, max: 32767 }),
      UINT32: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      INT32: fc.integer(),
      FLOAT32: fc.float(),
      FLOAT64: fc.double(),
      BOOL: fc.boolean(),
      STRING: fc.string({ unit: "binary", maxLength: 12 }),
      UINT64: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      INT64: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    };
    const flatArray = fc.constantFrom(...types).chain((itemType) => fc.array(scalar[itemType], { maxLength: 6 }).map((values): GgufArray => ({ itemType, values: values as GgufArray["values"] })));
    const array = fc.oneof(flatArray, fc.array(flatArray, { maxLength: 3 }).map((values): GgufArray => ({ itemType: "ARRAY", values })));
    const value: fc.Arbitrary<GgufValue> = fc.oneof(
      fc.constantFrom(...types).chain((type) => scalar[type].map((v) => ({ type, value: v }) as GgufValue)),
      array.map((v): GgufValue => ({ type: "ARRAY", value: v })),
    );
    const metadata = fc.uniqueArray(fc.tuple(fc.string({ unit: "binary", maxLength: 10 }).map((k) => `k.${k}`), value), { selector: ([k]) => k, maxLength: 8 });
    const ggmlTypes = [...GGML_TYPES.values()];
    const oneTensor = fc
      .tuple(fc.constantFrom(...ggmlTypes), fc.integer({ min: 0, max: 3 }), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }))
      .chain(([type, blocks, outer]) => {
        const dims = [blocks * type.blockElements, ...outer];
        const bytes = (dims.reduce((n, d) => n * d, 1) / type.blockElements) * type.blockBytes;
        return fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((data): GgufTensorToWrite => ({ type: type.name, dims, data }));
      });
    const tensors = fc.uniqueArray(fc.tuple(fc.string({ unit: "binary", minLength: 1, maxLength: 12 }).filter((s) => Buffer.byteLength(s) < 64), oneTensor), { selector: ([n]) => n, maxLength: 5 });
    const alignment = fc.option(fc.constantFrom(1, 8, 16, 32, 64, 256), { nil: undefined });

    await fc.assert(
      fc.asyncProperty(metadata, tensors, alignment, fc.constantFrom(2 as const, 3 as const), async (kvs, ts, align, version) => {
        const file: GgufToWrite = {
          metadata: { ...(align ? { "general.alignment": { type: "UINT32", value: align } as GgufValue } : {}), ...Object.fromEntries(kvs) },
          tensors: Object.fromEntries(ts),
          version,
        };
        const bytes = encodeGguf(file);
        expectParsedAs(await parseBytes(bytes), bytes, file);
      }),
      { seed: SEED, numRuns: 150 },
    );
  });
});

describe("the GGUF writer refuses", () => {
  const bad = (metadata: Record<string, unknown>, tensors: Record<string, unknown> = {}, version?: number) => () =>
    encodeGguf({ metadata: metadata as Record<string, GgufValue>, tensors: tensors as Record<string, GgufTensorToWrite>, version: version as 3 });
  const f32 = (dims: unknown, bytes = 4) => ({ type: "F32", dims, data: new Uint8Array(bytes) });

  it("a value that is not of its type, naming the key", () => {
    const cases: [string, unknown, RegExp][] = [
      ["UINT8", 256, /256 is not a UINT8/],
      ["UINT8", -1, /-1 is not a UINT8/],
      ["INT8", -129, /-129 is not a INT8/],
      ["INT8", 128, /128 is not a INT8/],
      ["UINT16", 65536, /65536 is not a UINT16/],
      ["UINT16", "1", /"1" is not a UINT16/],
      ["INT16", 32768, /32768 is not a INT16/],
      ["UINT32", 2 ** 32, /4294967296 is not a UINT32/],
      ["UINT32", 1n, /1n is not a UINT32/],
      ["INT32", 1.5, /1.5 is not a INT32/],
      ["INT32", 2 ** 31, /2147483648 is not a INT32/],
      ["INT32", NaN, /NaN is not a INT32/],
      ["FLOAT32", "x", /"x" is not a FLOAT32/],
      ["FLOAT32", 1e39, /1e\+39 is not a FLOAT32 \(beyond its range\)/],
      ["FLOAT64", 1n, /1n is not a FLOAT64/],
      ["UINT64", 5, /5 is not a UINT64 \(64-bit integers are given as bigints\)/],
      ["UINT64", -1n, /-1n is not a UINT64/],
      ["UINT64", 2n ** 64n, /18446744073709551616n is not a UINT64/],
      ["INT64", 2n ** 63n, /9223372036854775808n is not a INT64/],
      ["INT64", -(2n ** 63n) - 1n, /-9223372036854775809n is not a INT64/],
      ["INT64", 2 ** 60, /\d+ is not a INT64 \(64-bit integers are given as bigints\)/],
      ["BOOL", 1, /1 is not a BOOL/],
      ["STRING", 3, /3 is not a STRING/],
      ["STRING", "a\ud800b", /".*" has a lone UTF-16 surrogate, which UTF-8 cannot encode$/],
    ];
    for (const [type, value, says] of cases) {
      const what = `${type} ${String(value)}`;
      expect(bad({ "my.key": { type, value } }), what).toThrow(GgufWriteError);
      expect(bad({ "my.key": { type, value } }), what).toThrow(new RegExp(`^metadata 'my\\.key': ${says.source}`));
    }
    expect(bad({ "my.key": { type: "NOPE", value: 1 } })).toThrow(/^metadata 'my\.key': unknown value type NOPE$/);
    expect(bad({ "my.key": { value: 1 } })).toThrow(/^metadata 'my\.key': unknown value type undefined$/);
    expect(bad({ "my.key": null })).toThrow(/^metadata 'my\.key': unknown value type/);
    expect(bad({ "": { type: "UINT8", value: 1 } })).toThrow(/^metadata '': a key must not be empty/);
    expect(bad({ "k\udc00": { type: "UINT8", value: 1 } })).toThrow(/^metadata 'k.*': .*lone UTF-16 surrogate/);
  });

  it("an array whose items are not of its item type, naming the key and the item", () => {
    const array = (itemType: unknown, values: unknown) => ({ "tok.list": { type: "ARRAY", value: { itemType, values } } });
    expect(bad(array("UINT32", [1, 2, -1]))).toThrow(/^metadata 'tok\.list': item 2: -1 is not a UINT32$/);
    expect(bad(array("STRING", ["a", 7]))).toThrow(/^metadata 'tok\.list': item 1: 7 is not a STRING$/);
    expect(bad(array("INT64", [1n, 2]))).toThrow(/^metadata 'tok\.list': item 1: 2 is not a INT64/);
    expect(bad(array("ARRAY", [{ itemType: "INT32", values: [1] }, [2]]))).toThrow(/^metadata 'tok\.list': item 1: an ARRAY needs an itemType/);
    expect(bad(array("ARRAY", [{ itemType: "INT32", values: [] }, { itemType: "INT32", values: [0, 0.5] }]))).toThrow(/^metadata 'tok\.list': item 1: item 1: 0.5 is not a INT32$/);
    expect(bad(array("NOPE", []))).toThrow(/^metadata 'tok\.list': an ARRAY needs an itemType/);
    expect(bad(array("INT32", "123"))).toThrow(/^metadata 'tok\.list': an ARRAY needs an itemType/);
    expect(bad({ "tok.list": { type: "ARRAY", value: [1, 2] } })).toThrow(/^metadata 'tok\.list': an ARRAY needs an itemType/);
  });

  it("an alignment that is not a UINT32 power of two", () => {
    for (const value of [{ type: "UINT32", value: 24 }, { type: "UINT32", value: 0 }, { type: "UINT32", value: 2 ** 32 - 1 }, { type: "UINT64", value: 64n }, { type: "INT32", value: 64 }]) {
      expect(bad({ "general.alignment": value }), JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? String(v) : v))).toThrow(
        /^metadata 'general\.alignment' must be a UINT32 power of two, not /,
      );
    }
    expect(bad({ "general.alignment": { type: "UINT32", value: 24 } })).toThrow(/not UINT32 24$/);
    expect(bad({ "general.alignment": { type: "UINT64", value: 64n } })).toThrow(/not UINT64 64n$/);
    for (const alignment of [1, 2, 4096, 2 ** 16]) expect(bad({ "general.alignment": { type: "UINT32", value: alignment } })).not.toThrow();
  });

  it("a tensor that ggml could not hold, naming it", () => {
    const t = (tensor: unknown) => bad({}, { "blk.0.w": tensor });
    expect(t({ type: "Q9_9", dims: [32], data: new Uint8Array(0) })).toThrow(/^tensor 'blk\.0\.w': unknown ggml type "Q9_9"$/);
    expect(t({ type: "q8_0", dims: [32], data: new Uint8Array(34) })).toThrow(/^tensor 'blk\.0\.w': unknown ggml type "q8_0"$/);
    expect(t({ dims: [32], data: new Uint8Array(34) })).toThrow(/^tensor 'blk\.0\.w': unknown ggml type undefined$/);
    expect(t(f32([], 0))).toThrow(/^tensor 'blk\.0\.w': dims \[\] must be 1 to 4 integers >= 0$/);
    expect(t(f32([1, 1, 1, 1, 1]))).toThrow(/^tensor 'blk\.0\.w': dims \[1,1,1,1,1\] must be 1 to 4 integers >= 0$/);
    expect(t(f32([1.5]))).toThrow(/^tensor 'blk\.0\.w': dims \[1\.5\] must be/);
    expect(t(f32([-1]))).toThrow(/^tensor 'blk\.0\.w': dims \[-1\] must be/);
    expect(t(f32([2 ** 53]))).toThrow(/^tensor 'blk\.0\.w': dims \[9007199254740992\] must be/);
    expect(t(f32("4"))).toThrow(/^tensor 'blk\.0\.w': dims "4" must be/);
    expect(t({ type: "Q4_K", dims: [128], data: new Uint8Array(72) })).toThrow(/^tensor 'blk\.0\.w': rows of 128 elements are not whole Q4_K blocks of 256$/);
    expect(t({ type: "Q8_0", dims: [33, 32], data: new Uint8Array(34 * 33) })).toThrow(/^tensor 'blk\.0\.w': rows of 33 elements are not whole Q8_0 blocks of 32$/);
    expect(t({ type: "Q8_0", dims: [32, 2], data: new Uint8Array(34) })).toThrow(/^tensor 'blk\.0\.w': 34 bytes given, but Q8_0 \[32, 2\] is 68$/);
    expect(t({ type: "Q8_0", dims: [32, 2], data: new Uint8Array(69) })).toThrow(/^tensor 'blk\.0\.w': 69 bytes given, but Q8_0 \[32, 2\] is 68$/);
    expect(t({ type: "F16", dims: [3], data: new Float32Array(3) })).toThrow(/^tensor 'blk\.0\.w': 12 bytes given, but F16 \[3\] is 6$/);
    expect(t({ type: "F32", dims: [2], data: [1, 2] })).toThrow(/^tensor 'blk\.0\.w': data is not a typed array, a DataView or a function making one$/);
    expect(t(null)).toThrow(/^tensor 'blk\.0\.w': is not a \{ type, dims, data \} object$/);
    expect(bad({}, { ["x".repeat(64)]: f32([1]) })).toThrow(/^tensor 'x{64}': a name must be 1 to 63 bytes of UTF-8 \(ggml's limit\), not 64$/);
    expect(bad({}, { ["é".repeat(32)]: f32([1]) })).toThrow(/a name must be 1 to 63 bytes of UTF-8 \(ggml's limit\), not 64$/);
    expect(bad({}, { "": f32([1]) })).toThrow(/^tensor '': a name must be 1 to 63 bytes/);
    expect(bad({}, { ["x".repeat(63)]: f32([1]) })).not.toThrow();
    // Empty tensors are fine, whichever dimension is zero.
    expect(bad({}, { a: f32([0, 4], 0), b: f32([4, 0], 0), c: { type: "Q4_K", dims: [0], data: new Uint8Array(0) } })).not.toThrow();
  });

  it("a version other than 2 or 3, and a file that is not one", () => {
    for (const version of [1, 4, 0, "3"]) expect(bad({}, {}, version as number), String(version)).toThrow(/^GGUF version .* cannot be written \(2 or 3\)$/);
    expect(() => encodeGguf({ metadata: null, tensors: {} } as unknown as GgufToWrite)).toThrow(/^the file's metadata must be an object$/);
    expect(() => encodeGguf({ metadata: {} } as unknown as GgufToWrite)).toThrow(/^the file's tensors must be an object$/);
  });

  it("garbage in any field with a GgufWriteError, never another error (seeded)", () => {
    const anything = fc.anything({ maxDepth: 2, withBigInt: true, withNullPrototype: true, withTypedArray: true, withSparseArray: true });
    const typeName = fc.oneof(fc.constantFrom(...GGUF_VALUE_TYPES), anything);
    const value = fc.oneof(
      fc.record({ type: typeName, value: anything }),
      fc.record({ type: fc.constant("ARRAY"), value: fc.record({ itemType: typeName, values: fc.array(anything, { maxLength: 4 }) }) }),
      anything,
    );
    const tensorField = fc.oneof(
      fc.record({ type: fc.oneof(fc.constantFrom(...[...GGML_TYPES.values()].map((t) => t.name)), anything), dims: fc.oneof(fc.array(fc.integer({ min: -2, max: 300 }), { maxLength: 5 }), anything), data: fc.oneof(fc.uint8Array({ maxLength: 300 }), anything) }),
      anything,
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string(), value, { maxKeys: 4 }), fc.dictionary(fc.string(), tensorField, { maxKeys: 3 }), fc.oneof(fc.constant(undefined), anything), (metadata, tensors, version) => {
        try {
          encodeGguf({ metadata, tensors, version } as unknown as GgufToWrite);
        } catch (error) {
          if (!(error instanceof GgufWriteError)) throw error;
        }
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });
});

describe("writeGguf", () => {
  const small: GgufToWrite = { metadata: { "general.architecture": { type: "STRING", value: "llama" } }, tensors: { w: tensor("F32", [3]) } };

  it("never replaces a file without force, nor an input even with it", async () => {
    const path = join(dir, "exists.gguf");
    await writeFile(path, "precious");
    await expect(writeGguf(path, small)).rejects.toThrow(FileError);
    await expect(writeGguf(path, small)).rejects.toThrow(`${path}: already exists (--force replaces it)`);
    await expect(writeGguf(path, small, { force: false })).rejects.toThrow(/already exists/);
    expect(await readFile(path, "utf8")).toBe("precious");
    await expect(writeGguf(path, small, { force: true, inputs: [path] })).rejects.toThrow(/is the input/);
    expect(await readFile(path, "utf8")).toBe("precious");
    await writeGguf(path, small, { force: true });
    expect(new Uint8Array(await readFile(path))).toEqual(encodeGguf(small));
  });

  it("writes nothing when the file is refused", async () => {
    const path = join(dir, "refused.gguf");
    await expect(writeGguf(path, { metadata: { k: { type: "UINT8", value: 300 } }, tensors: {} })).rejects.toThrow(GgufWriteError);
    await expect(access(path)).rejects.toThrow(/ENOENT/);
  });

  it("streams a tensor larger than the header's buffer and its padding", async () => {
    const path = join(dir, "large.gguf");
    const file: GgufToWrite = {
      metadata: { "general.alignment": { type: "UINT32", value: 1 << 17 } },
      tensors: { big: tensor("Q8_0", [32 * 1024, 65]), small: tensor("F32", [3]) },
    };
    await writeGguf(path, file);
    const bytes = new Uint8Array(await readFile(path));
    expectSameBytes(bytes, encodeGguf(file), "the file");
    expectParsedAs(await parseGguf(path, { allowLocalFile: true, typedMetadata: true }), bytes, file);
  });

  it("makes each tensor's bytes when its turn comes, from a function, and checks their length", async () => {
    const made: string[] = [];
    const lazily = (name: string, t: GgufTensorToWrite): GgufTensorToWrite => ({ ...t, data: async () => (made.push(name), t.data as ArrayBufferView) });
    const eager: GgufToWrite = { metadata: small.metadata, tensors: { a: tensor("Q4_0", [64, 3]), b: tensor("F16", [5]) } };
    const lazy: GgufToWrite = { metadata: eager.metadata, tensors: { a: lazily("a", eager.tensors.a), b: lazily("b", eager.tensors.b) } };
    const path = join(dir, "lazy.gguf");
    await writeGguf(path, lazy);
    expect(made).toEqual(["a", "b"]);
    expectSameBytes(new Uint8Array(await readFile(path)), encodeGguf(eager), "the file");
    expect(() => encodeGguf(lazy)).toThrow(/encodeGguf takes bytes, not a function/);
    const short: GgufToWrite = { metadata: eager.metadata, tensors: { a: { type: "F32", dims: [4], data: async () => new Float32Array(3) } } };
    await expect(writeGguf(join(dir, "short.gguf"), short)).rejects.toThrow("tensor 'a': 12 bytes given, but F32 [4] is 16");
    await expect(access(join(dir, "short.gguf"))).rejects.toThrow(/ENOENT/);
  });
});

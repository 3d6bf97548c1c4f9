/**
 * The GGUF reader (src/weights/gguf.ts): files written by gguf_writer.ts read back exactly
 * (every value type, nested arrays, every tensor type's sizes, alignments, versions 2 and 3),
 * the same as @huggingface/gguf (an independent parser) reads them; then every way a header
 * can be wrong, each a GgufError naming the file and the field, and seeded random damage,
 * which must never end any other way.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gguf as hfGguf } from "@huggingface/gguf";
import { afterAll, describe, expect, it } from "vitest";
import { GgufError, GgufFile } from "../src/weights/gguf.js";
import { GGML_TYPES, ggmlTypeNamed, type GgufValue } from "../src/weights/gguf_types.js";
import { encodeGguf, encodeGgufHeader, type GgufTensorToWrite } from "../src/weights/gguf_writer.js";
import { rng, SEED } from "./helpers.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-gguf-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const random = rng(SEED);
const bytesOf = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));

/** Random bytes of the right size for `type` and ggml dims. */
function tensor(type: string, dims: number[]): GgufTensorToWrite {
  const t = ggmlTypeNamed(type)!;
  const elements = dims.reduce((n, d) => n * d, 1);
  return { type, dims, data: bytesOf((elements / t.blockElements) * t.blockBytes) };
}

const METADATA: Record<string, GgufValue> = {
  "general.architecture": { type: "STRING", value: "llama" },
  "general.name": { type: "STRING", value: "tëst ✓" },
  "general.empty": { type: "STRING", value: "" },
  "u8": { type: "UINT8", value: 255 },
  "i8": { type: "INT8", value: -128 },
  "u16": { type: "UINT16", value: 65535 },
  "i16": { type: "INT16", value: -32768 },
  "u32": { type: "UINT32", value: 4294967295 },
  "i32": { type: "INT32", value: -2147483648 },
  "f32": { type: "FLOAT32", value: 1.5 },
  "f64": { type: "FLOAT64", value: -1e300 },
  "u64": { type: "UINT64", value: 2n ** 64n - 1n },
  "i64": { type: "INT64", value: -(2n ** 63n) },
  "yes": { type: "BOOL", value: true },
  "no": { type: "BOOL", value: false },
  "ids": { type: "ARRAY", value: { itemType: "UINT32", values: [0, 1, 4294967295] } },
  "tokens": { type: "ARRAY", value: { itemType: "STRING", values: Array.from({ length: 3000 }, (_, i) => `tok${i}▁`) } },
  "scores": { type: "ARRAY", value: { itemType: "FLOAT32", values: [0.5, -2, 0] } },
  "none": { type: "ARRAY", value: { itemType: "INT64", values: [] } },
  "nested": {
    type: "ARRAY",
    value: { itemType: "ARRAY", values: [{ itemType: "INT32", values: [1, -2] }, { itemType: "INT32", values: [] }, { itemType: "STRING", values: ["x"] }] },
  },
};

const TENSORS: Record<string, GgufTensorToWrite> = {
  "token_embd.weight": tensor("F16", [64, 3]),
  "blk.0.attn_q.weight": tensor("Q8_0", [64, 3]),
  "blk.0.attn_k.weight": tensor("Q4_0", [64, 2]),
  "blk.0.ffn_up.weight": tensor("Q4_K", [256, 2]),
  "blk.0.ffn_down.weight": tensor("Q6_K", [256, 1]),
  "blk.0.attn_norm.weight": tensor("F32", [5]),
  "v.patch_embd.weight": tensor("BF16", [4, 3, 2, 2]),
  "empty": tensor("F32", [0, 4]),
};

async function written(name: string, file: Parameters<typeof encodeGguf>[0]): Promise<{ path: string; bytes: Uint8Array }> {
  const path = join(dir, name);
  const bytes = encodeGguf(file);
  await writeFile(path, bytes);
  return { path, bytes };
}

describe("GGUF files", () => {
  for (const [label, alignment, version] of [["default alignment, version 3", undefined, 3], ["alignment 64, version 2", 64, 2]] as const) {
    it(`reads back every value type and tensor it was given (${label}), as @huggingface/gguf does`, async () => {
      const metadata = { ...METADATA, ...(alignment ? { "general.alignment": { type: "UINT32", value: alignment } as GgufValue } : {}) };
      const { path, bytes } = await written(`all-${alignment ?? 32}.gguf`, { metadata, tensors: TENSORS, version });
      const file = await GgufFile.open(path);
      try {
        expect(file.version).toBe(version);
        expect(file.alignment).toBe(alignment ?? 32);
        expect(file.dataStart % file.alignment).toBe(0);
        expect(Object.fromEntries(file.metadata)).toEqual(metadata);
        expect([...file.tensors.keys()]).toEqual(Object.keys(TENSORS));
        for (const [name, t] of Object.entries(TENSORS)) {
          const info = file.entry(name);
          expect(info.type.name, name).toBe(t.type);
          expect(info.dims, name).toEqual(t.dims);
          expect(info.shape, name).toEqual([...t.dims].reverse());
          expect(info.bytes, name).toBe((t.data as ArrayBufferView).byteLength);
          expect((info.begin - file.dataStart) % file.alignment, `${name} starts aligned`).toBe(0);
          expect(bytes.subarray(info.begin, info.end), name).toEqual(t.data);
          const part = new Uint8Array(Math.max(0, info.bytes - 3));
          await file.readInto(name, Math.min(3, info.bytes), part);
          expect(part, `${name}, read from byte 3`).toEqual((t.data as Uint8Array).subarray(Math.min(3, info.bytes)));
        }

        // An independent parser sees the same header.
        const theirs = await hfGguf(path, { allowLocalFile: true });
        expect(theirs.tensorInfos.map((t) => t.name)).toEqual(Object.keys(TENSORS));
        for (const t of theirs.tensorInfos) {
          const info = file.entry(t.name);
          expect(t.shape.map(Number), t.name).toEqual(info.dims);
          expect(GGML_TYPES.get(Number(t.dtype))?.name, t.name).toBe(info.type.name);
          expect(Number(t.offset) + file.dataStart, t.name).toBe(info.begin);
        }
        const theirMetadata = theirs.metadata as unknown as Record<string, unknown>;
        expect(theirMetadata["general.architecture"]).toBe("llama");
        expect(theirMetadata["general.name"]).toBe("tëst ✓");
        expect(theirMetadata["tokens"]).toEqual((METADATA.tokens.value as { values: string[] }).values);
        expect(Number(theirMetadata["u32"])).toBe(4294967295);
        expect(BigInt(theirMetadata["i64"] as bigint)).toBe(-(2n ** 63n));
      } finally {
        await file.close();
      }
    });
  }

  it("refuses to read past a tensor, from a closed file, or a tensor it does not have", async () => {
    const { path } = await written("small.gguf", { metadata: {}, tensors: { w: tensor("F32", [4]) } });
    const file = await GgufFile.open(path);
    await expect(file.readInto("w", 8, new Uint8Array(9))).rejects.toThrow(/tensor 'w': cannot read bytes \[8, 17\) of its 16/);
    expect(() => file.entry("nope")).toThrow(/no tensor named 'nope'/);
    await file.close();
    await expect(file.readInto("w", 0, new Uint8Array(4))).rejects.toThrow(/the file was closed/);
  });
});

// ---------------------------------------------------------------- damaged files

const SMALL_FILE = {
  metadata: { "general.architecture": { type: "STRING", value: "llama" } as GgufValue, "n": { type: "UINT32", value: 7 } as GgufValue },
  tensors: { a: tensor("F32", [4, 2]), b: tensor("Q8_0", [32]) },
};
const SMALL = encodeGguf(SMALL_FILE);
/** Where SMALL's last tensor ends (the padding after it may be cut without harm). */
const SMALL_DATA_END = (() => {
  const { dataStart, tensors } = encodeGgufHeader(SMALL_FILE);
  const last = tensors.at(-1)!;
  return dataStart + last.offset + last.bytes;
})();

/** SMALL with `bytes` written at `at`. */
function patched(at: number, bytes: number[] | Uint8Array): Uint8Array {
  const out = Uint8Array.from(SMALL);
  out.set(bytes, at);
  return out;
}

const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const u64 = (v: bigint) => Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
const text = (s: string) => [...u64(BigInt(Buffer.byteLength(s))), ...Buffer.from(s)];

/** A file of the given header pieces, padded and followed by `data`. */
function assemble(pieces: number[][], data: Uint8Array = new Uint8Array(64)): Uint8Array {
  const head = pieces.flat();
  const start = Math.ceil(head.length / 32) * 32;
  const out = new Uint8Array(start + data.byteLength);
  out.set(head);
  out.set(data, start);
  return out;
}
const MAGIC = [0x47, 0x47, 0x55, 0x46];
/** Header of version 3 with these counts. */
const header = (tensors: number, kvs: number) => [MAGIC, u32(3), u64(BigInt(tensors)), u64(BigInt(kvs))];
/** A tensor info. */
const info = (name: string, dims: number[], type: number, offset: number) => [
  ...text(name),
  ...u32(dims.length),
  ...dims.flatMap((d) => u64(BigInt(d))),
  ...u32(type),
  ...u64(BigInt(offset)),
];

interface Case {
  what: string;
  bytes: Uint8Array;
  says: RegExp;
}

function invalidCases(): Case[] {
  const cases: Case[] = [];
  const add = (what: string, bytes: Uint8Array, says: RegExp) => cases.push({ what, bytes, says });

  // Cut anywhere in the header or the data.
  for (let cut = 0; cut < SMALL_DATA_END; cut += cut < 200 ? 1 : 7) add(`truncated to ${cut} bytes`, SMALL.subarray(0, cut), /ends|truncated|past the end|bytes left of the header hold at most/);

  add("the wrong magic", patched(0, [0x47, 0x47, 0x4d, 0x4c]), /not a GGUF file \(it starts with 47 47 4d 4c/);
  add("version 1", patched(4, u32(1)), /version 1 .*not supported/);
  add("a big-endian version 3", patched(4, [0, 0, 0, 3]), /big-endian/);
  add("version 4", patched(4, u32(4)), /GGUF version 4 is not supported/);
  add("a tensor count of 2^64-1", patched(8, u64(2n ** 64n - 1n)), /the tensor count is 18446744073709551615, but/);
  add("a metadata count of 2^40", patched(16, u64(2n ** 40n)), /the metadata count is 1099511627776, but/);
  add("a key 2^63 bytes long", patched(24, u64(2n ** 63n)), /the key of metadata entry 0: its length is \d+, larger than any file/);
  add("a key longer than the file", patched(24, u64(10n ** 6n)), /the key of metadata entry 0: the file ends/);

  add("an unknown value type", assemble([...header(0, 1), text("k"), u32(13)]), /metadata 'k' has value type 13, not one of GGUF's 0 to 12/);
  add("an unknown array item type", assemble([...header(0, 1), text("k"), u32(9), u32(99), u64(0n)]), /metadata 'k': its items has value type 99/);
  add("an array longer than the file", assemble([...header(0, 1), text("k"), u32(9), u32(4), u64(2n ** 32n)]), /metadata 'k': its count is 4294967296, but/);
  add("a string array longer than the file", assemble([...header(0, 1), text("k"), u32(9), u32(8), u64(10n ** 5n)]), /metadata 'k': its count is 100000, but/);
  // An ARRAY whose one item is an ARRAY whose one item is ..., ten deep, the innermost empty.
  const deep = [...header(0, 1), text("k"), u32(9)];
  for (let i = 0; i < 9; i++) deep.push(u32(9), u64(1n));
  deep.push(u32(4), u64(0n));
  add("arrays nested 10 deep", assemble(deep), /arrays nested more than 8 deep/);
  add("a key twice", assemble([...header(0, 2), text("k"), u32(4), u32(1), text("k"), u32(4), u32(2)]), /metadata 'k' appears twice/);
  add("invalid UTF-8 in a key", assemble([...header(0, 1), [...u64(2n), 0xc3, 0x28], u32(4), u32(1)]), /the key of metadata entry 0 is not valid UTF-8/);
  add("invalid UTF-8 in a value", assemble([...header(0, 1), text("k"), u32(8), [...u64(1n), 0xff]]), /metadata 'k' is not valid UTF-8/);
  add("a BOOL of 2", assemble([...header(0, 1), text("k"), u32(7), [2]]), /metadata 'k' is a BOOL of 2/);
  add("an alignment of 48", assemble([...header(0, 1), text("general.alignment"), u32(4), u32(48)]), /'general.alignment' is 48, not a power of two/);
  add("an alignment of 0", assemble([...header(0, 1), text("general.alignment"), u32(4), u32(0)]), /'general.alignment' is 0, not a power of two/);
  add("an alignment that is a UINT64", assemble([...header(0, 1), text("general.alignment"), u32(10), u64(32n)]), /'general.alignment' is UINT64; it must be UINT32/);

  add("a tensor of rank 0", assemble([...header(1, 0), info("t", [], 0, 0)]), /tensor 't' has 0 dimensions; ggml tensors have 1 to 4/);
  add("a tensor of rank 5", assemble([...header(1, 0), info("t", [1, 1, 1, 1, 1], 0, 0)]), /tensor 't' has 5 dimensions/);
  add("an unknown ggml type", assemble([...header(1, 0), info("t", [4], 31, 0)]), /tensor 't' has ggml type 31, which this reader does not know \(known: F32, F16, Q4_0/);
  add("rows that are not whole blocks", assemble([...header(1, 0), info("t", [48, 2], 8, 0)]), /tensor 't': its rows of 48 elements are not whole Q8_0 blocks of 32/);
  add("an offset that is not aligned", assemble([...header(1, 0), info("t", [4], 0, 4)]), /tensor 't': its offset 4 is not a multiple of the alignment 32/);
  add("a tensor past the end", assemble([...header(1, 0), info("t", [32], 0, 0)], new Uint8Array(64)), /tensor 't': its 128 bytes at \d+ run past the end of the file/);
  add("a dimension of 2^60", assemble([...header(1, 0), info("t", [2 ** 30, 2 ** 30], 0, 0)]), /run past the end|more elements than can be counted/);
  add("two tensors overlapping", assemble([...header(2, 0), info("a", [16], 0, 0), info("b", [16], 0, 32)], new Uint8Array(128)), /tensor 'b' overlaps tensor 'a'/);
  add("a tensor twice", assemble([...header(2, 0), info("a", [4], 0, 0), info("a", [4], 0, 32)]), /tensor 'a' appears twice/);
  return cases;
}

describe("damaged GGUF files", () => {
  it("are each a GgufError naming the file and what is wrong", async () => {
    const cases = invalidCases();
    expect(cases.length).toBeGreaterThan(200);
    for (const [i, c] of cases.entries()) {
      const path = join(dir, `bad-${i}.gguf`);
      await writeFile(path, c.bytes);
      const failure = await GgufFile.open(path).then(
        async (f) => (await f.close(), null),
        (error: unknown) => error,
      );
      expect(failure, c.what).toBeInstanceOf(GgufError);
      expect((failure as Error).message, c.what).toContain(path);
      expect((failure as Error).message, c.what).toMatch(c.says);
    }
  });

  it("never fail any other way, under seeded random damage", async () => {
    const path = join(dir, "random.gguf");
    for (let round = 0; round < 300; round++) {
      const bytes = Uint8Array.from(SMALL);
      const edits = 1 + Math.floor(random() * 4);
      for (let e = 0; e < edits; e++) bytes[Math.floor(random() * bytes.byteLength)] = Math.floor(random() * 256);
      await writeFile(path, bytes);
      const outcome = await GgufFile.open(path).then(
        async (f) => (await f.close(), "opened"),
        (error: unknown) => error,
      );
      if (outcome !== "opened") expect(outcome, `round ${round} (seed ${SEED})`).toBeInstanceOf(GgufError);
    }
  });
});

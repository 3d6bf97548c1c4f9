/**
 * A few hundred corrupted safetensors files, generated from valid ones, each of which must end
 * in a SafetensorsError naming the file (and the tensor, when one is to blame): quickly, and
 * without allocating more than the file could justify. Then seeded random mutations, which may
 * or may not leave a valid file, and must never end any other way.
 */
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_HEADER_BYTES, SafetensorsError, SafetensorsFile } from "../src/weights/safetensors.js";
import { encodeSafetensorsHeader, type TensorToWrite } from "../src/weights/safetensors_writer.js";
import { rng, SEED } from "./helpers.js";
import { serializeSafetensors } from "./safetensors_helpers.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-fuzz-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const random = rng(SEED);
const bytesOf = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));

const TENSORS: Record<string, TensorToWrite> = {
  "w.f32": { dtype: "F32", shape: [3, 4], data: bytesOf(48) },
  "b.f16": { dtype: "F16", shape: [5], data: bytesOf(10) },
  "i.i64": { dtype: "I64", shape: [2], data: bytesOf(16) },
  "e.empty": { dtype: "F32", shape: [0, 3], data: new Uint8Array(0) },
  "s.u8": { dtype: "U8", shape: [], data: bytesOf(1) },
};
const METADATA = { format: "pt" };
const VALID = serializeSafetensors(TENSORS, METADATA);
const { header: VALID_HEADER } = encodeSafetensorsHeader(TENSORS, METADATA);
const DATA = VALID.subarray(VALID_HEADER.byteLength);
type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown; [field: string]: unknown };
/** The valid header as ordered [key, value] pairs (pairs, so a test can repeat a key). */
const PAIRS = Object.entries(JSON.parse(Buffer.from(VALID_HEADER.subarray(8)).toString("utf8"))) as [string, Entry][];
const ENTRY = Object.fromEntries(PAIRS) as Record<string, Entry>;

/** A file from a header text (or raw bytes), the data bytes, and optionally a lying length field. */
function assemble(header: string | Uint8Array, data: Uint8Array = DATA, length?: bigint): Uint8Array {
  const json = typeof header === "string" ? Buffer.from(header, "utf8") : header;
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

/** A header text from pairs; values are JSON-encoded unless given as raw text. */
function headerText(pairs: [string, unknown][], raw = false): string {
  return `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${raw ? v : JSON.stringify(v)}`).join(",")}}`;
}

/** The valid header with tensor `name`'s entry changed. */
function withEntry(name: string, change: (entry: Entry) => unknown): string {
  return headerText(PAIRS.map(([k, v]) => [k, k === name ? change({ ...v }) : v]));
}

interface Case {
  what: string;
  bytes: Uint8Array;
  /** What the message must say besides the file's path (the tensor's name, when one is to blame). */
  says: RegExp;
}

function invalidCases(): Case[] {
  const cases: Case[] = [];
  const add = (what: string, bytes: Uint8Array, says: RegExp = /./) => cases.push({ what, bytes, says });
  const headerLength = VALID_HEADER.byteLength - 8;

  // Truncated anywhere: inside the length field, the header, or any tensor's data.
  const tensorEnds = Object.values(ENTRY).flatMap((e) => (Array.isArray(e.data_offsets) ? e.data_offsets : []));
  const cuts = new Set<number>();
  for (let i = 0; i < VALID_HEADER.byteLength; i++) cuts.add(i);
  for (const o of tensorEnds as number[]) for (const d of [-1, 0, 1]) cuts.add(VALID_HEADER.byteLength + o + d);
  cuts.add(VALID.byteLength - 1);
  for (const cut of cuts) if (cut >= 0 && cut < VALID.byteLength) add(`truncated to ${cut} bytes`, VALID.subarray(0, cut));

  // The length field lying: 0, tiny, off by a few, past the end, over the limit, 2^63, 2^64-1.
  const lengths = [0n, 1n, 2n, 7n, 8n, BigInt(headerLength - 8), BigInt(headerLength - 1), BigInt(headerLength + 1),
    BigInt(headerLength + 8), BigInt(VALID.byteLength - 8), BigInt(VALID.byteLength - 7), BigInt(VALID.byteLength),
    BigInt(MAX_HEADER_BYTES), BigInt(MAX_HEADER_BYTES + 1), 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];
  for (const length of lengths) {
    add(`header length ${length}`, assemble(VALID_HEADER.subarray(8), DATA, length));
  }

  // Not JSON, or JSON but not an object.
  const notObjects = ["", " ", "{", "}", "{}}", "{,}", '{"a"}', '{"a":}', "{'a':1}", '{"a":1,}', "[]", "[{}]", '"text"', "null",
    "42", "true", "nan", "\u0000{}", "{}\u0000", "{/*c*/}", "\ufeff{}"];
  for (const text of notObjects) add(`header ${JSON.stringify(text)}`, assemble(text, new Uint8Array(0)), /header/);
  add("header padded with NULs", assemble(Buffer.concat([Buffer.from("{}"), Buffer.alloc(6)]), new Uint8Array(0)), /JSON/);
  add("header of the right length but the wrong text", assemble(" ".repeat(headerLength)), /JSON/);

  // Invalid UTF-8: a stray continuation byte, a truncated sequence, an overlong '/', a UTF-16 surrogate, 0xFF.
  for (const bad of [[0x80], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xff], [0xf4, 0x90, 0x80, 0x80]]) {
    const text = Buffer.from(headerText(PAIRS));
    const at = text.indexOf("w.f32") + 1; // inside a tensor name
    add(`invalid UTF-8 ${bad.map((b) => b.toString(16)).join(" ")}`, assemble(Buffer.concat([text.subarray(0, at), Buffer.from(bad), text.subarray(at)])), /UTF-8/);
  }

  // Nesting deep enough to break a recursive parser.
  for (const depth of [100, 100_000]) {
    add(`nested ${depth} deep in a value`, assemble(headerText([["deep", "[".repeat(depth) + "]".repeat(depth)]], true), new Uint8Array(0)), /nested/);
    add(`nested ${depth} deep in metadata`, assemble(headerText([["__metadata__", `{"k":${"[".repeat(depth)}${"]".repeat(depth)}}`]], true), new Uint8Array(0)), /nested/);
  }

  // Duplicate keys: a tensor, a field of an entry, __metadata__, a metadata key.
  add("a tensor named twice", assemble(headerText([...PAIRS, PAIRS.find(([k]) => k === "w.f32")!])), /duplicate key "w.f32"/);
  add("a tensor named twice, same entry", assemble(headerText([PAIRS[1], ...PAIRS.slice(1)])), /duplicate key/);
  add("dtype given twice", assemble(headerText(PAIRS.map(([k, v]) => [k, k === "b.f16" ? `{"dtype":"F16","dtype":"F16","shape":[5],"data_offsets":${JSON.stringify(v.data_offsets)}}` : JSON.stringify(v)]), true)), /duplicate key "dtype"/);
  add("__metadata__ twice", assemble(headerText([["__metadata__", METADATA], ...PAIRS])), /duplicate key "__metadata__"/);
  add("a metadata key twice", assemble(headerText(PAIRS.map(([k, v]) => [k, k === "__metadata__" ? '{"format":"pt","format":"np"}' : JSON.stringify(v)]), true)), /duplicate key "format"/);

  // __metadata__ of the wrong kind.
  for (const metadata of [[], "pt", 5, true, { format: 5 }, { format: null }, { format: {} }, { format: ["pt"] }]) {
    add(`__metadata__ ${JSON.stringify(metadata)}`, assemble(headerText(PAIRS.map(([k, v]) => [k, k === "__metadata__" ? metadata : v]))), /__metadata__/);
  }

  // Entries of the wrong kind, and each field missing or of the wrong type.
  for (const value of [null, [], "F32", 1, true]) add(`entry ${JSON.stringify(value)}`, assemble(withEntry("w.f32", () => value)), /tensor 'w\.f32'/);
  for (const field of ["dtype", "shape", "data_offsets"]) {
    add(`${field} missing`, assemble(withEntry("w.f32", (e) => ({ ...e, [field]: undefined }))), /tensor 'w\.f32'/);
    for (const value of [null, 5, "x", true, {}, [[]]]) {
      add(`${field} ${JSON.stringify(value)}`, assemble(withEntry("w.f32", (e) => ({ ...e, [field]: value }))), /tensor 'w\.f32'/);
    }
  }
  for (const dtype of ["f32", "F17", "", "float32", "F32 ", "__proto__", "constructor", "toString", "F4", "F8_E8M0", "C64"]) {
    add(`dtype ${JSON.stringify(dtype)}`, assemble(withEntry("b.f16", (e) => ({ ...e, dtype }))), /tensor 'b\.f16': unknown dtype/);
  }
  // Dtypes of another element size than the data was written for.
  for (const dtype of ["F64", "F32", "I8", "BOOL", "U64"]) {
    add(`dtype ${dtype} for F16 data`, assemble(withEntry("b.f16", (e) => ({ ...e, dtype }))), /tensor 'b\.f16': \d+ bytes of data, but/);
  }
  // Shapes: negative, fractional, huge, wrong element counts, strings inside.
  for (const shape of [[-1], [-3, 4], [1.5, 8], [3, 4.5], [2 ** 53], [2 ** 53, 0], [1e300], [3, "4"], [3, null], [4, 3, 2], [12, 1, 2], [13], [11], [3], [2 ** 26, 2 ** 26], [1e15, 1e15, 1e15]]) {
    add(`shape ${JSON.stringify(shape)}`, assemble(withEntry("w.f32", (e) => ({ ...e, shape }))), /tensor 'w\.f32'/);
  }
  // Offsets: wrong arity, negative, fractional, reversed, past the end, beyond 2^53, as strings.
  const [begin, end] = ENTRY["w.f32"].data_offsets as [number, number];
  for (const offsets of [[], [begin], [begin, end, end], [-1, end], [begin, -end], [begin + 0.5, end], [end, begin], [begin, DATA.byteLength + 1],
    [begin + 1e6, end + 1e6], [begin, 2 ** 53], [begin, 2 ** 64], [String(begin), end], [begin, null]]) {
    add(`data_offsets ${JSON.stringify(offsets)}`, assemble(withEntry("w.f32", (e) => ({ ...e, data_offsets: offsets }))), /tensor 'w\.f32'/);
  }

  add("data_offsets [begin, 1e400]", assemble(withEntry("w.f32", (e) => ({ ...e, data_offsets: [begin, 123456789] })).replace("123456789", "1e400")), /tensor 'w\.f32'/);

  // The layout: overlaps, gaps, a tensor missing from the header, trailing bytes, bytes missing.
  const bf16 = ENTRY["b.f16"].data_offsets as [number, number];
  add("two tensors on the same bytes", assemble(withEntry("b.f16", (e) => ({ ...e, data_offsets: [begin, begin + 10] }))), /overlaps/);
  add("overlap by one element", assemble(withEntry("b.f16", (e) => ({ ...e, data_offsets: [bf16[0] - 2, bf16[1] - 2] }))), /overlaps|belong to no tensor/);
  const one = (offsets: number[]) => ({ dtype: "F32", shape: [1], data_offsets: offsets });
  add("a gap between tensors", assemble(headerText([["a", one([0, 4])], ["b", one([8, 12])]]), bytesOf(12)), /tensor 'b': bytes \[4, 8\) of the data region before it belong to no tensor/);
  add("a gap before the first tensor", assemble(headerText([["a", one([4, 8])]]), bytesOf(8)), /tensor 'a': bytes \[0, 4\)/);
  for (const [name] of PAIRS.filter(([k]) => k !== "__metadata__" && k !== "e.empty")) {
    add(`tensor ${name} left out of the header`, assemble(headerText(PAIRS.filter(([k]) => k !== name))), /belong to no tensor|trailing/);
  }
  for (const extra of [1, 7, 8, 1000]) add(`${extra} trailing bytes`, assemble(headerText(PAIRS), Buffer.concat([DATA, bytesOf(extra)])), /trailing/);
  add("no tensors but data", assemble("{}", bytesOf(16)), /trailing/);
  add("a data region one byte short", assemble(headerText(PAIRS), DATA.subarray(0, DATA.byteLength - 1)), /tensor '/);
  return cases;
}

/**
 * Opens a file and reads every tensor. Fails the test if it takes over a second (a hang) or
 * if the process's ArrayBuffer memory grows by more than 64 MiB (an allocation sized by a lie).
 */
async function openAndReadAll(path: string): Promise<void> {
  const before = process.memoryUsage().arrayBuffers;
  let timer: NodeJS.Timeout | undefined;
  const work = (async () => {
    const file = await SafetensorsFile.open(path);
    try {
      for (const name of file.tensors.keys()) await file.readBytes(name);
    } finally {
      await file.close();
    }
  })();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${path}: no answer after 1 s (seed ${SEED})`)), 1000);
  });
  try {
    await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    const grown = process.memoryUsage().arrayBuffers - before;
    if (grown > 64 * 2 ** 20) throw new Error(`${path}: allocated ${grown} bytes (seed ${SEED})`);
  }
}

describe("corrupted safetensors files", () => {
  const cases = invalidCases();

  it("the valid file and its legal variants open", async () => {
    const legal: [string, Uint8Array][] = [
      ["as written", VALID],
      ["unpadded header", assemble(headerText(PAIRS))],
      ["pretty-printed header", assemble(JSON.stringify(Object.fromEntries(PAIRS), null, 2) + "\n\t\r ")],
      ["no __metadata__", assemble(headerText(PAIRS.filter(([k]) => k !== "__metadata__")))],
      ["__metadata__ null", assemble(headerText(PAIRS.map(([k, v]) => [k, k === "__metadata__" ? null : v])))],
      ["extra fields in an entry", assemble(withEntry("w.f32", (e) => ({ ...e, note: { any: [1] } })))],
      ["tensors listed in reverse", assemble(headerText([...PAIRS].reverse()))],
      ["escaped names", assemble(headerText(PAIRS).replace('"w.f32"', '"w\\u002ef32"'))],
      ["no tensors, no data", assemble("{}", new Uint8Array(0))],
    ];
    for (const [what, bytes] of legal) {
      const path = join(dir, `legal-${what.replaceAll(" ", "-")}.safetensors`);
      await writeFile(path, bytes);
      await expect(openAndReadAll(path), what).resolves.toBeUndefined();
    }
  });

  it(`${cases.length} invalid files each end in a SafetensorsError naming the file`, async () => {
    expect(cases.length).toBeGreaterThan(300);
    const started = performance.now();
    for (const [i, c] of cases.entries()) {
      const path = join(dir, `case-${i}.safetensors`);
      await writeFile(path, c.bytes);
      const error = await openAndReadAll(path).then(
        () => new Error(`opened without complaint`),
        (e: unknown) => e as Error,
      );
      const context = `case ${i} (${c.what}): ${error.message}`;
      expect(error, context).toBeInstanceOf(SafetensorsError);
      expect(error.message.startsWith(`${path}: `), context).toBe(true);
      expect(error.message, context).toMatch(c.says);
      expect(error.message.split("\n").length, context).toBe(1);
    }
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("a file truncated after it was opened fails the read, naming the tensor", async () => {
    const path = join(dir, "shrinks.safetensors");
    await writeFile(path, VALID);
    const file = await SafetensorsFile.open(path);
    await truncate(path, VALID.byteLength - 20);
    const last = [...file.tensors.values()].at(-1)!.name;
    await expect(file.readBytes(last)).rejects.toThrow(new RegExp(`shrinks\\.safetensors: tensor '${last.replace(".", "\\.")}': file ended early`));
    await file.close();
  });

  it("random mutations end in a valid file or a SafetensorsError, never anything else", async () => {
    for (let i = 0; i < 300; i++) {
      const bytes = VALID.slice();
      const kind = i % 3;
      let mutated: Uint8Array = bytes;
      if (kind === 0) {
        // Flip a few random bits, mostly in the length field and header.
        for (let k = 0; k < 1 + Math.floor(random() * 3); k++) {
          const at = Math.floor(random() * VALID_HEADER.byteLength * 1.1);
          bytes[Math.min(at, bytes.length - 1)] ^= 1 << Math.floor(random() * 8);
        }
      } else if (kind === 1) {
        // Overwrite a random header byte with a JSON-significant character.
        const at = 8 + Math.floor(random() * (VALID_HEADER.byteLength - 8));
        bytes[at] = '{}[]",:0123456789-.e '.charCodeAt(Math.floor(random() * 21));
      } else {
        // Insert or delete a random run of bytes.
        const at = Math.floor(random() * bytes.length);
        const n = 1 + Math.floor(random() * 8);
        mutated = random() < 0.5 ? Buffer.concat([bytes.subarray(0, at), bytesOf(n), bytes.subarray(at)]) : Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + n)]);
      }
      const path = join(dir, `mutation-${i}.safetensors`);
      await writeFile(path, mutated);
      const error = await openAndReadAll(path).then(() => undefined, (e: unknown) => e as Error);
      if (error) {
        expect(error, `mutation ${i}: ${error.message} (seed ${SEED})`).toBeInstanceOf(SafetensorsError);
        expect(error.message.startsWith(`${path}: `)).toBe(true);
      }
    }
  });
});

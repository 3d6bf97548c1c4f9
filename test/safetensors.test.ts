import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { f16BitsToF32 } from "../src/tensor/dtype.js";
import { SAFETENSORS_DTYPES, SafetensorsError, SafetensorsFile, type SafetensorsDType } from "../src/weights/safetensors.js";
import { encodeSafetensorsHeader, writeSafetensors, type TensorToWrite } from "../src/weights/safetensors_writer.js";
import { rng, SEED } from "./helpers.js";
import { readAllFloat32, serializeSafetensors } from "./safetensors_helpers.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-safetensors-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const DTYPES = Object.keys(SAFETENSORS_DTYPES) as SafetensorsDType[];

/** Random bytes for a tensor of this dtype and shape. */
function randomTensor(random: () => number, dtype: SafetensorsDType, shape: number[]): TensorToWrite {
  const count = shape.reduce((n, d) => n * d, 1);
  const bytes = Uint8Array.from({ length: count * SAFETENSORS_DTYPES[dtype] }, () => Math.floor(random() * 256));
  if (dtype === "BOOL") bytes.forEach((b, i) => (bytes[i] = b & 1));
  return { dtype, shape, data: bytes };
}

/** What each element of raw bytes means, decoded independently of the reader (DataView, f16BitsToF32). */
function decodeReference(bytes: Uint8Array, dtype: SafetensorsDType): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = SAFETENSORS_DTYPES[dtype];
  return Array.from({ length: bytes.byteLength / size }, (_, i) => {
    const o = i * size;
    switch (dtype) {
      case "F64": return view.getFloat64(o, true);
      case "F32": return view.getFloat32(o, true);
      case "F16": return f16BitsToF32(view.getUint16(o, true));
      case "BF16": return new Float32Array(new Uint32Array([view.getUint16(o, true) << 16]).buffer)[0];
      case "I64": return Number(view.getBigInt64(o, true));
      case "U64": return Number(view.getBigUint64(o, true));
      case "I32": return view.getInt32(o, true);
      case "U32": return view.getUint32(o, true);
      case "I16": return view.getInt16(o, true);
      case "U16": return view.getUint16(o, true);
      case "I8": return view.getInt8(o);
      default: return view.getUint8(o);
    }
  });
}

describe("safetensors writer and reader", () => {
  const random = rng(SEED);

  it("round-trips every dtype, including scalars and empty tensors", async () => {
    const tensors: Record<string, TensorToWrite> = {};
    for (const dtype of DTYPES) {
      tensors[`t.${dtype}`] = randomTensor(random, dtype, [3, 5]);
      tensors[`scalar.${dtype}`] = randomTensor(random, dtype, []);
      tensors[`empty.${dtype}`] = randomTensor(random, dtype, [4, 0, 2]);
    }
    const path = join(dir, "all-dtypes.safetensors");
    await writeSafetensors(path, tensors, { format: "pt", note: "ünïcode ✓" });
    const file = await SafetensorsFile.open(path);
    try {
      expect(file.metadata).toEqual({ format: "pt", note: "ünïcode ✓" });
      expect([...file.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
      expect(file.dataStart % 8).toBe(0);
      for (const [name, t] of Object.entries(tensors)) {
        const entry = file.entry(name);
        expect(entry.dtype).toBe(t.dtype);
        expect(entry.shape).toEqual(t.shape);
        const bytes = await file.readBytes(name);
        expect(bytes).toEqual(t.data);
        if (!t.dtype.startsWith("F8")) {
          const { data } = await file.readFloat32(name);
          expect(Array.from(data)).toEqual(decodeReference(bytes, t.dtype).map(Math.fround));
        }
        if (/^(I|U|BOOL)/.test(t.dtype) && !/64/.test(t.dtype)) {
          expect((await file.readIntegers(name)).data).toEqual(decodeReference(bytes, t.dtype));
        }
      }
    } finally {
      await file.close();
    }
  });

  it("writes the header, then the tensors' bytes back to back in its order, each aligned to its element size", async () => {
    const tensors: Record<string, TensorToWrite> = {
      "b.bool": randomTensor(random, "BOOL", [7]),
      "a.f64": randomTensor(random, "F64", [3]),
      "c.f16": randomTensor(random, "F16", [5]),
      "d.f32": randomTensor(random, "F32", [2, 3]),
    };
    const path = join(dir, "order.safetensors");
    await writeSafetensors(path, tensors);
    const written = new Uint8Array(await readFile(path));
    expect(written).toEqual(serializeSafetensors(tensors));
    const file = await SafetensorsFile.open(path);
    // Descending alignment, then name: F64, F32, F16, BOOL.
    expect([...file.tensors.keys()]).toEqual(["a.f64", "d.f32", "c.f16", "b.bool"]);
    for (const entry of file.tensors.values()) expect(entry.begin % SAFETENSORS_DTYPES[entry.dtype]).toBe(0);
    await file.close();
  });

  it("is independent of the order tensors and metadata are given in", () => {
    const a = { x: randomTensor(random, "F32", [2]), y: randomTensor(random, "F32", [3]) };
    const one = serializeSafetensors({ x: a.x, y: a.y }, { k1: "1", k2: "2" });
    const two = serializeSafetensors({ y: a.y, x: a.x }, { k2: "2", k1: "1" });
    expect(one).toEqual(two);
  });

  it("writes the exact header Python's safetensors wrote for the golden checkpoints", async () => {
    for (const model of ["tiny-llava-a", "tiny-llava-b", "text-only-c"]) {
      const original = await readFile(new URL(`./fixtures/weights/${model}/header.json`, import.meta.url));
      const parsed = JSON.parse(original.toString("utf8")) as Record<string, { dtype: SafetensorsDType; shape: number[] }>;
      const tensors: Record<string, TensorToWrite> = {};
      for (const [name, info] of Object.entries(parsed)) {
        if (name === "__metadata__") continue;
        const count = info.shape.reduce((n, d) => n * d, 1);
        tensors[name] = { dtype: info.dtype, shape: info.shape, data: new Uint8Array(count * SAFETENSORS_DTYPES[info.dtype]) };
      }
      const { header } = encodeSafetensorsHeader(tensors, { format: "pt" });
      expect(Buffer.from(header.subarray(8)).toString("utf8"), model).toBe(original.toString("utf8"));
      expect(new DataView(header.buffer).getBigUint64(0, true)).toBe(BigInt(original.byteLength));
    }
  });

  it("refuses tensors it cannot write, naming them", async () => {
    const bad: [Record<string, TensorToWrite>, RegExp][] = [
      [{ w: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } }, /tensor 'w': 12 bytes of data, but F32 \[2, 2\] needs 16/],
      [{ w: { dtype: "F17" as SafetensorsDType, shape: [1], data: new Float32Array(1) } }, /tensor 'w': unknown dtype "F17"/],
      [{ w: { dtype: "F32", shape: [-1], data: new Float32Array(1) } }, /tensor 'w': shape \[-1\]/],
      [{ __metadata__: { dtype: "F32", shape: [1], data: new Float32Array(1) } }, /reserved/],
    ];
    for (const [tensors, message] of bad) {
      await expect(writeSafetensors(join(dir, "bad.safetensors"), tensors)).rejects.toThrow(message);
    }
  });

  it("reads an empty file of no tensors and reuses a caller's buffer", async () => {
    const path = join(dir, "empty.safetensors");
    await writeSafetensors(path, {});
    // The reference writes exactly this for no tensors and no metadata.
    expect(new Uint8Array(await readFile(path))).toEqual(new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]));
    const file = await SafetensorsFile.open(path);
    expect(file.tensors.size).toBe(0);
    await file.close();

    const data = Float32Array.from([1.5, -2, 3.25]);
    await writeSafetensors(path, { w: { dtype: "F32", shape: [3], data } });
    const again = await SafetensorsFile.open(path);
    const scratch = new Uint8Array(64);
    const view = await again.readBytes("w", scratch);
    expect(view.buffer).toBe(scratch.buffer);
    expect(Array.from(new Float32Array(view.slice().buffer))).toEqual([1.5, -2, 3.25]);
    const part = new Uint8Array(4);
    await again.readInto("w", 8, part);
    expect(new Float32Array(part.buffer)[0]).toBe(3.25);
    await expect(again.readInto("w", 10, part)).rejects.toThrow(/tensor 'w': cannot read bytes \[10, 14\) of its 12/);
    await expect(again.readBytes("nope")).rejects.toThrow(/no tensor named 'nope'/);
    expect((await readAllFloat32(path)).get("w")!.data).toEqual(data);
    await again.close();
    await again.close(); // idempotent
    await expect(again.readBytes("w")).rejects.toThrow(SafetensorsError);
  });

  it("decodes 8-bit floats", async () => {
    const path = join(dir, "fp8.safetensors");
    // E4M3: 0x38 = 1.0, 0x7e = 448 (the largest), 0x7f = NaN, 0x01 = 2^-9; E5M2: 0x3c = 1.0, 0x7c = Inf, 0x01 = 2^-16.
    await writeSafetensors(path, {
      e4: { dtype: "F8_E4M3", shape: [5], data: Uint8Array.from([0x38, 0x7e, 0x7f, 0x01, 0xb8]) },
      e5: { dtype: "F8_E5M2", shape: [4], data: Uint8Array.from([0x3c, 0x7c, 0x01, 0xfc]) },
    });
    const all = await readAllFloat32(path);
    expect(Array.from(all.get("e4")!.data)).toEqual([1, 448, NaN, 2 ** -9, -1]);
    expect(Array.from(all.get("e5")!.data)).toEqual([1, Infinity, 2 ** -16, -Infinity]);
  });

  it("names the file when it cannot be opened", async () => {
    await expect(SafetensorsFile.open(join(dir, "missing.safetensors"))).rejects.toThrow(/missing\.safetensors: cannot open \(ENOENT\)/);
    await expect(SafetensorsFile.open(dir)).rejects.toThrow(/not a regular file/);
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]); // opening it would wait for a writer forever
    await expect(SafetensorsFile.open(fifo)).rejects.toThrow(`${fifo}: not a regular file`);
    await writeFile(join(dir, "short"), new Uint8Array(3));
    await expect(SafetensorsFile.open(join(dir, "short"))).rejects.toThrow(/short: file is 3 bytes/);
  });

  it("says a text file given as a checkpoint is not a safetensors file", async () => {
    await writeFile(join(dir, "README.md"), "# wgsl-vlm\n\nA GPU tensor runtime written from scratch.\n");
    await expect(SafetensorsFile.open(join(dir, "README.md"))).rejects.toThrow(/README\.md: not a safetensors file, or a corrupt one/);
  });
});

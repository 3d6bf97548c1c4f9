import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { f16BitsToF32, f32ToF16Bits } from "../src/tensor/dtype.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { bf16ToF16, bf16ToF32, f16ToF32, f32ToF16 } from "../src/weights/convert.js";
import { SafetensorsFile, type SafetensorsDType } from "../src/weights/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../src/weights/safetensors_writer.js";
import { WeightUploader, WeightUploadError, type TensorSource } from "../src/weights/upload.js";
import { bf16ToF16InPlace, toF16 } from "../src/kernels/to_f16.js";
import { randn, rng, SEED, testGpu } from "./helpers.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-upload-"));
afterAll(() => rm(dir, { recursive: true, force: true }));
const random = rng(SEED);

const bitsToF32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0];

/** Float32 bit patterns at every exponent, with the mantissas where rounding decides: ties, near-ties, carries. */
function interestingF32Bits(): Uint32Array {
  const mantissas = [0, 1, 2, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2fff, 0x3000, 0x3001, 0x7fe000, 0x7ff000, 0x7fefff, 0x7fffff, 0x400000];
  const out: number[] = [];
  for (let exponent = 0; exponent < 256; exponent++) {
    for (const sign of [0, 0x80000000]) {
      for (const m of mantissas) out.push((sign | (exponent << 23) | m) >>> 0);
      for (let k = 0; k < 16; k++) out.push((sign | (exponent << 23) | Math.floor(random() * 0x800000)) >>> 0);
    }
  }
  return Uint32Array.from(out);
}

describe("float conversions", () => {
  it("f32 → f16 matches dtype.ts's f32ToF16Bits on every exponent and rounding case", () => {
    const bits = interestingF32Bits();
    const out = new Uint16Array(bits.length);
    f32ToF16(bits, out);
    for (let i = 0; i < bits.length; i++) {
      const value = bitsToF32(bits[i]);
      if (Number.isNaN(value)) {
        expect(out[i] & 0x7fff, `NaN ${bits[i].toString(16)}`).toBe(0x7e00);
        continue;
      }
      if (out[i] !== f32ToF16Bits(value)) {
        throw new Error(`f32 bits ${bits[i].toString(16)}: got ${out[i].toString(16)}, expected ${f32ToF16Bits(value).toString(16)} (seed ${SEED})`);
      }
    }
  });

  it("bf16 → f16 rounds once from the exact value, bf16 → f32 and f16 → f32 are exact", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const f16 = new Uint16Array(65536);
    bf16ToF16(all, f16);
    const f32 = new Uint32Array(65536);
    bf16ToF32(all, f32);
    const widened = new Float32Array(65536);
    f16ToF32(all, widened);
    const mismatches: string[] = [];
    for (let i = 0; i < 65536; i++) {
      const value = bitsToF32(i << 16);
      if (f32[i] !== (i << 16) >>> 0) mismatches.push(`bf16 ${i.toString(16)} → f32 ${f32[i].toString(16)}`);
      const half = Number.isNaN(value) ? (f16[i] & 0x7fff) === 0x7e00 : f16[i] === f32ToF16Bits(value);
      if (!half) mismatches.push(`bf16 ${i.toString(16)} → f16 ${f16[i].toString(16)}`);
      if (!Object.is(widened[i], Math.fround(f16BitsToF32(i))) && !Number.isNaN(widened[i])) mismatches.push(`f16 ${i.toString(16)} → ${widened[i]}`);
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
  });
});

describe("uploading checkpoint tensors", async () => {
  const gpu = await testGpu();
  const targets = gpu.hasF16 ? (["f32", "f16"] as const) : (["f32"] as const);

  /** A tensor's values in a source dtype, as bytes, and what each element is exactly. */
  function sourceTensor(dtype: "F32" | "F16" | "BF16", shape: number[]): { tensor: TensorToWrite; values: Float64Array } {
    const count = shape.reduce((n, d) => n * d, 1);
    const raw = randn(random, count, 3);
    // A few values where rounding and range matter: f16 overflow, subnormals, ties.
    const specials = [65519, 65520, 1e6, -1e6, 2 ** -20, 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 0, -0];
    specials.forEach((v, i) => i < count && (raw[(i * 7) % count] = v));
    if (dtype === "F32") {
      const data = Float32Array.from(raw);
      return { tensor: { dtype, shape, data }, values: Float64Array.from(data) };
    }
    const bits = dtype === "F16"
      ? Uint16Array.from(raw, (v) => f32ToF16Bits(v))
      : Uint16Array.from(raw, (v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16); // bf16 by truncation
    const values = Float64Array.from(bits, (b) => (dtype === "F16" ? f16BitsToF32(b) : bitsToF32(b << 16)));
    return { tensor: { dtype, shape, data: bits }, values };
  }

  /** What the GPU holds for `values` stored as `to`. */
  const stored = (values: Float64Array, to: "f32" | "f16") =>
    to === "f32" ? Float32Array.from(values) : Float32Array.from(values, (v) => f16BitsToF32(f32ToF16Bits(v)));

  it.skipIf(!gpu.hasF16)("converts BF16 and F32 to f16 on the GPU exactly as on the CPU, odd counts included", async () => {
    for (const shape of [[37, 14], [37, 13], [1]]) {
      const sources = { F32: sourceTensor("F32", shape), BF16: sourceTensor("BF16", shape) };
      const path = join(dir, `gpu-${shape.join("x")}.safetensors`);
      await writeSafetensors(path, Object.fromEntries(Object.entries(sources).map(([k, v]) => [k, v.tensor])));
      const file = await SafetensorsFile.open(path);
      for (const chunkBytes of [16, 72, 1 << 20]) {
        const launches = { toF16: 0, inPlace: 0 };
        const uploader = new WeightUploader(gpu, chunkBytes, {
          toF16: (...args) => (launches.toF16++, toF16(...args)),
          bf16ToF16InPlace: (...args) => (launches.inPlace++, bf16ToF16InPlace(...args)),
        });
        for (const [name, { values }] of Object.entries(sources)) {
          const t = await uploader.upload(file, name, { dtype: "f16" });
          expect(Array.from(await t.read()), `${name} → f16 on the GPU, ${shape.join("×")}, chunks of ${chunkBytes} bytes`).toEqual(Array.from(stored(values, "f16")));
          t.dispose();
        }
        const count = shape.reduce((n, d) => n * d, 1);
        // BF16 in one launch, where it lies, whatever the count; F32 a launch per chunk, and in
        // JavaScript when the count is odd (its last word would be half an element).
        const perChunk = Math.floor(chunkBytes / 8) * 2;
        expect(launches, `${count} elements, chunks of ${chunkBytes} bytes`).toEqual({ inPlace: 1, toF16: count % 2 === 0 ? Math.ceil(count / perChunk) : 0 });
        uploader.dispose();
      }
    }
  });

  it("uploads F32, F16 and BF16 as f32 and f16, exactly, in chunks of every size", async () => {
    const shape = [37, 13]; // 481 elements: no chunk size divides it
    const sources = { F32: sourceTensor("F32", shape), F16: sourceTensor("F16", shape), BF16: sourceTensor("BF16", shape) };
    const path = join(dir, "floats.safetensors");
    await writeSafetensors(path, Object.fromEntries(Object.entries(sources).map(([k, v]) => [k, v.tensor])));
    const file = await SafetensorsFile.open(path);
    for (const chunkBytes of [16, 40, 1024, 1 << 20]) {
      const uploader = new WeightUploader(gpu, chunkBytes);
      for (const [name, { values }] of Object.entries(sources)) {
        for (const to of targets) {
          const t = await uploader.upload(file, name, { dtype: to });
          expect(t.shape).toEqual(shape);
          expect(t.dtype).toBe(to);
          expect(t.name).toBe(name);
          expect(Array.from(await t.read()), `${name} → ${to}, chunks of ${chunkBytes} bytes`).toEqual(Array.from(stored(values, to)));
          t.dispose();
        }
      }
    }
    // Overlapping calls on one uploader take turns with its buffers.
    const uploader = new WeightUploader(gpu, 64);
    const names = Object.keys(sources) as (keyof typeof sources)[];
    const tensors = await Promise.all(names.map((name) => uploader.upload(file, name, { dtype: "f32" })));
    for (const [i, t] of tensors.entries()) expect(Array.from(await t.read()), names[i]).toEqual(Array.from(stored(sources[names[i]].values, "f32")));
    await file.close();
  });

  it("uploads a row range of the leading dimension, scalars and empty tensors", async () => {
    const { tensor, values } = sourceTensor("BF16", [9, 5, 3]);
    const path = join(dir, "rows.safetensors");
    await writeSafetensors(path, {
      w: tensor,
      scalar: { dtype: "F32", shape: [], data: Float32Array.from([2.5]) },
      empty: { dtype: "F16", shape: [0, 4], data: new Uint16Array(0) },
    });
    const file = await SafetensorsFile.open(path);
    const uploader = new WeightUploader(gpu, 64);
    for (const to of targets) {
      for (const [start, end] of [[0, 9], [2, 7], [8, 9], [4, 4]] as const) {
        const t = await uploader.upload(file, "w", { dtype: to, rows: [start, end] });
        expect(t.shape).toEqual([end - start, 5, 3]);
        expect(t.name).toBe(`w[${start}:${end}]`);
        expect(Array.from(await t.read()), `rows [${start}, ${end}) as ${to}`).toEqual(Array.from(stored(values.subarray(start * 15, end * 15), to)));
        t.dispose();
      }
    }
    const scalar = await uploader.upload(file, "scalar", { dtype: "f32", name: "s" });
    expect(scalar.shape).toEqual([]);
    expect(scalar.name).toBe("s");
    expect(Array.from(await scalar.read())).toEqual([2.5]);
    const empty = await uploader.upload(file, "empty", { dtype: "f32" });
    expect(empty.shape).toEqual([0, 4]);
    const defaultChunks = await new WeightUploader(gpu).upload(file, "w", { dtype: "f32" });
    expect(Array.from(await defaultChunks.read())).toEqual(Array.from(stored(values, "f32")));
    const checkpoint = await Checkpoint.open(path); // a Checkpoint is a source too
    const viaCheckpoint = await uploader.upload(checkpoint, "w", { dtype: "f32", rows: [1, 2] });
    expect(Array.from(await viaCheckpoint.read())).toEqual(Array.from(stored(values.subarray(15, 30), "f32")));
    await checkpoint.close();
    expect(uploader.bytesRead).toBeGreaterThan(0);

    await expect(uploader.upload(file, "w", { dtype: "f32", rows: [5, 10] })).rejects.toThrow(/tensor 'w': rows \[5, 10\) are outside its 9 rows/);
    await expect(uploader.upload(file, "w", { dtype: "f32", rows: [3, 2] })).rejects.toThrow(/rows \[3, 2\)/);
    await expect(uploader.upload(file, "scalar", { dtype: "f32", rows: [0, 1] })).rejects.toThrow(/tensor 'scalar' is a scalar/);
    await file.close();
  });

  it("refuses non-float dtypes and oversized tensors, naming the tensor", async () => {
    const path = join(dir, "ints.safetensors");
    await writeSafetensors(path, {
      ids: { dtype: "I64", shape: [2], data: new BigInt64Array(2) },
      f64: { dtype: "F64", shape: [2], data: new Float64Array(2) },
    });
    const file = await SafetensorsFile.open(path);
    const uploader = new WeightUploader(gpu);
    await expect(uploader.upload(file, "ids", { dtype: "f32" })).rejects.toThrow(WeightUploadError);
    await expect(uploader.upload(file, "ids", { dtype: "f32" })).rejects.toThrow(`${path}: tensor 'ids' is I64; only F32, F16 and BF16`);
    await expect(uploader.upload(file, "f64", { dtype: "f16" })).rejects.toThrow(/tensor 'f64' is F64/);
    await expect(uploader.upload(file, "nope", { dtype: "f32" })).rejects.toThrow(/no tensor named 'nope'/);
    await file.close();

    // A tensor bigger than one GPU buffer is refused before anything is read or allocated.
    const huge: TensorSource = {
      path: "huge.safetensors",
      entry: () => ({ dtype: "BF16" as SafetensorsDType, shape: [gpu.limits.maxBufferSize / 4 + 1, 4] }),
      readInto: () => Promise.reject(new Error("must not read")),
    };
    await expect(uploader.upload(huge, "big", { dtype: "f32" })).rejects.toThrow(/huge\.safetensors: tensor 'big': \d+ bytes as f32 is over this GPU's maxBufferSize .*upload it in row ranges/);
  });

  it("disposes the half-built tensor and reports the file when a read fails midway", async () => {
    let reads = 0;
    const failing: TensorSource = {
      path: "flaky.safetensors",
      entry: () => ({ dtype: "F32" as SafetensorsDType, shape: [64, 64] }),
      readInto: async (name) => {
        if (++reads === 3) throw new Error(`flaky.safetensors: tensor '${name}': read failed`);
      },
    };
    const live = gpu.memory().liveBytes;
    await expect(new WeightUploader(gpu, 1024).upload(failing, "w", { dtype: "f32" })).rejects.toThrow(/flaky\.safetensors: tensor 'w': read failed/);
    expect(gpu.memory().liveBytes).toBe(live);
  });
});

/**
 * Raw BF16 and F32 checkpoint bytes → f16 on the GPU (src/kernels/to_f16.ts): bit for bit the
 * CPU's rounding (to nearest even, overflow to ±Infinity, NaN kept a NaN) on F32 values around
 * every boundary, written at an offset without touching the rest; and BF16 converted where it
 * lies, every value, in tensors of every length modulo a vector.
 */
import { describe, expect, it } from "vitest";
import { bf16ToF16InPlace, toF16, toF16Reference } from "../src/kernels/to_f16.js";
import { bf16ToF16, f32ToF16 } from "../src/weights/convert.js";
import { f16BitsToF32 } from "../src/tensor/dtype.js";
import { rng, testGpu } from "./helpers.js";

describe("toF16", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** The f16 values the GPU wrote, as numbers (the read widens each half exactly). */
  async function convert(raw: Uint8Array, count: number, outWord = 0, outSize = count): Promise<ArrayLike<number>> {
    const words = count / 2;
    const input = gpu.empty([raw.byteLength / 4], "u32", { name: "raw" });
    gpu.write(input, raw);
    const out = gpu.empty([outSize], "f16", { name: "out" }); // poisoned: NaN where nothing is written
    toF16(input, out, words, outWord);
    return out.read();
  }
  /** Equal as halves: the same value, -0 apart from +0, NaN only as NaN. */
  const expectHalves = (got: ArrayLike<number>, bits: ArrayLike<number>, what: string) => {
    for (let i = 0; i < bits.length; i++) {
      const want = f16BitsToF32(bits[i]);
      if (!Object.is(got[i], want) && !(Number.isNaN(got[i]) && Number.isNaN(want))) expect(got[i], `${what}: element ${i}`).toBe(want);
    }
  };

  it("rounds F32 to nearest even at every boundary, and random bit patterns as the CPU does", async () => {
    const f = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];
    const special = [0, -0, 1, -1, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -24, 1.5 * 2 ** -24, 2.5 * 2 ** -24, 2 ** -14, 2 ** -14 * 0.99999, 65504, 65519.99, 65520, 1e30, -1e30, Infinity, -Infinity, 1e-40, -1e-45, 1 + 2 ** -11, 1 + 3 * 2 ** -11].map(f);
    special.push(0x7fc00000, 0x7f800001, 0xffc00001, 0x7f7fffff, 0x00000001, 0x33000000, 0x33000001, 0x387fffff);
    const bits = new Uint32Array(4096);
    bits.set(special);
    for (let i = special.length; i < bits.length; i++) bits[i] = Math.floor(random() * 2 ** 32) >>> 0;
    const got = await convert(new Uint8Array(bits.buffer), bits.length);
    const cpu = new Uint16Array(bits.length);
    f32ToF16(bits, cpu);
    expectHalves(got, cpu, "F32");
    expectHalves(got, toF16Reference(new Uint8Array(bits.buffer), "F32", bits.length), "F32 against the reference");
  });

  it("writes its words at an offset and nowhere else", async () => {
    const values = new Float32Array([1, 2, -1, 0]);
    const got = await convert(new Uint8Array(values.buffer), 4, 3, 12);
    expect(Array.from(got).slice(6, 10)).toEqual([1, 2, -1, 0]);
    for (const i of [0, 1, 2, 3, 4, 5, 10, 11]) expect(got[i], `element ${i} untouched (poisoned)`).toBeNaN();
  });

  it("refuses what it cannot do", () => {
    const raw = gpu.empty([4], "u32");
    const out = gpu.empty([8], "f16");
    expect(() => toF16(raw, gpu.empty([8], "f32"), 2)).toThrow(/must be f16/);
    expect(() => toF16(raw, out, 4)).toThrow(/overrun raw/); // 8 F32 values are 8 words
    expect(() => toF16(raw, out, 2, 3)).toThrow(/overrun out/);
  });

  describe("bf16ToF16InPlace", () => {
    /** A persistent f16 tensor holding `bits` as raw BF16, converted in place and read back. */
    async function convertInPlace(bits: Uint16Array): Promise<ArrayLike<number>> {
      const x = gpu.empty([bits.length], "f16", { name: "weight", persistent: true });
      gpu.write(x, new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
      bf16ToF16InPlace(x);
      const got = await x.read();
      x.dispose();
      return got;
    }

    it("gives every BF16 value the CPU's f16", async () => {
      // Shuffled, so every vector mixes normal values with zeros, subnormals, Inf and NaN.
      const all = new Uint16Array(65536).map((_, i) => i);
      for (let i = all.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [all[i], all[j]] = [all[j], all[i]];
      }
      const got = await convertInPlace(all);
      const cpu = new Uint16Array(all.length);
      bf16ToF16(all, cpu);
      expectHalves(got, toF16Reference(new Uint8Array(all.buffer), "BF16", all.length), "against the reference");
      expectHalves(got, cpu, "against the loader's CPU conversion");
    });

    it("converts tensors of every length modulo a vector", async () => {
      for (const length of [1, 2, 3, 7, 8, 9, 15, 16, 17, 1001]) {
        const bits = Uint16Array.from({ length }, () => Math.floor(random() * 65536));
        const want = toF16Reference(new Uint8Array(bits.buffer), "BF16", length);
        expectHalves(await convertInPlace(bits), want, `${length} values`);
      }
    });

    it("refuses what it cannot do", () => {
      expect(() => bf16ToF16InPlace(gpu.empty([8], "f32"))).toThrow(/must be an f16 tensor holding BF16 bytes/);
    });
  });
});

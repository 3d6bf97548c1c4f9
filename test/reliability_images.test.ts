/**
 * Reliability of image decoding: an image's format is decided from its first bytes before sharp
 * sees them, so only JPEG, PNG, WebP, GIF and TIFF ever reach a decoder (an SVG never reaches
 * librsvg and libxml2, a HEIF never libheif), for paths and Buffers alike; and a GIF's logical
 * screen, the size PIL gives it, obeys the pixel limit like every other image's size.
 *
 * sharp is wrapped to count its calls, so each refusal is shown to happen before it.
 */
import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import sharp from "sharp";
import { afterAll, describe, expect, it, vi } from "vitest";
import { decodeImage } from "../src/image/decode.js";

const sharpCalls = vi.hoisted(() => ({ count: 0 }));
vi.mock("sharp", async (importOriginal) => {
  const real = (await importOriginal<typeof import("sharp")>()).default;
  const counted = (...args: Parameters<typeof real>) => {
    sharpCalls.count++;
    return real(...args);
  };
  return { default: Object.assign(counted, real) };
});

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-reliability-images-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Decoding `bytes` fails with `message`, and sharp is never called. */
async function refusedBeforeSharp(bytes: Uint8Array, message: RegExp, options: { maxPixels?: number } = {}): Promise<void> {
  const before = sharpCalls.count;
  await expect(decodeImage(bytes, { name: "input", ...options })).rejects.toThrow(message);
  const path = join(dir, "input"); // named as the Buffer is
  await writeFile(path, bytes);
  await expect(decodeImage(path, options)).rejects.toThrow(message);
  expect(sharpCalls.count - before, "sharp saw the bytes").toBe(0);
}

const text = (s: string) => new TextEncoder().encode(s);
const SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>';

const u16 = (n: number) => [n & 255, n >> 8];
/**
 * A GIF: a `width` x `height` logical screen with a two-colour global palette
 * ([10, 20, 30], [200, 210, 220]) and one 1x1 frame of colour index 1 at (left, top). The LZW
 * data is clear (4), 1, end (5) in 3-bit codes: 0x4c 0x01.
 */
function gif(width: number, height: number, left = 0, top = 0): Uint8Array {
  const screen = [...u16(width), ...u16(height), 0x80, 0, 0, 10, 20, 30, 200, 210, 220];
  const frame = [0x2c, ...u16(left), ...u16(top), ...u16(1), ...u16(1), 0, 2, 2, 0x4c, 0x01, 0];
  return Uint8Array.from([...text("GIF89a"), ...screen, ...frame, 0x3b]);
}

describe("image formats", () => {
  const solid = () => sharp({ create: { width: 5, height: 3, channels: 3, background: { r: 10, g: 200, b: 30 } } });

  it("accepts each raster format it decodes, from a path and from a Buffer", async () => {
    const encoded: [string, Buffer][] = [
      ["jpeg", await solid().jpeg().toBuffer()],
      ["png", await solid().png().toBuffer()],
      ["webp", await solid().webp({ lossless: true }).toBuffer()],
      ["gif", await solid().gif().toBuffer()],
      ["tiff", await solid().tiff().toBuffer()],
      ["tiff", await solid().tiff({ bigtiff: true }).toBuffer()],
    ];
    for (const [format, bytes] of encoded) {
      const path = join(dir, `solid.${format}`);
      await writeFile(path, bytes);
      for (const input of [bytes, new Uint8Array(bytes), path]) {
        const image = await decodeImage(input);
        expect({ format: image.format, width: image.width, height: image.height }).toEqual({ format, width: 5, height: 3 });
      }
    }
  });

  it("refuses SVG, however it starts, before librsvg sees it", async () => {
    await refusedBeforeSharp(text(SVG), /input: svg images are not supported \(only JPEG, PNG, WebP, GIF or TIFF\)/);
    await refusedBeforeSharp(text(`<?xml version="1.0" encoding="UTF-8"?>\n<!-- drawn -->\n${SVG}`), /svg images are not supported/);
    await refusedBeforeSharp(Uint8Array.from([0xef, 0xbb, 0xbf, ...text(`  \n\t${SVG}`)]), /svg images are not supported/);
    await refusedBeforeSharp(gzipSync(SVG), /gzip images are not supported/);
  });

  it("refuses PDF, HEIF/AVIF, JPEG 2000 and JPEG XL by name", async () => {
    await refusedBeforeSharp(text("%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"), /input: pdf images are not supported/);
    await refusedBeforeSharp(await solid().avif().toBuffer(), /input: heif images are not supported/);
    await refusedBeforeSharp(Uint8Array.from([0, 0, 0, 0x18, ...text("ftypheic"), 0, 0, 0, 0, ...text("mif1heic")]), /heif images are not supported/);
    await refusedBeforeSharp(Uint8Array.from([0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]), /jp2 images are not supported/);
    await refusedBeforeSharp(Uint8Array.from([0xff, 0x0a, 0xfa, 0x7f, 0x01, 0x90]), /jxl images are not supported/);
  });

  it("refuses BMP clearly: PIL opens it, this decoder cannot", async () => {
    const bmp = Uint8Array.from([...text("BM"), 58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0, ...new Array(28).fill(0)]);
    await refusedBeforeSharp(bmp, /input: not an image in a supported format \(JPEG, PNG, WebP, GIF or TIFF\): a BMP, which PIL opens but sharp \(libvips\) cannot decode; convert it to PNG/);
  });

  it("refuses anything else, saying what it starts with", async () => {
    await refusedBeforeSharp(text("hello, world"), /input: not an image in a supported format \(JPEG, PNG, WebP, GIF or TIFF\): it starts with the bytes 68 65 6c 6c 6f 2c 20 77/);
    await refusedBeforeSharp(text("<html><body>not an svg</body></html>"), /not an image in a supported format .*3c 68 74 6d/);
    await refusedBeforeSharp(Uint8Array.from([0x89, 0x50, 0x4e]), /not an image in a supported format .*89 50 4e$/); // a PNG signature cut short
    await expect(decodeImage(new Uint8Array(0))).rejects.toThrow(/image buffer: file is empty/);
  });

  it("passes a known signature with a broken body to the decoder, which reports it", async () => {
    const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
    await expect(decodeImage(png, { name: "broken.png" })).rejects.toThrow(/broken\.png: not a readable image: corrupt or truncated header/);
  });
});

describe("GIF sizes", () => {
  it("checks the logical screen against the pixel limit before sharp sees the file", async () => {
    // libvips would decode this as 1x1 (it ignores screens over 2048 pixels); PIL's image is 65535x65535.
    await refusedBeforeSharp(gif(65535, 65535), /65535x65535 = 4294836225 pixels is over the limit of 89478485 \(a possible decompression bomb\)/);
    // A first frame beyond the screen grows PIL's image to hold it.
    await refusedBeforeSharp(gif(2, 2, 60000, 60000), /60001x60001 = 3600120001 pixels is over the limit/);
    await refusedBeforeSharp(gif(100, 100), /100x100 = 10000 pixels is over the limit of 9999/, { maxPixels: 9999 });
    expect((await decodeImage(gif(100, 100), { maxPixels: 10000 })).width).toBe(100);
  });

  it("decodes a GIF on PIL's logical screen where libvips takes the first frame's extent", async () => {
    for (const [width, height] of [[640, 480], [3000, 5]]) {
      const image = await decodeImage(gif(width, height, 2, 1));
      expect([image.width, image.height]).toEqual([width, height]);
      // Index 0's colour where the frame does not paint (PIL fills the screen with index 0), index 1's where it does.
      for (let y = 0; y < height; y += height > 100 ? 7 : 1) {
        for (let x = 0; x < width; x += 13) {
          const at = 3 * (y * width + x);
          expect(Array.from(image.data.subarray(at, at + 3)), `pixel (${x}, ${y})`).toEqual([10, 20, 30]);
        }
      }
      const painted = 3 * (1 * width + 2);
      expect(Array.from(image.data.subarray(painted, painted + 3))).toEqual([200, 210, 220]);
    }
  });

  it("grows the screen to hold a first frame that sticks out of it, as PIL does, and keeps the frame's pixels", async () => {
    const image = await decodeImage(gif(2, 2, 5, 4));
    expect([image.width, image.height]).toEqual([6, 5]);
    const colours = Array.from({ length: 30 }, (_, i) => Array.from(image.data.subarray(3 * i, 3 * i + 3)));
    expect(colours[4 * 6 + 5]).toEqual([200, 210, 220]);
    expect(colours.filter((c) => c[0] === 10)).toHaveLength(29);
  });
});

/**
 * Decoding with sharp must give the pixels PIL's Image.open(f).convert("RGB") gives, for every
 * supported format and mode (references: test/fixtures/preprocess/make_fixtures.py), and every
 * bad input must be refused with an error naming the file and the problem.
 */
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import sharp, { type Sharp } from "sharp";
import { describe, expect, it } from "vitest";
import { decodeImage, DEFAULT_MAX_PIXELS, ImageError } from "../src/image/decode.js";
import { readAllFloat32 } from "./safetensors_helpers.js";
import { rng, SEED } from "./helpers.js";

const FIXTURES = "test/fixtures/preprocess";
const reference = await readAllFloat32(join(FIXTURES, "decode_reference.safetensors"));

describe("decodeImage matches PIL's convert('RGB')", () => {
  it("has a reference for every fixture file", async () => {
    expect((await readdir(join(FIXTURES, "decode"))).sort()).toEqual([...reference.keys()].sort());
  });
  for (const [name, expected] of reference) {
    it(name, async () => {
      const image = await decodeImage(join(FIXTURES, "decode", name));
      expect([image.height, image.width]).toEqual(expected.shape.slice(0, 2));
      let differing = 0;
      for (let i = 0; i < expected.data.length; i++) if (image.data[i] !== expected.data[i]) differing++;
      expect(differing, "bytes that differ from PIL").toBe(0);
    });
  }

  it("reads the golden images (JPEG photo, RGBA screenshot, grey) as PIL does", async () => {
    const photo = await decodeImage(join(FIXTURES, "images", "llama_cute.jpg"));
    expect([photo.format, photo.width, photo.height, photo.sourceChannels]).toEqual(["jpeg", 1024, 1024, 3]);
    const screenshot = await decodeImage(join(FIXTURES, "images", "screenshot.png"));
    expect([screenshot.width, screenshot.height, screenshot.sourceChannels, screenshot.data.length]).toEqual([731, 75, 4, 731 * 75 * 3]);
  });
});

/** Random RGB bytes, and the same pixels encoded losslessly by sharp with some extra metadata. */
async function encoded(width: number, height: number, build: (s: Sharp) => Sharp) {
  const random = rng(SEED);
  const pixels = Uint8Array.from({ length: width * height * 3 }, () => Math.floor(random() * 256));
  const file = await build(sharp(pixels, { raw: { width, height, channels: 3 } })).toBuffer();
  return { pixels, file };
}

describe("decodeImage leaves colour and orientation alone, as PIL does", () => {
  it("ignores an embedded ICC profile (sharp alone would convert Display P3 to sRGB)", async () => {
    const { file: plain } = await encoded(13, 9, (s) => s.jpeg({ quality: 90 }));
    const { file: tagged } = await encoded(2, 2, (s) => s.withIccProfile("p3").jpeg());
    const profile = (await sharp(tagged).metadata()).icc!;
    // The same JPEG with the profile added as an APP2 "ICC_PROFILE" segment right after SOI: the
    // stored pixels are unchanged, so PIL reads the same values from both files.
    const segment = Buffer.alloc(4 + 14);
    segment.writeUInt16BE(0xffe2, 0);
    segment.writeUInt16BE(2 + 14 + profile.length, 2);
    segment.write("ICC_PROFILE\0", 4, "latin1");
    segment[16] = 1; // chunk 1 of 1
    segment[17] = 1;
    const withProfile = Buffer.concat([plain.subarray(0, 2), segment, profile, plain.subarray(2)]);
    expect((await sharp(withProfile).metadata()).icc).toBeDefined();

    const expected = (await decodeImage(plain)).data;
    expect((await decodeImage(withProfile)).data).toEqual(expected);
    const colourManaged = await sharp(withProfile).raw().toBuffer();
    expect(colourManaged.equals(Buffer.from(expected)), "the profile would change the pixels if applied").toBe(false);
  });

  it("does not apply EXIF orientation (PIL's open does not, nor does transformers)", async () => {
    const { pixels, file } = await encoded(13, 9, (s) => s.withMetadata({ orientation: 6 }).png());
    expect((await sharp(file).metadata()).orientation).toBe(6);
    const image = await decodeImage(file);
    expect([image.width, image.height]).toEqual([13, 9]);
    expect(image.data).toEqual(pixels);
  });
});

describe("decodeImage refuses bad input with a clear error", () => {
  const photo = readFile(join(FIXTURES, "images", "llama_cute.jpg"));
  const png = readFile(join(FIXTURES, "images", "gradient_640x480.png"));

  const refuses = async (input: string | Uint8Array, pattern: RegExp, options = {}) => {
    const error = await decodeImage(input, options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ImageError);
    expect((error as Error).message).toMatch(pattern);
  };

  it("a missing file", () => refuses("test/fixtures/preprocess/no-such-image.png", /no-such-image\.png: cannot read \(ENOENT\)/));
  it("an empty file", () => refuses(new Uint8Array(0), /^image buffer: file is empty/));
  it("names a buffer as told", () => refuses(new Uint8Array(0), /^upload\.jpg: file is empty/, { name: "upload.jpg" }));
  it("bytes that are no image", () => refuses(new TextEncoder().encode("hello, not an image\n"), /not an image in a supported format \(JPEG, PNG, WebP, GIF or TIFF\)/));
  it("a format PIL reads but we do not (BMP)", () => refuses(join(FIXTURES, "bad", "tiny.bmp"), /tiny\.bmp: not an image in a supported format/));
  it("SVG", () =>
    refuses(new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'), /svg images are not supported/));
  it("a truncated JPEG", async () => {
    const bytes = await photo;
    await refuses(bytes.subarray(0, bytes.length >> 1), /corrupt or truncated jpeg data/);
  });
  it("a JPEG cut inside its header", async () => refuses((await photo).subarray(0, 300), /corrupt or truncated header/));
  it("a truncated PNG", async () => {
    const bytes = await png;
    await refuses(bytes.subarray(0, bytes.length - 100), /corrupt or truncated png data/);
  });
  it("a PNG with a damaged chunk", async () => {
    const bytes = Uint8Array.from(await png);
    bytes[bytes.length >> 1] ^= 0xff;
    await refuses(bytes, /corrupt or truncated png data/);
  });
  it("a decompression bomb, from its header alone", async () => {
    const start = performance.now();
    await refuses(join(FIXTURES, "bad", "bomb_20000x20000.png"), new RegExp(`20000x20000 = 400000000 pixels is over the limit of ${DEFAULT_MAX_PIXELS}`));
    expect(performance.now() - start).toBeLessThan(1000);
  });
  it("an image over a lower, configured pixel limit", () =>
    refuses(join(FIXTURES, "images", "gradient_640x480.png"), /640x480 = 307200 pixels is over the limit of 300000/, { maxPixels: 300_000 }));
  it("accepts an image exactly at the limit", async () => {
    const image = await decodeImage(join(FIXTURES, "images", "gradient_640x480.png"), { maxPixels: 640 * 480 });
    expect(image.width).toBe(640);
  });
});

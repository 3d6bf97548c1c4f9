/**
 * Image files to 8-bit RGB pixels, as transformers sees them: `PIL.Image.open(path)` then
 * `image.convert("RGB")`. sharp (libvips) does the decoding; this file makes its output
 * equal to PIL's where the two would otherwise differ:
 *
 * - Alpha is dropped, not composited: a transparent pixel keeps the colour stored under it.
 * - Grey is replicated to R = G = B; palette images are expanded through their palette.
 * - Embedded ICC profiles are ignored (PIL's convert does not colour-manage; sharp would
 *   convert to sRGB by default).
 * - EXIF orientation is not applied (PIL's open does not apply it, and transformers never
 *   calls exif_transpose), so a photo stored sideways stays sideways.
 * - 16-bit RGB(A) and grey+alpha keep their high byte, as PIL's 16-bit unpackers do. 16-bit
 *   grey without alpha becomes PIL mode "I"/"I;16", whose conversion to RGB clamps each value
 *   to 0..255 (so most of a 16-bit grey photo turns white): matched, not "fixed".
 * - CMYK uses PIL's naive conversion (R = (255 - K) * (1 - C/255), rounded), not a profile.
 * - GIF: the first frame only, on PIL's logical screen; pixels the frame does not paint get the
 *   palette colour PIL gives them (see gif.ts).
 *
 * Only JPEG, PNG, WebP, GIF and TIFF are accepted, recognised by their first bytes before sharp
 * sees them (sniff.ts), so no other format reaches a decoder. The pixel count is checked from
 * the header before any pixel is decoded, so a small file that claims to be a huge image (a
 * decompression bomb) is refused cheaply.
 */
import sharp, { type Metadata, type Sharp, type SharpOptions } from "sharp";
import { IMAGE_FILE } from "../files/limits.js";
import { readFileWithin } from "../files/read.js";
import { gifFirstFrame, gifScreenSize, type GifFirstFrame } from "./gif.js";
import type { RgbImage } from "./rgb.js";
import { firstBytes, sniffImageFormat } from "./sniff.js";

/** PIL's Image.MAX_IMAGE_PIXELS (above it PIL warns of a decompression bomb; we refuse). */
export const DEFAULT_MAX_PIXELS = Math.floor((1024 * 1024 * 1024) / 4 / 3);

export const SUPPORTED_FORMATS = ["jpeg", "png", "webp", "gif", "tiff"] as const;
const FORMAT_LIST = "JPEG, PNG, WebP, GIF or TIFF";

/** Colour spaces (libvips interpretations) whose conversion to RGB we know PIL's answer for. */
const SUPPORTED_SPACES = ["srgb", "rgb", "b-w", "grey16", "rgb16", "cmyk"];

export class ImageError extends Error {
  override name = "ImageError";
}

export interface DecodeOptions {
  /** Refuse images with more pixels than this (default DEFAULT_MAX_PIXELS; Infinity for none). */
  maxPixels?: number;
  /** What to call a Buffer input in error messages (a path names itself). */
  name?: string;
}

/** A decoded image and what it was before conversion to RGB. */
export interface DecodedImage extends RgbImage {
  format: (typeof SUPPORTED_FORMATS)[number];
  /** Channels in the file, alpha included (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA or CMYK). */
  sourceChannels: number;
}

/** What an image's header says, checked: its format, its size, and that the decoder can take it. */
interface ImageHeader {
  name: string;
  bytes: Uint8Array;
  format: DecodedImage["format"];
  width: number;
  height: number;
  metadata: Metadata;
  /** A GIF's first frame as PIL places it on its logical screen. */
  gif: ReturnType<typeof gifFirstFrame> | undefined;
  sharpOptions: SharpOptions;
  fail: (message: string) => never;
}

async function readImageHeader(input: string | Uint8Array, options: DecodeOptions): Promise<ImageHeader> {
  const name = typeof input === "string" ? input : (options.name ?? "image buffer");
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels >= 1)) throw new RangeError(`decodeImage: maxPixels must be at least 1, not ${maxPixels}`);
  const fail = (message: string): never => {
    throw new ImageError(`${name}: ${message}`);
  };

  const bytes = typeof input === "string" ? await readFileWithin(input, IMAGE_FILE, { as: ImageError }) : input;
  if (bytes.length === 0) fail("file is empty");
  const format = checkFormat(bytes, fail);
  const checkPixels = (width: number, height: number): void => {
    if (width * height > maxPixels) {
      fail(`${width}x${height} = ${width * height} pixels is over the limit of ${maxPixels} (a possible decompression bomb)`);
    }
  };
  // PIL's size of a GIF is its logical screen (grown to hold the first frame), which libvips may not report.
  const gif = format === "gif" ? gifFirstFrame(bytes) : undefined;
  if (format === "gif") {
    const { width, height } = gif ?? gifScreenSize(bytes);
    checkPixels(width, height);
  }

  // Options for every sharp call: first page only, no colour management, no rotation, and
  // libvips' own pixel limit as a second guard. 'error' aborts on corrupt or truncated pixel
  // data but, like PIL, tolerates the decoder's warnings.
  const sharpOptions: SharpOptions = {
    pages: 1,
    page: 0,
    ignoreIcc: true,
    autoOrient: false,
    failOn: "error",
    limitInputPixels: Number.isFinite(maxPixels) ? Math.floor(maxPixels) : false,
  };

  let metadata: Metadata;
  try {
    // The header only; the pixel limit is ours to check with a clear message, just below.
    metadata = await sharp(bytes, { ...sharpOptions, limitInputPixels: false }).metadata();
  } catch (error) {
    return fail(`not a readable image: corrupt or truncated header (${firstLine(error)})`);
  }
  if (metadata.format !== format) fail(`starts like a ${format} file, but the decoder reads it as ${metadata.format}`);
  const { width, height } = metadata;
  if (!width || !height) fail(`${format} header gives no image size`);
  checkPixels(width, height);
  if (!SUPPORTED_SPACES.includes(metadata.space as string)) fail(`colour space '${metadata.space}' is not supported`);
  if (metadata.depth !== "uchar" && metadata.depth !== "ushort") fail(`${metadata.depth} samples are not supported (only 8- and 16-bit)`);
  return { name, bytes, format, width, height, metadata, gif, sharpOptions, fail };
}

/**
 * Checks an image file (path or bytes) as far as its header, without decoding its pixels: a
 * regular file within the size limit, a supported format, within the pixel limit. What a
 * command calls on its image arguments before it spends time loading a model.
 */
export async function checkImage(input: string | Uint8Array, options: DecodeOptions = {}): Promise<{ format: DecodedImage["format"]; width: number; height: number }> {
  const { format, width, height, gif } = await readImageHeader(input, options);
  return { format, width: gif?.width ?? width, height: gif?.height ?? height };
}

/** Decodes an image file (path or bytes) to 8-bit RGB as PIL's open + convert("RGB") would. */
export async function decodeImage(input: string | Uint8Array, options: DecodeOptions = {}): Promise<DecodedImage> {
  const { bytes, format, width, height, metadata, gif, sharpOptions, fail } = await readImageHeader(input, options);

  const decode = async (pipeline: Sharp, depth: "uchar" | "ushort") => {
    let result: { data: Buffer; info: { width: number; height: number; channels: number } };
    try {
      result = await pipeline.raw({ depth }).toBuffer({ resolveWithObject: true });
    } catch (error) {
      return fail(`corrupt or truncated ${format} data (${firstLine(error)})`);
    }
    const { info } = result;
    if (info.width !== width || info.height !== height) fail(`decoded to ${info.width}x${info.height}, but the header says ${width}x${height}`);
    return result;
  };
  const fromPipeline = (): Sharp => sharp(bytes, sharpOptions);

  let rgb: Uint8Array;
  let size = { width, height };
  if (metadata.space === "cmyk") {
    const { data, info } = await decode(fromPipeline().pipelineColourspace("cmyk").toColourspace("cmyk"), "uchar");
    if (info.channels !== 4) fail(`CMYK with ${info.channels} channels is not supported`);
    rgb = cmykToRgb(data, width * height);
  } else if (metadata.space === "grey16" && (metadata.channels === 1 || isPngGreyWithoutAlphaChannel(bytes))) {
    const { data, info } = await decode(fromPipeline().toColourspace("grey16"), "ushort");
    // Copied so the 16-bit view is aligned; libvips writes native-endian samples.
    rgb = grey16ToRgb(new Uint16Array(new Uint8Array(data).buffer), width * height, info.channels);
  } else {
    const decoded = await decode(fromPipeline(), "uchar");
    let data: Uint8Array = decoded.data;
    if (gif) {
      if (width > gif.width || height > gif.height) fail(`decoded to ${width}x${height}, larger than the GIF's ${gif.width}x${gif.height} screen`);
      data = gifAsPilShowsIt(gif, data, width, height, decoded.info.channels);
      size = { width: gif.width, height: gif.height };
    }
    rgb = toRgb(data, size.width * size.height, decoded.info.channels);
  }
  return { ...size, data: rgb, format, sourceChannels: metadata.channels ?? 3 };
}

/** The format from the first bytes, if it is one we decode; otherwise an error naming what it is. */
function checkFormat(bytes: Uint8Array, fail: (message: string) => never): DecodedImage["format"] {
  const format = sniffImageFormat(bytes);
  if ((SUPPORTED_FORMATS as readonly (string | undefined)[]).includes(format)) return format as DecodedImage["format"];
  if (format === undefined) return fail(`not an image in a supported format (${FORMAT_LIST}): it starts with the bytes ${firstBytes(bytes)}`);
  if (format === "bmp") return fail(`not an image in a supported format (${FORMAT_LIST}): a BMP, which PIL opens but sharp (libvips) cannot decode; convert it to PNG`);
  return fail(`${format} images are not supported (only ${FORMAT_LIST})`);
}

/** libvips repeats its messages over several lines; the first says what went wrong. */
function firstLine(error: unknown): string {
  return String((error as Error).message ?? error).split("\n")[0].trim();
}

/** Interleaved 1-4 channel bytes to RGB: grey replicated, alpha dropped. */
function toRgb(data: Uint8Array, pixels: number, channels: number): Uint8Array {
  if (channels === 3) return new Uint8Array(data.buffer, data.byteOffset, pixels * 3).slice();
  const out = new Uint8Array(pixels * 3);
  const colour = channels >= 3;
  for (let i = 0, p = 0; i < pixels; i++, p += channels) {
    out[3 * i] = data[p];
    out[3 * i + 1] = colour ? data[p + 1] : data[p];
    out[3 * i + 2] = colour ? data[p + 2] : data[p];
  }
  return out;
}

/** PIL's cmyk2rgb: each channel (255 - K) - C * (255 - K) / 255, the product rounded as PIL does. */
function cmykToRgb(data: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  // PIL's MULDIV255: a * b / 255, rounded, with shifts instead of a division.
  const mulDiv255 = (a: number, b: number): number => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0; i < pixels; i++) {
    const nk = 255 - data[4 * i + 3];
    for (let c = 0; c < 3; c++) out[3 * i + c] = nk - mulDiv255(data[4 * i + c], nk);
  }
  return out;
}

/** PIL's I;16 → RGB: values above 255 clamp to 255 (not scaled); any alpha is dropped. */
function grey16ToRgb(data: Uint16Array, pixels: number, channels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = Math.min(data[i * channels], 255);
  return out;
}

/**
 * A PNG of colour type 0 (grey, no alpha channel). With a tRNS chunk libvips reports it as
 * grey + alpha, but PIL opens it as mode "I" like any 16-bit grey PNG. (The IHDR chunk always
 * comes first: colour type is byte 25 of the file.)
 */
function isPngGreyWithoutAlphaChannel(bytes: Uint8Array): boolean {
  return bytes.length > 25 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[25] === 0;
}

/**
 * The decoded first frame on PIL's logical screen (libvips' image is its top-left corner, or all
 * of it), with every pixel the frame does not paint in the colour PIL shows there (gif.ts).
 */
function gifAsPilShowsIt(frame: GifFirstFrame, decoded: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  let data = decoded;
  if (width !== frame.width || height !== frame.height) {
    data = new Uint8Array(frame.width * frame.height * channels);
    for (let y = 0; y < height; y++) data.set(decoded.subarray(y * width * channels, (y + 1) * width * channels), y * frame.width * channels);
  }
  const hasAlpha = channels === 2 || channels === 4;
  for (let y = 0; y < frame.height; y++) {
    for (let x = 0; x < frame.width; x++) {
      const p = (y * frame.width + x) * channels;
      const outside = x < frame.left || x >= frame.right || y < frame.top || y >= frame.bottom;
      if (!outside && !(hasAlpha && data[p + channels - 1] === 0)) continue;
      for (let c = 0; c < Math.min(channels, 3); c++) data[p + c] = frame.fill[channels >= 3 ? c : 0];
    }
  }
  return data;
}

/**
 * CLIPImageProcessor (transformers 4.40) in TypeScript: image file → `pixel_values`.
 *
 * The steps, in transformers' order:
 *   1. decode and convert to RGB as PIL's convert("RGB") does (decode.ts);
 *   2. optionally pad to a square filled with the mean colour (LLaVA's `expand2square`);
 *   3. resize: the shortest edge to `size.shortest_edge`, the other edge
 *      int(shortest_edge * long / short) (truncated, not rounded), or to an exact
 *      {height, width}; with PIL's bicubic filter, bit-exact (resample.ts);
 *   4. center crop to `crop_size` (padding with zeros if the image is smaller);
 *   5. rescale: x * rescale_factor, computed in float64 and stored as float32;
 *   6. normalize: (x - mean) / std in float32 arithmetic, as numpy does on float32 arrays;
 *   7. channels first: [3, height, width].
 *
 * Steps 3 and 4 work on 8-bit pixels, as transformers does them on uint8 arrays, so the whole
 * pipeline reproduces transformers' float32 output exactly (same bits), not just closely.
 */
import { DEFAULT_MAX_PIXELS, decodeImage, ImageError, type DecodeOptions } from "./decode.js";
import type { PreprocessorConfig, ResizeTarget } from "./config.js";
import { resizeBicubic } from "./resample.js";
import { createRgbImage, type RgbImage } from "./rgb.js";

export interface PixelValues {
  /** Channels first: element (c, y, x) is at c * height * width + y * width + x. */
  data: Float32Array;
  shape: [3, number, number];
}

export interface PreprocessOptions extends DecodeOptions {
  /** LLaVA's `image_aspect_ratio: "pad"`: pad to a square of the mean colour before resizing. */
  padToSquare?: boolean;
}

/** Decodes one image file (path or bytes) and preprocesses it for the vision tower. */
export async function preprocessImage(
  input: string | Uint8Array,
  config: PreprocessorConfig,
  options: PreprocessOptions = {},
): Promise<PixelValues> {
  return preprocessRgb(await decodeForPreprocessing(input, config, options), config, options);
}

/**
 * Step 1 alone: decodes an image file (path or bytes) to RGB, refusing an image that is not
 * 3-channel when the config sets do_convert_rgb false (transformers would not convert it).
 */
export async function decodeForPreprocessing(input: string | Uint8Array, config: PreprocessorConfig, options: DecodeOptions = {}): Promise<RgbImage> {
  const image = await decodeImage(input, options);
  if (!config.doConvertRgb && image.sourceChannels !== 3) {
    const name = typeof input === "string" ? input : (options.name ?? "image buffer");
    throw new ImageError(
      `${name}: has ${image.sourceChannels} channels and ${config.source} sets do_convert_rgb false; ` +
        "transformers would not turn it into the 3 channels the model takes",
    );
  }
  return image;
}

/** Preprocesses several images into one batch, `pixel_values` [N, 3, H, W]. */
export async function preprocessImages(
  inputs: readonly (string | Uint8Array)[],
  config: PreprocessorConfig,
  options: PreprocessOptions = {},
): Promise<{ data: Float32Array; shape: [number, 3, number, number] }> {
  const each: PixelValues[] = [];
  for (const input of inputs) each.push(await preprocessImage(input, config, options));
  return stackPixelValues(each);
}

/**
 * The steps that make an image bigger (padding to a square, resizing a thin image so its short
 * edge reaches the target: 2x20000 pixels become 336x3360000) are held to the decoder's pixel
 * limit too, so that no image the decoder accepts can grow into an unbounded allocation.
 */
function checkGrownSize(width: number, height: number, step: string, config: PreprocessorConfig): void {
  if (width * height > DEFAULT_MAX_PIXELS) {
    throw new ImageError(
      `${step} (${config.source}) would make the image ${width}x${height} = ${width * height} pixels, ` +
        `over the limit of ${DEFAULT_MAX_PIXELS}; its aspect ratio is too extreme for this preprocessing`,
    );
  }
}

/** Steps 2-7 on an image already in memory. */
export function preprocessRgb(image: RgbImage, config: PreprocessorConfig, options: { padToSquare?: boolean } = {}): PixelValues {
  let rgb = image;
  if (options.padToSquare) {
    const side = Math.max(rgb.width, rgb.height);
    checkGrownSize(side, side, "padding to a square", config);
    rgb = expandToSquare(rgb, padColour(config));
  }
  if (config.doResize) {
    const { width, height } = resizeOutputSize(rgb.width, rgb.height, config.size);
    checkGrownSize(width, height, "resizing", config);
    rgb = resizeBicubic(rgb, width, height);
  }
  if (config.doCenterCrop) rgb = centerCrop(rgb, config.cropSize.width, config.cropSize.height);
  return toPixelValues(rgb, config);
}

/** Stacks [3, H, W] tensors of one size into [N, 3, H, W]. */
export function stackPixelValues(list: readonly PixelValues[]): { data: Float32Array; shape: [number, 3, number, number] } {
  if (list.length === 0) throw new RangeError("stackPixelValues: no images to stack");
  const [, height, width] = list[0].shape;
  const data = new Float32Array(list.length * 3 * height * width);
  list.forEach((item, i) => {
    if (item.shape[1] !== height || item.shape[2] !== width) {
      throw new RangeError(
        `stackPixelValues: image ${i} is ${item.shape[1]}x${item.shape[2]} but image 0 is ${height}x${width}; ` +
          "only same-sized images stack (turn on center crop or resize to an exact size)",
      );
    }
    data.set(item.data, i * item.data.length);
  });
  return { data, shape: [list.length, 3, height, width] };
}

/** The canvas colour LLaVA pads with: tuple(int(x * 255) for x in image_mean). */
export function padColour(config: PreprocessorConfig): [number, number, number] {
  return config.imageMean.map((m) => Math.min(255, Math.max(0, Math.trunc(m * 255)))) as [number, number, number];
}

/** LLaVA's expand2square: the image centred on a square canvas of `fill` (offset floored). */
export function expandToSquare(image: RgbImage, fill: readonly [number, number, number]): RgbImage {
  const { width, height } = image;
  if (width === height) return image;
  const side = Math.max(width, height);
  const out = createRgbImage(side, side, fill);
  const left = Math.floor((side - width) / 2);
  const top = Math.floor((side - height) / 2);
  for (let y = 0; y < height; y++) {
    out.data.set(image.data.subarray(y * width * 3, (y + 1) * width * 3), ((top + y) * side + left) * 3);
  }
  return out;
}

/** transformers' get_resize_output_image_size for CLIPImageProcessor. */
export function resizeOutputSize(width: number, height: number, target: ResizeTarget): { width: number; height: number } {
  if ("height" in target) return { width: target.width, height: target.height };
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  // Python's int(size * long / short): a float division, truncated.
  const newLong = Math.trunc((target.shortestEdge * long) / short);
  return width <= height ? { width: target.shortestEdge, height: newLong } : { width: newLong, height: target.shortestEdge };
}

/**
 * transformers' center_crop: the window starts at floor((size - crop) / 2). If the image is
 * smaller than the crop it is first centred on a zero canvas, with the padding rounded up so
 * the result is always the crop size. (transformers 4.40 rounded it down and returned one
 * pixel less for odd differences, a bug fixed in 4.42; the model cannot take that output, so
 * the fixed behaviour is the one reproduced.)
 */
export function centerCrop(image: RgbImage, cropWidth: number, cropHeight: number): RgbImage {
  const { width, height } = image;
  const top = Math.floor((height - cropHeight) / 2);
  const left = Math.floor((width - cropWidth) / 2);
  const out = createRgbImage(cropWidth, cropHeight);
  // Where crop pixel (0, 0) lies in the source; negative when the source is the smaller one.
  const originY = top >= 0 ? top : -Math.ceil((cropHeight - height) / 2);
  const originX = left >= 0 ? left : -Math.ceil((cropWidth - width) / 2);
  for (let y = 0; y < cropHeight; y++) {
    const sy = originY + y;
    if (sy < 0 || sy >= height) continue;
    const x0 = Math.max(0, -originX);
    const x1 = Math.min(cropWidth, width - originX);
    if (x1 <= x0) continue;
    out.data.set(image.data.subarray((sy * width + originX + x0) * 3, (sy * width + originX + x1) * 3), (y * cropWidth + x0) * 3);
  }
  return out;
}

/** Steps 5-7: rescale, normalize, channels first, with numpy's float32 rounding. */
export function toPixelValues(image: RgbImage, config: PreprocessorConfig): PixelValues {
  const { width, height, data } = image;
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  // One value per possible byte and channel: the arithmetic depends on nothing else.
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(config.imageMean[c]);
    const std = Math.fround(config.imageStd[c]);
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      // rescale: uint8 * python float is float64 in numpy, then .astype(float32).
      let x = config.doRescale ? Math.fround(v * config.rescaleFactor) : v;
      // normalize: float32 array minus float32 mean, divided by float32 std.
      if (config.doNormalize) x = Math.fround(Math.fround(x - mean) / std);
      table[v] = x;
    }
    for (let i = 0; i < plane; i++) out[c * plane + i] = table[data[3 * i + c]];
  }
  return { data: out, shape: [3, height, width] };
}

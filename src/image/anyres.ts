/**
 * LLaVA-NeXT's "anyres" preprocessing (transformers' LlavaNextImageProcessor): one image → a
 * stack of S x S tiles, S = crop_size.height, so the vision tower sees it at a higher resolution
 * than one tile while its input size stays fixed.
 *
 *   1. pick the canvas (one of `image_grid_pinpoints`, each [height, width]) that shows the
 *      image with the most pixels, ties to the least waste, then to the first listed;
 *   2. resize the image into it keeping the aspect ratio (PIL bicubic; the fitted side becomes
 *      the canvas side, the other ceil(side · scale)), and centre it on a black canvas;
 *   3. cut the canvas into rows × cols tiles, row by row;
 *   4. put first a base tile: the whole image squashed (aspect not kept) to shortest_edge²;
 *   5. run every tile through CLIPImageProcessor's steps (preprocess.ts: resize, center crop,
 *      rescale, normalize), which for an S x S tile only rescales and normalizes.
 *
 * Every step works on 8-bit pixels and reuses preprocess.ts / resample.ts, so the tiles are
 * transformers' float32 values bit for bit. A batch pads each image's tiles with zero tiles up
 * to the largest count (`do_pad`), as transformers' output does; `image_sizes` says how many
 * tiles of each are real (1 + rows · cols for its size).
 */
import { DEFAULT_MAX_PIXELS, ImageError, type DecodeOptions } from "./decode.js";
import type { PreprocessorConfig } from "./config.js";
import { decodeForPreprocessing, preprocessRgb, resizeOutputSize, type PixelValues } from "./preprocess.js";
import { resizeBicubic } from "./resample.js";
import { createRgbImage, type RgbImage } from "./rgb.js";

type Pinpoints = readonly (readonly [number, number])[];

/** One image's tiles: the base tile, then the grid row by row. */
export interface AnyresPixels {
  /** Tile t, element (c, y, x) is at ((t * 3 + c) * height + y) * width + x. */
  data: Float32Array;
  shape: [number, 3, number, number];
  /** The source image's size (what transformers' `image_sizes` holds). */
  imageSize: { height: number; width: number };
  grid: { rows: number; cols: number };
}

/** A batch of images' tiles, [images, tiles, 3, H, W], with `image_sizes` [images, 2] as (height, width). */
export interface AnyresBatch {
  data: Float32Array;
  shape: [number, number, 3, number, number];
  imageSizes: BigInt64Array;
}

/** transformers' select_best_resolution: the [height, width] canvas for an image of (height, width). */
export function selectBestResolution(height: number, width: number, pinpoints: Pinpoints): [number, number] {
  checkSize(height, width);
  if (pinpoints.length === 0) throw new RangeError("selectBestResolution: no pinpoints to choose from");
  let best: [number, number] | null = null;
  let maxEffective = 0;
  let minWaste = Infinity;
  for (const [H, W] of pinpoints) {
    // All in doubles, truncated as Python's int() does.
    const scale = Math.min(W / width, H / height);
    const effective = Math.min(Math.trunc(width * scale) * Math.trunc(height * scale), width * height);
    const waste = H * W - effective;
    if (effective > maxEffective || (effective === maxEffective && waste < minWaste)) {
      maxEffective = effective;
      minWaste = waste;
      best = [H, W];
    }
  }
  return best!;
}

/** The canvas an image is tiled on and its grid of `tile`-pixel tiles. */
export function anyresGrid(height: number, width: number, pinpoints: Pinpoints, tile: number): { rows: number; cols: number; canvas: [number, number] } {
  const canvas = selectBestResolution(height, width, pinpoints);
  if (canvas[0] % tile !== 0 || canvas[1] % tile !== 0) {
    throw new RangeError(`anyresGrid: canvas ${canvas[0]}x${canvas[1]} is not a whole number of ${tile}-pixel tiles`);
  }
  return { rows: canvas[0] / tile, cols: canvas[1] / tile, canvas };
}

/**
 * transformers' get_patch_output_size: the size the image is resized to inside the canvas,
 * keeping its aspect ratio. The side with the smaller scale fills the canvas; the other is
 * ceil(side * scale), the division done first, in doubles.
 */
export function fitInto(height: number, width: number, canvas: readonly [number, number]): { height: number; width: number } {
  const [H, W] = canvas;
  const scaleW = W / width;
  const scaleH = H / height;
  if (scaleW < scaleH) return { width: W, height: Math.min(Math.ceil(height * scaleW), H) };
  return { height: H, width: Math.min(Math.ceil(width * scaleH), W) };
}

/** Preprocesses one decoded image into its tiles (needs a LlavaNextImageProcessor config). */
export function preprocessAnyres(image: RgbImage, config: PreprocessorConfig): AnyresPixels {
  if (!config.anyres) throw new ImageError(`${config.source} is not a LlavaNextImageProcessor config: it has no anyres tiling`);
  const { height, width } = image;
  const tile = config.cropSize.height;
  const { rows, cols, canvas } = anyresGrid(height, width, config.anyres.gridPinpoints, tile);
  const tiles = 1 + rows * cols;
  // The base tile's side: shortest_edge, or the smaller of an exact size's sides.
  const base = "shortestEdge" in config.size ? config.size.shortestEdge : Math.min(config.size.height, config.size.width);

  // What each tile becomes after CLIPImageProcessor's resize and crop (the grid's and the base's
  // may differ only when both are off), checked against the pixel limit before any allocation.
  const outputOf = (side: number): { height: number; width: number } => {
    if (config.doCenterCrop) return config.cropSize;
    return config.doResize ? resizeOutputSize(side, side, config.size) : { width: side, height: side };
  };
  const out = outputOf(tile);
  const baseOut = outputOf(base);
  if (out.height !== baseOut.height || out.width !== baseOut.width) {
    throw new ImageError(
      `${config.source}: the base tile would come out ${baseOut.width}x${baseOut.height} and the grid tiles ${out.width}x${out.height}; ` +
        "with do_resize and do_center_crop both off, shortest_edge must equal crop_size.height for the tiles to stack",
    );
  }
  // The output is what accumulates: held to the decoder's pixel limit as preprocess.ts holds
  // every step that grows an image (each tile's own resize is checked there too).
  const outputPixels = tiles * out.height * out.width;
  if (outputPixels > DEFAULT_MAX_PIXELS) {
    throw new ImageError(
      `anyres tiling (${config.source}) would make ${tiles} tiles of ${out.width}x${out.height} ` +
        `(${rows}x${cols} on a ${canvas[1]}x${canvas[0]} canvas, plus the base) = ${outputPixels} pixels, over the limit of ${DEFAULT_MAX_PIXELS}`,
    );
  }

  // The canvas: the image resized to fit, centred on black. transformers 4.49 padded
  // (difference // 2) on both sides, leaving the canvas a pixel short for an odd difference;
  // current transformers (_get_padding_size) puts the remainder at the bottom and right, and
  // that fixed behaviour is the one reproduced here.
  const fitted = fitInto(height, width, canvas);
  const resized = resizeBicubic(image, fitted.width, fitted.height);
  const top = Math.floor((canvas[0] - fitted.height) / 2);
  const left = Math.floor((canvas[1] - fitted.width) / 2);
  const padded = createRgbImage(canvas[1], canvas[0]);
  for (let y = 0; y < fitted.height; y++) {
    padded.data.set(resized.data.subarray(y * fitted.width * 3, (y + 1) * fitted.width * 3), ((top + y) * canvas[1] + left) * 3);
  }

  const pieces: RgbImage[] = [resizeBicubic(image, base, base)];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const piece = createRgbImage(tile, tile);
      for (let y = 0; y < tile; y++) {
        const from = ((r * tile + y) * canvas[1] + c * tile) * 3;
        piece.data.set(padded.data.subarray(from, from + tile * 3), y * tile * 3);
      }
      pieces.push(piece);
    }
  }

  const plane = 3 * out.height * out.width;
  const data = new Float32Array(tiles * plane);
  pieces.forEach((piece, t) => {
    const values: PixelValues = preprocessRgb(piece, config);
    data.set(values.data, t * plane);
  });
  return { data, shape: [tiles, 3, out.height, out.width], imageSize: { height, width }, grid: { rows, cols } };
}

/** Decodes one image file (path or bytes) as preprocessImage does, then tiles it. */
export async function preprocessAnyresImage(input: string | Uint8Array, config: PreprocessorConfig, options: DecodeOptions = {}): Promise<AnyresPixels> {
  return preprocessAnyres(await decodeForPreprocessing(input, config, options), config);
}

/**
 * Several images' tiles as one batch, as transformers returns them: [images, tiles, 3, H, W],
 * fewer tiles padded with zero tiles at the end (`do_pad`). Without do_pad the counts must
 * agree (transformers could not make one tensor of them either).
 */
export async function preprocessAnyresImages(
  inputs: readonly (string | Uint8Array)[],
  config: PreprocessorConfig,
  options: DecodeOptions = {},
): Promise<AnyresBatch> {
  const each: AnyresPixels[] = [];
  for (const input of inputs) each.push(await preprocessAnyresImage(input, config, options));
  return stackAnyresPixels(each, { doPad: config.anyres?.doPad ?? true });
}

/** Stacks images' tiles into [images, maxTiles, 3, H, W], padding with zero tiles when `doPad`. */
export function stackAnyresPixels(list: readonly AnyresPixels[], { doPad }: { doPad: boolean }): AnyresBatch {
  if (list.length === 0) throw new RangeError("stackAnyresPixels: no images to stack");
  const [, , height, width] = list[0].shape;
  const maxTiles = Math.max(...list.map((item) => item.shape[0]));
  const perTile = 3 * height * width;
  const elements = list.length * maxTiles * perTile;
  if (elements > DEFAULT_MAX_PIXELS * 3) {
    throw new ImageError(`${list.length} images of up to ${maxTiles} ${width}x${height} tiles make ${elements} values, over the limit of ${DEFAULT_MAX_PIXELS * 3}`);
  }
  const data = new Float32Array(elements);
  const imageSizes = new BigInt64Array(list.length * 2);
  list.forEach((item, i) => {
    if (item.shape[2] !== height || item.shape[3] !== width) {
      throw new RangeError(`stackAnyresPixels: image ${i}'s tiles are ${item.shape[2]}x${item.shape[3]} but image 0's are ${height}x${width}`);
    }
    if (!doPad && item.shape[0] !== maxTiles) {
      throw new RangeError(
        `stackAnyresPixels: image ${i} has ${item.shape[0]} tiles and another ${maxTiles}; with do_pad false they cannot form one batch (preprocess them one at a time)`,
      );
    }
    data.set(item.data, i * maxTiles * perTile);
    imageSizes[2 * i] = BigInt(item.imageSize.height);
    imageSizes[2 * i + 1] = BigInt(item.imageSize.width);
  });
  return { data, shape: [list.length, maxTiles, 3, height, width], imageSizes };
}

function checkSize(height: number, width: number): void {
  if (!Number.isSafeInteger(height) || !Number.isSafeInteger(width) || height < 1 || width < 1) {
    throw new RangeError(`image size ${width}x${height} must be positive whole pixels`);
  }
}

/**
 * LLaVA-NeXT's "anyres" image features (transformers' LlavaNextForConditionalGeneration,
 * pack_image_features): how the features of an image's tiles become one sequence.
 *
 * The preprocessing (image/anyres.ts) cut the image into a grid of rows × cols tiles on the
 * best canvas for its aspect ratio, after a base tile holding the whole image squashed to one
 * tile. Every tile went through the vision tower and projector, giving P × P features each
 * (P = patches per tile side; the class token dropped). Then, per image:
 *
 *   1. the base tile's P² features come first, as they are;
 *   2. the grid tiles' features are laid out as one [rows·P, cols·P] feature grid (tile (r, c)
 *      at feature rows rP..rP+P-1, columns cP..cP+P-1) — the image seen at full resolution;
 *   3. the padding the canvas added around the resized image is cut off again: the grid is
 *      centre-cropped to the source's aspect ratio (rows or columns, whichever was padded);
 *   4. the learned `image_newline` vector closes every remaining feature row, so the decoder
 *      can tell where a row of the picture ends; the grid is read row by row.
 *
 * An image thus takes P² + rows' · (cols' + 1) positions, which depends on its size: the
 * prompt's <image> token expands to that many (the processor counts them the same way).
 * On the GPU, steps 1–4 are one gather: a list of source rows (a tile feature, or the newline
 * appended after the features) read by the embedding kernel.
 */
import { embedding } from "../kernels/embedding.js";
import { scale } from "../kernels/elementwise.js";
import { copyRows } from "../tensor/copy.js";
import { check } from "../tensor/errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { selectBestResolution } from "../image/anyres.js";
import type { AnyresConfig, ClipVisionConfig } from "../weights/config.js";

export interface ImageSize {
  height: number;
  width: number;
}

/** Where one image's features come from and how many there are. */
export interface AnyresLayout {
  /** Tiles the image is cut into: the base tile and the grid. */
  tiles: number;
  /** The grid of tiles on the chosen canvas. */
  grid: { rows: number; cols: number };
  /** Patches along a tile's side (P). */
  patchesPerSide: number;
  /** The part of the [rows·P, cols·P] feature grid kept after unpadding. */
  kept: { top: number; rows: number; left: number; cols: number };
  /** Positions the image takes in the prompt: P² + kept.rows · (kept.cols + 1). */
  features: number;
}

/** Python's int(round(x, 7)) for x ≥ 0: rounding at 7 decimals first keeps 5.9999999999 from truncating to 5. */
function intRound7(x: number): number {
  return Math.trunc(Number(x.toFixed(7)));
}

/** The layout of an image of `size` (its original pixels), as transformers computes it. */
export function anyresLayout(size: ImageSize, anyres: AnyresConfig, vision: ClipVisionConfig): AnyresLayout {
  const { height, width } = size;
  check(
    Number.isSafeInteger(height) && Number.isSafeInteger(width) && height > 0 && width > 0,
    () => `image size ${width}x${height} must be positive whole pixels`,
  );
  const tile = vision.imageSize;
  const [canvasHeight, canvasWidth] = selectBestResolution(height, width, anyres.gridPinpoints);
  const grid = { rows: canvasHeight / tile, cols: canvasWidth / tile };
  const P = Math.floor(tile / vision.patchSize);
  // unpad_image: the padded direction is the one where the canvas is relatively longer.
  const gridHeight = grid.rows * P;
  const gridWidth = grid.cols * P;
  const kept = { top: 0, rows: gridHeight, left: 0, cols: gridWidth };
  if (width / height > gridWidth / gridHeight) {
    const rows = intRound7(height * (gridWidth / width));
    const padding = Math.floor((gridHeight - rows) / 2);
    Object.assign(kept, { top: padding, rows: gridHeight - 2 * padding });
  } else {
    const cols = intRound7(width * (gridHeight / height));
    const padding = Math.floor((gridWidth - cols) / 2);
    Object.assign(kept, { left: padding, cols: gridWidth - 2 * padding });
  }
  return { tiles: 1 + grid.rows * grid.cols, grid, patchesPerSide: P, kept, features: P * P + kept.rows * (kept.cols + 1) };
}

/**
 * The source row of each packed feature, over the tiles' features [tiles · P², hidden] with the
 * newline appended as row tiles · P².
 */
export function anyresRowOrder(layout: AnyresLayout): Uint32Array {
  const { patchesPerSide: P, grid, kept, tiles } = layout;
  const perTile = P * P;
  const newline = tiles * perTile;
  const order = new Uint32Array(layout.features);
  let at = 0;
  for (let i = 0; i < perTile; i++) order[at++] = i;
  for (let r = 0; r < kept.rows; r++) {
    const row = kept.top + r;
    for (let c = 0; c < kept.cols; c++) {
      const col = kept.left + c;
      const tileIndex = 1 + Math.floor(row / P) * grid.cols + Math.floor(col / P);
      order[at++] = tileIndex * perTile + (row % P) * P + (col % P);
    }
    order[at++] = newline;
  }
  return order;
}

/**
 * One image's packed features [layout.features, hidden] from its tiles' projected features
 * [tiles · P², hidden] (f32) and `image_newline` [hidden] (any float dtype).
 */
export function packAnyresFeatures(tileFeatures: Tensor, newline: Tensor, layout: AnyresLayout): Tensor {
  const gpu = tileFeatures.gpu;
  const perTile = layout.patchesPerSide ** 2;
  const hidden = tileFeatures.dim(1);
  check(
    tileFeatures.rank === 2 && tileFeatures.dim(0) === layout.tiles * perTile,
    () => `anyres: tile features ${tileFeatures.describe()} are not [${layout.tiles} tiles × ${perTile}, hidden]`,
  );
  check(newline.size === hidden, () => `anyres: image_newline ${newline.describe()} does not have the features' ${hidden} values`);
  return gpu.scope(() => {
    const rows = layout.tiles * perTile;
    const source = gpu.empty([rows + 1, hidden], tileFeatures.dtype, { name: "tile features and newline" });
    copyRows(tileFeatures, 0, source, 0, rows);
    copyRows(scale(newline.reshape([1, hidden]), 1, tileFeatures.dtype), 0, source, rows, 1);
    return embedding(gpu.tensor(anyresRowOrder(layout), [layout.features], "u32"), source, { dtype: tileFeatures.dtype });
  });
}

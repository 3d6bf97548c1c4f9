/**
 * `preprocessor_config.json`, read as transformers' CLIPImageProcessor reads it (4.40): every
 * field is optional and falls back to CLIPImageProcessor's default, and the older
 * CLIPFeatureExtractor forms (`"size": 336`, `"crop_size": 336`) mean what they meant there.
 *
 * LlavaNextImageProcessor (LLaVA-NeXT) takes the same fields, with the same defaults, plus
 * `image_grid_pinpoints` and `do_pad` for its anyres tiling (see anyres.ts); those give
 * `anyres`, which is null for the CLIP processors.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { JSON_CONFIG_FILE } from "../files/limits.js";
import { readTextFileWithin } from "../files/read.js";

/** OpenAI CLIP's per-channel statistics (transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
export const OPENAI_CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** PIL's resampling filter numbers as configs spell them; only bicubic is implemented. */
const PIL_RESAMPLE_NAMES = ["nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"];
export const BICUBIC = 3;

/** How to resize: the shortest edge to a length (aspect kept), or to an exact size. */
export type ResizeTarget = { shortestEdge: number } | { height: number; width: number };

export interface AnyresPreprocessing {
  /** The canvases an image may be tiled on, each [height, width], multiples of the tile side (crop_size.height). */
  gridPinpoints: [number, number][];
  /**
   * `do_pad`: in a batch, pad every image's tiles with zero tiles up to the largest count.
   * Only batching (the CLI's stacked tensor) uses it; one image's tiles are never padded.
   */
  doPad: boolean;
}

export interface PreprocessorConfig {
  doResize: boolean;
  size: ResizeTarget;
  /** PIL filter number; always 3 (bicubic), the only one implemented. */
  resample: number;
  doCenterCrop: boolean;
  cropSize: { height: number; width: number };
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  doConvertRgb: boolean;
  /** LlavaNextImageProcessor's tiling (anyres.ts); null for CLIPImageProcessor. */
  anyres: AnyresPreprocessing | null;
  /** Where this came from: a file path, or a note that it is the defaults. */
  source: string;
}

/**
 * The longest image side a size or crop may ask for: the resized and cropped images are
 * allocated from these numbers (4096² RGB as f32 is 200 MB), and vision towers take 224 to
 * 1024 pixels.
 */
export const MAX_IMAGE_SIDE = 4096;

export class PreprocessorConfigError extends Error {
  override name = "PreprocessorConfigError";
}

/** The processor types whose preprocessing this module implements. */
const SUPPORTED_TYPES = ["CLIPImageProcessor", "CLIPFeatureExtractor", "LlavaNextImageProcessor"];
const ANYRES_TYPE = "LlavaNextImageProcessor";

/** LlavaNextImageProcessor's default image_grid_pinpoints (llava-v1.6 at 336 pixels), each [height, width]. */
export const LLAVA_NEXT_DEFAULT_PINPOINTS: readonly (readonly [number, number])[] = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
];

/** The most canvases image_grid_pinpoints may list (real configs list 5 to 36). */
export const MAX_GRID_PINPOINTS = 256;

export const CONFIG_FILE_NAME = "preprocessor_config.json";

/** CLIPImageProcessor's defaults (what an empty `{}` config means). */
export function defaultPreprocessorConfig(source = "CLIPImageProcessor defaults"): PreprocessorConfig {
  return parsePreprocessorConfig({}, source);
}

/**
 * Reads a preprocessor config from a JSON file, or from `preprocessor_config.json` inside a
 * model folder. A folder without one gives CLIPImageProcessor's defaults (with `source` saying
 * so); a missing file named explicitly is an error.
 */
export async function loadPreprocessorConfig(dirOrFile: string): Promise<PreprocessorConfig> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(dirOrFile)).isDirectory();
  } catch (error) {
    throw new PreprocessorConfigError(`${dirOrFile}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const path = isDirectory ? join(dirOrFile, CONFIG_FILE_NAME) : dirOrFile;
  let text: string;
  try {
    text = await readTextFileWithin(path, JSON_CONFIG_FILE, { as: PreprocessorConfigError });
  } catch (error) {
    if (isDirectory && (error as NodeJS.ErrnoException).code === "ENOENT") return defaultPreprocessorConfig(`CLIPImageProcessor defaults (no ${CONFIG_FILE_NAME} in ${dirOrFile})`);
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PreprocessorConfigError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  return parsePreprocessorConfig(json, path);
}

/** Checks and completes a parsed `preprocessor_config.json`; `source` names it in errors. */
export function parsePreprocessorConfig(json: unknown, source: string): PreprocessorConfig {
  const fail = (message: string): never => {
    throw new PreprocessorConfigError(`${source}: ${message}`);
  };
  if (!json || typeof json !== "object" || Array.isArray(json)) fail("is not a JSON object");
  const raw = json as Record<string, unknown>;

  for (const key of ["image_processor_type", "feature_extractor_type"]) {
    const type = raw[key];
    if (type !== undefined && !SUPPORTED_TYPES.includes(type as string)) {
      fail(`${key} ${JSON.stringify(type)} is not supported (only ${SUPPORTED_TYPES.join(", ")} preprocessing is implemented)`);
    }
  }
  // transformers' AutoImageProcessor goes by image_processor_type first.
  const isAnyres = (raw.image_processor_type ?? raw.feature_extractor_type) === ANYRES_TYPE;

  // An absent field takes the default. JSON null does too where transformers replaces None by the
  // default (size, crop_size, image_mean, image_std); elsewhere None would not work there, so
  // null is refused here.
  const valueOf = (key: string, fallback: unknown): unknown => (key in raw ? raw[key] : fallback);
  const flag = (key: string, fallback: boolean): boolean => {
    const value = valueOf(key, fallback);
    if (typeof value !== "boolean") fail(`${key} must be true or false, not ${JSON.stringify(value)}`);
    return value as boolean;
  };
  /** An image side in pixels: it sizes the resized and cropped images. */
  const side = (value: unknown, what: string): number => {
    if (!Number.isSafeInteger(value) || (value as number) < 1) fail(`${what} must be a positive integer, not ${JSON.stringify(value)}`);
    if ((value as number) > MAX_IMAGE_SIDE) fail(`${what} ${value} is more than ${MAX_IMAGE_SIDE} pixels, the most this runtime accepts`);
    return value as number;
  };
  const finite = (value: unknown, what: string): number => {
    if (typeof value !== "number" || !Number.isFinite(value)) fail(`${what} must be a finite number, not ${JSON.stringify(value)}`);
    return value as number;
  };
  /** transformers' get_size_dict: an int, a [height, width] list, or a dict. */
  const sizeDict = (key: string, value: unknown, intMeans: "shortest_edge" | "square"): ResizeTarget => {
    if (typeof value === "number") {
      const n = side(value, key);
      return intMeans === "square" ? { height: n, width: n } : { shortestEdge: n };
    }
    if (Array.isArray(value)) {
      if (value.length !== 2) fail(`${key} as a list must be [height, width], not ${JSON.stringify(value)}`);
      return { height: side(value[0], `${key}[0]`), width: side(value[1], `${key}[1]`) };
    }
    if (!value || typeof value !== "object") fail(`${key} must be an integer, [height, width] or an object, not ${JSON.stringify(value)}`);
    const dict = value as Record<string, unknown>;
    const keys = Object.keys(dict).sort().join(",");
    if (keys === "shortest_edge") return { shortestEdge: side(dict.shortest_edge, `${key}.shortest_edge`) };
    if (keys === "height,width") return { height: side(dict.height, `${key}.height`), width: side(dict.width, `${key}.width`) };
    return fail(`${key} ${JSON.stringify(value)} is not supported: CLIPImageProcessor takes {"shortest_edge"} or {"height", "width"}`);
  };
  const triple = (key: string, fallback: readonly [number, number, number]): [number, number, number] => {
    const value = raw[key] ?? fallback;
    if (typeof value === "number") return [finite(value, key), value, value];
    if (!Array.isArray(value) || value.length !== 3) fail(`${key} must be 3 numbers (one per RGB channel), not ${JSON.stringify(value)}`);
    return (value as unknown[]).map((v, i) => finite(v, `${key}[${i}]`)) as [number, number, number];
  };

  const size = sizeDict("size", raw.size ?? { shortest_edge: 224 }, "shortest_edge");
  const crop = sizeDict("crop_size", raw.crop_size ?? { height: 224, width: 224 }, "square");
  if (!("height" in crop)) fail(`crop_size must give a height and width, not ${JSON.stringify(raw.crop_size)}`);

  const resample = valueOf("resample", BICUBIC);
  if (resample !== BICUBIC) {
    const name = Number.isInteger(resample) ? PIL_RESAMPLE_NAMES[resample as number] : undefined;
    fail(`resample ${JSON.stringify(resample)}${name ? ` (${name})` : ""} is not supported: only 3 (bicubic) is implemented`);
  }

  const imageStd = triple("image_std", OPENAI_CLIP_STD);
  if (imageStd.some((s) => s <= 0)) fail(`image_std ${JSON.stringify(imageStd)} must be positive: normalizing divides by it`);
  const rescaleFactor = finite(valueOf("rescale_factor", 1 / 255), "rescale_factor");
  if (rescaleFactor <= 0) fail(`rescale_factor ${rescaleFactor} must be positive (1/255 maps bytes to [0, 1])`);

  let anyres: AnyresPreprocessing | null = null;
  if (isAnyres) {
    // The tiles are crop_size.height square (get_image_patches' patch_size); a canvas that is
    // not a whole number of tiles would leave partial tiles, which the model cannot place.
    const tile = (crop as { height: number }).height;
    const pinpoints = raw.image_grid_pinpoints ?? LLAVA_NEXT_DEFAULT_PINPOINTS;
    if (!Array.isArray(pinpoints) || pinpoints.length === 0 || pinpoints.length > MAX_GRID_PINPOINTS) {
      fail(`image_grid_pinpoints must be a list of 1 to ${MAX_GRID_PINPOINTS} [height, width] pairs, not ${JSON.stringify(pinpoints)?.slice(0, 200)}`);
    }
    const gridPinpoints = (pinpoints as unknown[]).map((pair, i): [number, number] => {
      const what = `image_grid_pinpoints[${i}]`;
      if (!Array.isArray(pair) || pair.length !== 2) fail(`${what} must be a [height, width] pair, not ${JSON.stringify(pair)}`);
      const [height, width] = [side((pair as unknown[])[0], `${what}[0] (height)`), side((pair as unknown[])[1], `${what}[1] (width)`)];
      if (height % tile !== 0 || width % tile !== 0) {
        fail(
          `${what} ${JSON.stringify(pair)} must be whole multiples of the tile side ${tile}: ` +
            `${ANYRES_TYPE} cuts the canvas into crop_size.height x crop_size.height tiles`,
        );
      }
      return [height, width];
    });
    anyres = { gridPinpoints, doPad: flag("do_pad", true) };
  }

  return {
    doResize: flag("do_resize", true),
    size,
    resample: BICUBIC,
    doCenterCrop: flag("do_center_crop", true),
    cropSize: crop as { height: number; width: number },
    doRescale: flag("do_rescale", true),
    rescaleFactor,
    doNormalize: flag("do_normalize", true),
    imageMean: triple("image_mean", OPENAI_CLIP_MEAN),
    imageStd,
    doConvertRgb: flag("do_convert_rgb", true),
    anyres,
    source,
  };
}

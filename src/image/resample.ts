/**
 * Bicubic resizing that reproduces Pillow's `Image.resize(size, Image.BICUBIC)` bit for bit on
 * 8-bit RGB images, because that is what transformers' CLIPImageProcessor calls and CLIP was
 * trained on its output. (Pillow's algorithm: src/libImaging/Resample.c, unchanged from 4.x to 10.x.)
 *
 * The resize is separable: a horizontal pass resamples every row to the new width, then a
 * vertical pass resamples every column of that to the new height. A pass whose size does not
 * change is skipped (so 336x500 → 336x420 only runs the vertical pass).
 *
 * For each output pixel a pass computes a weighted sum of the input pixels near the point it
 * maps back to. The weights come from the Keys cubic convolution kernel with a = -0.5:
 *
 *     w(x) = (a+2)|x|^3 - (a+3)|x|^2 + 1      for |x| < 1
 *     w(x) = a(|x|^3 - 5|x|^2 + 8|x| - 4)     for 1 <= |x| < 2
 *     w(x) = 0                                 otherwise
 *
 * When shrinking by a factor `scale` > 1 the kernel is stretched by `scale` (support 2 * scale
 * input pixels instead of 2) so every input pixel contributes: this is antialiasing, and the
 * reason a plain 4-tap bicubic differs from Pillow on downscaled images. Weights near the
 * borders are cut off at the image edge and renormalised to sum to 1 (no edge padding).
 *
 * The exact details that make it bit-exact:
 * - weights are computed in float64, normalised, then turned into fixed-point integers with
 *   22 fractional bits (`PRECISION_BITS = 32 - 8 - 2`), rounding half away from zero;
 * - each sum starts at 2^21 (one half, for rounding) and the result is `sum >> 22`, clamped to
 *   0..255: so the intermediate image after the horizontal pass is rounded to 8 bits, exactly
 *   like the final one.
 */
import type { RgbImage } from "./rgb.js";

/** Fractional bits of the fixed-point weights: 8 bits of pixel, 2 of headroom for overshoot. */
const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);

/** The Keys cubic convolution kernel with a = -0.5 (Catmull-Rom). */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}
const BICUBIC_SUPPORT = 2;

/**
 * The weights of one resampling pass from `inSize` to `outSize` pixels: output pixel i reads
 * input pixels first[i] .. first[i] + count[i] - 1 with fixed-point weights
 * weights[i * taps .. i * taps + count[i] - 1].
 */
export interface PassWeights {
  taps: number;
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
}

export function passWeights(inSize: number, outSize: number): PassWeights {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * taps);
  const w = new Float64Array(taps);
  const inverseFilterScale = 1 / filterScale;
  for (let i = 0; i < outSize; i++) {
    // The centre of output pixel i, in input pixel coordinates.
    const center = (i + 0.5) * scale;
    // Pillow rounds the window ends with a truncating cast; truncation and floor only differ
    // below zero, where the start is clamped to 0 anyway.
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let sum = 0;
    for (let x = lo; x < hi; x++) {
      w[x - lo] = bicubic((x - center + 0.5) * inverseFilterScale);
      sum += w[x - lo];
    }
    first[i] = lo;
    count[i] = hi - lo;
    for (let x = 0; x < hi - lo; x++) {
      const normalised = sum !== 0 ? w[x] / sum : w[x];
      // Round half away from zero, as the C cast `(int)(v ± 0.5)` does.
      weights[i * taps + x] = Math.trunc(normalised * (1 << PRECISION_BITS) + (normalised < 0 ? -0.5 : 0.5));
    }
  }
  return { taps, first, count, weights };
}

/** A fixed-point sum back to a byte: drop the fraction (floor), clamp to 0..255. */
function toByte(sum: number): number {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Resamples every row of `image` to `width` pixels. */
function resizeRows(image: RgbImage, width: number): RgbImage {
  const { taps, first, count, weights } = passWeights(image.width, width);
  const src = image.data;
  const out = new Uint8Array(width * image.height * 3);
  for (let y = 0; y < image.height; y++) {
    const row = y * image.width * 3;
    for (let x = 0; x < width; x++) {
      let r = HALF;
      let g = HALF;
      let b = HALF;
      const k = x * taps;
      let p = row + first[x] * 3;
      for (let t = 0; t < count[x]; t++, p += 3) {
        const wt = weights[k + t];
        r += src[p] * wt;
        g += src[p + 1] * wt;
        b += src[p + 2] * wt;
      }
      const o = (y * width + x) * 3;
      out[o] = toByte(r);
      out[o + 1] = toByte(g);
      out[o + 2] = toByte(b);
    }
  }
  return { width, height: image.height, data: out };
}

/** Resamples every column of `image` to `height` pixels. */
function resizeColumns(image: RgbImage, height: number): RgbImage {
  const { taps, first, count, weights } = passWeights(image.height, height);
  const src = image.data;
  const stride = image.width * 3;
  const out = new Uint8Array(image.width * height * 3);
  for (let y = 0; y < height; y++) {
    const k = y * taps;
    const top = first[y] * stride;
    for (let x = 0; x < stride; x++) {
      // Channels are independent here, so walk the interleaved bytes of the row directly.
      let sum = HALF;
      let p = top + x;
      for (let t = 0; t < count[y]; t++, p += stride) sum += src[p] * weights[k + t];
      out[y * stride + x] = toByte(sum);
    }
  }
  return { width: image.width, height, data: out };
}

/** Pillow's bicubic resize of an 8-bit RGB image to width x height (both at least 1). */
export function resizeBicubic(image: RgbImage, width: number, height: number): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resizeBicubic: target size ${width}x${height} is not a positive integer size`);
  }
  if (image.width < 1 || image.height < 1) {
    throw new RangeError(`resizeBicubic: source image is ${image.width}x${image.height}`);
  }
  let out = image;
  if (width !== out.width) out = resizeRows(out, width);
  if (height !== out.height) out = resizeColumns(out, height);
  return out === image ? { width, height, data: image.data.slice() } : out;
}

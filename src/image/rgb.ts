/** An 8-bit RGB image in memory: what every preprocessing step takes and gives. */
export interface RgbImage {
  width: number;
  height: number;
  /** Row-major, interleaved R, G, B bytes: pixel (x, y) starts at 3 * (y * width + x). */
  data: Uint8Array;
}

/** A blank image of the given size, every pixel `fill` (black if not given). */
export function createRgbImage(width: number, height: number, fill: readonly [number, number, number] = [0, 0, 0]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  if (fill.some((v) => v !== 0)) {
    for (let i = 0; i < data.length; i += 3) {
      data[i] = fill[0];
      data[i + 1] = fill[1];
      data[i + 2] = fill[2];
    }
  }
  return { width, height, data };
}

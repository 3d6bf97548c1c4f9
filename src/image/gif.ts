/**
 * What PIL shows where a GIF's first frame has no pixels of its own.
 *
 * libvips (inside sharp) decodes a GIF's first frame to RGBA, and where that frame is
 * transparent, or does not cover the whole logical screen, it gives black (0, 0, 0, 0). PIL
 * keeps the frame as palette indices, fills the screen outside the frame with the transparent
 * index (index 0 when there is none), and `convert('RGB')` then shows the palette colour of
 * that index. This reads just enough of the file to know that colour and the frame's rectangle.
 *
 * PIL's image is the logical screen, grown to hold the first frame if it sticks out. libvips
 * grows it too, but ignores the screen size altogether when it is over 2048 pixels on a side
 * or one of a few monitor sizes (640x480, 800x600, ...), taking the first frame's extent
 * instead: then its image is the top-left corner of PIL's (see decode.ts).
 *
 * GIF layout: "GIF87a"/"GIF89a", a 7-byte logical screen descriptor (width, height, flags with
 * the global colour table's presence and size), the global colour table, then blocks: 0x21
 * extensions (0xF9 is the graphic control extension, which holds the transparent index for the
 * next image) and 0x2C image descriptors (left, top, width, height, flags with a local colour
 * table's presence and size, then the table and the LZW data).
 */

export interface GifFirstFrame {
  /** PIL's image size: the logical screen, grown to hold the frame. */
  width: number;
  height: number;
  /** The frame's rectangle on the logical screen. */
  left: number;
  top: number;
  right: number;
  bottom: number;
  /** The RGB colour PIL gives every pixel the frame does not paint. */
  fill: [number, number, number];
}

/** Parses the blocks before the first image; undefined if the file is not laid out as expected. */
export function gifFirstFrame(bytes: Uint8Array): GifFirstFrame | undefined {
  const u16 = (at: number): number => bytes[at] | (bytes[at + 1] << 8);
  if (bytes.length < 13) return undefined;
  const signature = String.fromCharCode(...bytes.subarray(0, 6));
  if (signature !== "GIF87a" && signature !== "GIF89a") return undefined;
  const screenWidth = u16(6);
  const screenHeight = u16(8);
  let at = 13;
  let palette: Uint8Array | undefined;
  if (bytes[10] & 0x80) {
    const size = 3 << ((bytes[10] & 7) + 1);
    palette = bytes.subarray(at, at + size);
    at += size;
  }
  let transparentIndex: number | undefined;
  while (at < bytes.length) {
    const introducer = bytes[at];
    if (introducer === 0x21) {
      const label = bytes[at + 1];
      at += 2;
      if (label === 0xf9 && bytes[at] >= 4 && bytes[at + 1] & 1) transparentIndex = bytes[at + 4];
      // Skip the data sub-blocks: each is a length byte and that many bytes; 0 ends them.
      while (at < bytes.length && bytes[at] !== 0) at += bytes[at] + 1;
      at += 1;
    } else if (introducer === 0x2c) {
      if (at + 10 > bytes.length) return undefined;
      const flags = bytes[at + 9];
      if (flags & 0x80) palette = bytes.subarray(at + 10, at + 10 + (3 << ((flags & 7) + 1)));
      const left = u16(at + 1);
      const top = u16(at + 3);
      const right = left + u16(at + 5);
      const bottom = top + u16(at + 7);
      const index = transparentIndex ?? 0;
      // Without any colour table PIL keeps the indices as grey levels.
      const fill: [number, number, number] = palette
        ? [palette[3 * index] ?? 0, palette[3 * index + 1] ?? 0, palette[3 * index + 2] ?? 0]
        : [index, index, index];
      return { width: Math.max(screenWidth, right), height: Math.max(screenHeight, bottom), left, top, right, bottom, fill };
    } else {
      return undefined;
    }
  }
  return undefined;
}

/** The logical screen's size, from the header alone (the bytes are known to start with a GIF signature). */
export function gifScreenSize(bytes: Uint8Array): { width: number; height: number } {
  return { width: bytes[6] | (bytes[7] << 8), height: bytes[8] | (bytes[9] << 8) };
}

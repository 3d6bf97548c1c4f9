/**
 * An image's format from its first bytes (its magic number), decided before any decoder sees
 * them. sharp hands whatever libvips recognises to the library that reads it: an SVG to
 * librsvg and libxml2, a HEIF to libheif. Only the raster formats PIL opens for a model's
 * image are wanted, so the bytes are named here first and anything else is refused unparsed.
 * Names are sharp's (metadata.format); some formats are recognised only to be refused by name.
 */

const SIGNATURES: [format: string, matches: (bytes: Uint8Array) => boolean][] = [
  ["jpeg", (b) => startsWith(b, [0xff, 0xd8, 0xff])],
  ["png", (b) => startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])],
  ["gif", (b) => startsWith(b, "GIF87a") || startsWith(b, "GIF89a")],
  ["webp", (b) => startsWith(b, "RIFF") && startsWith(b, "WEBP", 8)],
  // Little- and big-endian TIFF, and BigTIFF (42 and 43).
  ["tiff", (b) => startsWith(b, "II*\0") || startsWith(b, "MM\0*") || startsWith(b, "II+\0") || startsWith(b, "MM\0+")],
  ["bmp", (b) => startsWith(b, "BM")],
  ["pdf", (b) => startsWith(b, "%PDF-")],
  // ISO base media files: HEIC and AVIF (and MP4 videos) start with an 'ftyp' box.
  ["heif", (b) => startsWith(b, "ftyp", 4)],
  ["jp2", (b) => startsWith(b, [0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20]) || startsWith(b, [0xff, 0x4f, 0xff, 0x51])],
  ["jxl", (b) => startsWith(b, [0xff, 0x0a]) || startsWith(b, [0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20])],
  ["gzip", (b) => startsWith(b, [0x1f, 0x8b])],
  ["svg", isSvg],
];

/** The format of these bytes (sharp's name for it), or undefined when none is recognised. */
export function sniffImageFormat(bytes: Uint8Array): string | undefined {
  return SIGNATURES.find(([, matches]) => matches(bytes))?.[0];
}

/** The first bytes in hex, to say what an unrecognised file starts with. */
export function firstBytes(bytes: Uint8Array, count = 8): string {
  return Array.from(bytes.subarray(0, count), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function startsWith(bytes: Uint8Array, prefix: string | number[], at = 0): boolean {
  const codes = typeof prefix === "string" ? Array.from(prefix, (c) => c.charCodeAt(0)) : prefix;
  return bytes.length >= at + codes.length && codes.every((c, i) => bytes[at + i] === c);
}

/** Text (after a BOM and spaces) opening with '<' and naming an <svg element early on, as librsvg would take it. */
function isSvg(bytes: Uint8Array): boolean {
  let at = startsWith(bytes, [0xef, 0xbb, 0xbf]) ? 3 : 0;
  while (at < bytes.length && /\s/.test(String.fromCharCode(bytes[at]))) at++;
  if (bytes[at] !== 0x3c) return false; // '<'
  return /<svg[\s>/]/i.test(Buffer.from(bytes.subarray(at, at + 4096)).toString("latin1"));
}

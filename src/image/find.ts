/**
 * The images of a folder, recursively: every file whose first bytes name a format the decoder
 * reads (sniff.ts), whatever its extension says, in a stable order (paths sorted), with the
 * size and modification time that tell a later run whether it changed.
 */
import { open, readdir, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { SUPPORTED_FORMATS } from "./decode.js";
import { sniffImageFormat } from "./sniff.js";

export interface FoundImage {
  /** The path as given (the folder joined with the file's path in it). */
  path: string;
  /** The path within the folder, with forward slashes: what an index keys the image by. */
  key: string;
  size: number;
  mtimeMs: number;
}

/** Bytes read from each file to recognise its format. */
const SNIFF_BYTES = 16;

export async function findImages(folder: string): Promise<FoundImage[]> {
  const info = await stat(folder).catch(() => undefined);
  if (!info?.isDirectory()) throw new Error(`${folder}: ${info ? "not a folder" : "no such folder"}`);
  const found: FoundImage[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && (await isImageFile(path))) {
        const { size, mtimeMs } = await stat(path);
        found.push({ path, key: relative(folder, path).split(sep).join("/"), size, mtimeMs });
      }
    }
  };
  await walk(folder);
  return found;
}

async function isImageFile(path: string): Promise<boolean> {
  const handle = await open(path, "r").catch(() => undefined);
  if (!handle) return false;
  try {
    const bytes = new Uint8Array(SNIFF_BYTES);
    const { bytesRead } = await handle.read(bytes, 0, SNIFF_BYTES, 0);
    const format = sniffImageFormat(bytes.subarray(0, bytesRead));
    return format !== undefined && (SUPPORTED_FORMATS as readonly string[]).includes(format);
  } finally {
    await handle.close();
  }
}

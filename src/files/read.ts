/**
 * Opening and reading the files the program is given, so that no path can hang it or fill its
 * memory: only regular files are read, and a file read whole must be within its kind's limit
 * (limits.ts).
 *
 * A FIFO blocks open() until a writer comes, a character device (/dev/zero) never ends, a
 * directory is not data. So: stat() first refuses those without opening them (opening a device
 * can itself do something); then the file is opened with O_NONBLOCK, so that a FIFO put in its
 * place since the stat cannot block the open, and fstat on the opened handle decides: what was
 * checked is what is read. (O_NONBLOCK changes nothing for reads of a regular file.)
 */
import { constants, type Stats } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import type { FileKind } from "./limits.js";

export class FileError extends Error {
  override name = "FileError";
}

export interface ReadOptions {
  /** The error class to throw, a reader's own (ConfigError, ImageError, ...); FileError by default. */
  as?: new (message: string) => Error;
}

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** What a file that is not a regular file is, in words. */
export function describeFileType(s: Stats): string {
  if (s.isDirectory()) return "a directory";
  if (s.isFIFO()) return "a FIFO (named pipe)";
  if (s.isCharacterDevice()) return "a character device";
  if (s.isBlockDevice()) return "a block device";
  if (s.isSocket()) return "a socket";
  return "an unknown kind of file";
}

/** Opens a regular file for positioned reads; the caller closes the handle. */
/** Whether anything is at `path` (what is there, if not a regular file, is refused when read). */
export async function pathExists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

export function openRegularFile(path: string, options: ReadOptions = {}): Promise<{ handle: FileHandle; size: number }> {
  return openChecked(path, "cannot open", options.as ?? FileError);
}

/** The bytes of a regular file of at most `kind.maxBytes`. */
export async function readFileWithin(path: string, kind: FileKind, options: ReadOptions = {}): Promise<Buffer> {
  const As = options.as ?? FileError;
  const { handle, size } = await openChecked(path, "cannot read", As);
  try {
    if (size > kind.maxBytes) {
      throw new As(`${path}: ${size} bytes, over the ${kind.maxBytes}-byte (${kind.maxBytes / 2 ** 20} MiB) limit for ${kind.what}`);
    }
    const bytes = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(bytes, filled, size - filled, filled).catch((error: unknown) => osFailure(path, "cannot read", error, As));
      if (bytesRead === 0) break; // truncated since the fstat: what is there
      filled += bytesRead;
    }
    return bytes.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

/** The text (UTF-8) of a regular file of at most `kind.maxBytes`. */
export async function readTextFileWithin(path: string, kind: FileKind, options: ReadOptions = {}): Promise<string> {
  return (await readFileWithin(path, kind, options)).toString("utf8");
}

async function openChecked(path: string, verb: string, As: new (message: string) => Error): Promise<{ handle: FileHandle; size: number }> {
  const before = await stat(path).catch((error: unknown) => osFailure(path, verb, error, As));
  if (!before.isFile()) throw new As(`${path}: not a regular file but ${describeFileType(before)}`);
  const handle = await open(path, OPEN_FLAGS).catch((error: unknown) => osFailure(path, verb, error, As));
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) throw new As(`${path}: not a regular file but ${describeFileType(opened)}`);
    return { handle, size: opened.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** An error of the operating system as `${path}: ${verb} (CODE)`, keeping its code (ENOENT, EACCES, ...). */
function osFailure(path: string, verb: string, error: unknown, As: new (message: string) => Error): never {
  const { code, message } = error as NodeJS.ErrnoException;
  throw Object.assign(new As(`${path}: ${verb} (${code ?? message})`), code ? { code } : {});
}

/**
 * Fills `target` from byte `position` of an open file; a file shorter than that (truncated
 * after it was opened) is an error, not a hang. Errors are `As`, saying `what` was read.
 */
export async function readExactly(
  handle: FileHandle,
  target: Uint8Array,
  position: number,
  what: string,
  As: new (message: string) => Error = FileError,
): Promise<void> {
  let done = 0;
  while (done < target.byteLength) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(target, done, target.byteLength - done, position + done));
    } catch (error) {
      const { code, message } = error as NodeJS.ErrnoException;
      throw new As(`${what}: read failed at byte ${position + done} (${code ?? message ?? String(error)})`);
    }
    if (bytesRead === 0) throw new As(`${what}: file ended early at byte ${position + done}`);
    done += bytesRead;
  }
}

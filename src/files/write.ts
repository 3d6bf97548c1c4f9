/**
 * Writing a file so that writing it destroys nothing:
 *
 * - an existing file is replaced only when the caller says so (`force`, the CLI's --force);
 * - a file the output is computed from (`inputs`) is never replaced, even with force. Paths are
 *   compared by device and inode, so a symlink or another spelling (`./a/../a.png`) of an input
 *   is seen through;
 * - the bytes go to a temporary file in the same folder, which is renamed over the path only
 *   when complete (and synced), so an interrupted or failed write leaves the old file or none,
 *   never half of one; on failure the temporary file is removed.
 *
 * Without force the complete file is hard-linked into place, which fails if something has
 * appeared at the path meanwhile; on a filesystem without hard links it is renamed there.
 */
import { randomBytes } from "node:crypto";
import { link, open, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { describeFileType, FileError } from "./read.js";

export interface WriteOptions {
  /** Replace the file if it exists. */
  force: boolean;
  /** The files the output is made from, which it must never replace. */
  inputs?: readonly string[];
}

/** The bytes, or a function that writes them to the open temporary file. */
export type FileContent = string | Uint8Array | ((handle: FileHandle) => Promise<void>);

/** Writes `content` to `path` through a temporary file and a rename, as the options allow. */
export async function writeFileSafely(path: string, content: FileContent, options: WriteOptions): Promise<void> {
  await checkOutputPath(path, options);
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
  const handle = await open(temporary, "wx").catch((error: NodeJS.ErrnoException) => {
    throw new FileError(`${path}: cannot write (${error.code ?? error.message})`);
  });
  let isOpen = true;
  try {
    if (typeof content === "function") await content(handle);
    else await handle.writeFile(content);
    await handle.sync();
    isOpen = false;
    await handle.close();
    await moveIntoPlace(temporary, path, options.force);
  } catch (error) {
    if (isOpen) await handle.close().catch(() => undefined);
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

/** Throws unless `path` may be written with these options: not an input, not a folder or device, not existing unless forced. */
export async function checkOutputPath(path: string, options: WriteOptions): Promise<void> {
  const existing = await stat(path).catch(() => undefined);
  if (!existing) return;
  for (const input of options.inputs ?? []) {
    const s = await stat(input).catch(() => undefined);
    if (s && s.dev === existing.dev && s.ino === existing.ino) {
      throw new FileError(`${path}: is the input ${input}; writing it would destroy what it is made from`);
    }
  }
  if (!existing.isFile()) throw new FileError(`${path}: exists and is ${describeFileType(existing)}, not a file to replace`);
  if (!options.force) throw new FileError(`${path}: already exists (--force replaces it)`);
}

async function moveIntoPlace(temporary: string, path: string, force: boolean): Promise<void> {
  if (force) return rename(temporary, path);
  try {
    await link(temporary, path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new FileError(`${path}: already exists (--force replaces it)`);
    return rename(temporary, path); // no hard links here: the check before writing must do
  }
  await unlink(temporary);
}

/** A write may take fewer bytes than given (and one call takes at most 2 GiB): loop until done. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  const chunk = 1 << 30;
  for (let done = 0; done < bytes.byteLength; ) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(chunk, bytes.byteLength - done));
    done += bytesWritten;
  }
}

/**
 * Crash-safe small-file replacement: write a temporary file, fsync it, rename it over the target
 * and fsync the directory, so a reader after a crash sees either the old or the new contents,
 * never a torn mix. Used for checkpoints (recovery point, leader epochs, log start offset).
 */
import { open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";

/** Suffix of the temporary file a replacement writes first; recovery deletes leftovers. */
export const TEMP_FILE_SUFFIX = ".tmp";

/** Replaces `path` with `data` atomically and durably. */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}${TEMP_FILE_SUFFIX}`;
  const fh = await open(tmp, "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}

/** Fsyncs a directory so a rename or a new file in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Shared machinery of the two sparse segment indexes (offset index and time index): loading and
 * size-checking an index file, the fixed-capacity growth of the in-memory arrays, binary search,
 * and lazy, incremental persistence.
 *
 * Persistence scheme: the entries are the source of truth in memory; the file holds a prefix of
 * them. A flush appends only the entries not yet written, at their file position. When entries
 * that were already written are dropped (truncation), the file is first cut to the kept entries
 * (ftruncate) and then the tail is written. Every flush ends with an fsync. The file descriptor is
 * opened on the first flush and kept open until `close()` / `deleteFile()`.
 */
import { constants } from "node:fs";
import { type FileHandle, open, readFile, rename, unlink } from "node:fs/promises";
import { assert } from "../../shared/errors.js";

/** Largest value a signed 32-bit index field can hold. */
export const INT32_MAX = 2 ** 31 - 1;

/** Entries allocated in memory for a new index; capacity doubles up to `maxEntries`. */
export const INDEX_INITIAL_CAPACITY_ENTRIES = 64;

/** Mode of newly created index files (rw-r--r--). */
const INDEX_FILE_MODE = 0o644;

/**
 * Thrown when an index file on disk is damaged (size not a multiple of the entry size, too many
 * entries, out-of-order or negative fields). The caller rebuilds the index from the log.
 */
export class IndexCorruptError extends Error {
  /** The damaged file. */
  readonly path: string;

  constructor(path: string, reason: string) {
    super(`index file ${path} is corrupt: ${reason}`);
    this.name = "IndexCorruptError";
    this.path = path;
  }
}

/**
 * Reads a whole index file and checks its size. Returns `undefined` when the file does not exist.
 * Throws {@link IndexCorruptError} when its size is not a multiple of `entryBytes` or it holds
 * more than `maxEntries` entries; other I/O errors propagate unchanged.
 */
export async function readIndexFile(
  path: string,
  entryBytes: number,
  maxEntries: number,
): Promise<Buffer | undefined> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  if (data.length % entryBytes !== 0) {
    throw new IndexCorruptError(
      path,
      `size ${data.length} bytes is not a multiple of the ${entryBytes}-byte entry size`,
    );
  }
  const entries = data.length / entryBytes;
  if (entries > maxEntries) {
    throw new IndexCorruptError(path, `${entries} entries exceed the maximum of ${maxEntries}`);
  }
  return data;
}

/**
 * Index of the last of `keys[0..count)` that is ≤ `target`, or -1 when all are greater (or
 * `count` is 0). `keys[0..count)` must be sorted ascending.
 */
export function floorIndex(keys: ArrayLike<number>, count: number, target: number): number {
  let lo = 0;
  let hi = count - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= target) lo = mid + 1;
    else hi = mid - 1;
  }
  return hi;
}

/**
 * Index of the first of `keys[0..count)` that is ≥ `target`, or `count` when all are smaller.
 * `keys[0..count)` must be sorted ascending (duplicates allowed).
 */
export function lowerBound(keys: ArrayLike<number>, count: number, target: number): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A copy of `array` with room for `capacity` elements (the first `array.length` kept). */
export function withCapacity<T extends Int32Array | Float64Array>(array: T, capacity: number): T {
  const Ctor = array.constructor as new (length: number) => T;
  const next = new Ctor(capacity);
  next.set(array);
  return next;
}

/**
 * Base class of the sparse indexes: entry count, capacity policy and the file lifecycle. A
 * subclass keeps its entries in typed arrays and encodes one entry in the big-endian file format
 * in {@link encodeEntry}. All file operations are serialized, so a flush racing a close or a
 * rename cannot interleave its writes with them.
 */
export abstract class SparseIndexFile {
  /** First offset of the segment; entries store offsets relative to it. */
  readonly baseOffset: number;
  /** Capacity of the index in entries; a full index makes the segment roll. */
  readonly maxEntries: number;
  /** Number of entries in memory. */
  protected count: number;
  private readonly entryBytes: number;
  private filePath: string;
  private fh: FileHandle | undefined = undefined;
  /** Entries `[0, persisted)` are known to be in the file at their position. */
  private persisted: number;
  /** The file may hold bytes past `persisted` entries: cut it before writing. */
  private truncatePending: boolean;
  private queue: Promise<unknown> = Promise.resolve();

  /**
   * @param loadedEntries entries loaded from an existing, intact file (which then needs no
   *   rewrite), or `undefined` for an empty index whose file is (re)written on the first flush.
   */
  protected constructor(
    path: string,
    baseOffset: number,
    maxEntries: number,
    entryBytes: number,
    loadedEntries: number | undefined,
  ) {
    assert(Number.isSafeInteger(baseOffset) && baseOffset >= 0, "index base offset is invalid");
    assert(Number.isInteger(maxEntries) && maxEntries >= 1, "index maxEntries must be ≥ 1");
    assert(
      loadedEntries === undefined || loadedEntries <= maxEntries,
      "loaded index exceeds maxEntries",
    );
    this.filePath = path;
    this.baseOffset = baseOffset;
    this.maxEntries = maxEntries;
    this.entryBytes = entryBytes;
    this.count = loadedEntries ?? 0;
    this.persisted = loadedEntries ?? 0;
    this.truncatePending = loadedEntries === undefined;
  }

  /** Path of the index file (changes with {@link renameTo}). */
  get path(): string {
    return this.filePath;
  }

  /** Number of entries. */
  get entryCount(): number {
    return this.count;
  }

  /** True when no further entry fits (`entryCount === maxEntries`). */
  get isFull(): boolean {
    return this.count >= this.maxEntries;
  }

  /** Writes the not-yet-persisted entries (after cutting dropped ones) and fsyncs the file. */
  flush(): Promise<void> {
    return this.serialize(() => this.flushNow());
  }

  /** Flushes, then closes the file descriptor. The index stays usable (it reopens lazily). */
  close(): Promise<void> {
    return this.serialize(async () => {
      await this.flushNow();
      await this.closeHandle();
    });
  }

  /** Closes the file descriptor and deletes the file; a missing file is fine. */
  deleteFile(): Promise<void> {
    return this.serialize(async () => {
      await this.closeHandle();
      try {
        await unlink(this.filePath);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      this.persisted = 0;
      this.truncatePending = true;
    });
  }

  /**
   * Renames the file (e.g. to mark a segment deleted). An open descriptor stays valid; a file
   * never flushed yet is simply created under the new name later.
   */
  renameTo(path: string): Promise<void> {
    return this.serialize(async () => {
      try {
        await rename(this.filePath, path);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      this.filePath = path;
    });
  }

  /** Encodes entry `index` in the file format into `out` at byte `at`. */
  protected abstract encodeEntry(index: number, out: Buffer, at: number): void;

  /** Capacity to grow to when `current` entries are full; never above `maxEntries`. */
  protected grownCapacity(current: number): number {
    return Math.min(this.maxEntries, Math.max(INDEX_INITIAL_CAPACITY_ENTRIES, current * 2));
  }

  /** Initial in-memory capacity for `entries` loaded entries. */
  protected initialCapacity(entries: number): number {
    return Math.min(this.maxEntries, Math.max(INDEX_INITIAL_CAPACITY_ENTRIES, entries));
  }

  /** Keeps only the first `count` entries; remembers to cut the file if they were written. */
  protected truncateEntries(count: number): void {
    assert(count >= 0 && count <= this.count, "index truncation beyond its entries");
    this.count = count;
    if (count < this.persisted) {
      this.persisted = count;
      this.truncatePending = true;
    }
  }

  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const result = this.queue.then(op);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async flushNow(): Promise<void> {
    const start = this.persisted;
    const end = this.count;
    const truncate = this.truncatePending;
    if (start === end && !truncate) return;
    // Encode before the first await: entries may change while the write is in flight, and such
    // changes update `persisted`/`truncatePending` for the next flush.
    const bytes = Buffer.allocUnsafe((end - start) * this.entryBytes);
    for (let i = start; i < end; i++) this.encodeEntry(i, bytes, (i - start) * this.entryBytes);
    this.persisted = end;
    this.truncatePending = false;
    try {
      const fh = await this.handle();
      if (truncate) await fh.truncate(start * this.entryBytes);
      await writeFully(fh, bytes, start * this.entryBytes);
      await fh.sync();
    } catch (err) {
      // The file's state is unknown: rewrite it entirely on the next flush.
      this.persisted = 0;
      this.truncatePending = true;
      throw err;
    }
  }

  private async handle(): Promise<FileHandle> {
    if (this.fh === undefined) {
      this.fh = await open(this.filePath, constants.O_RDWR | constants.O_CREAT, INDEX_FILE_MODE);
    }
    return this.fh;
  }

  private async closeHandle(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    if (fh !== undefined) await fh.close();
  }
}

/** Writes all of `bytes` at file `position`, looping over short writes. */
async function writeFully(fh: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
    assert(bytesWritten > 0, "index write made no progress");
    done += bytesWritten;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

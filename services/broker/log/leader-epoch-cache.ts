/**
 * The leader-epoch cache of one partition (Kafka KIP-101/279, `LeaderEpochFileCache`): for every
 * leader epoch, the first offset written in it. Followers use it to find where their log diverges
 * from the leader's (OffsetsForLeaderEpoch) and truncate there instead of to their high watermark.
 *
 * Persisted as Kafka's `leader-epoch-checkpoint` text file: a version line `0`, a line with the
 * entry count, then one `<epoch> <startOffset>` line per entry, each line ending in `\n`. The file
 * is replaced atomically on {@link LeaderEpochCache.flush}, and only when something changed.
 */
import { readFile } from "node:fs/promises";
import { assert, ErrorCode, SamsaError } from "../../shared/errors.js";
import { writeFileAtomic } from "./atomic-file.js";

/** Epoch answered when none is known (Kafka's `UNDEFINED_EPOCH`). */
export const UNDEFINED_EPOCH = -1;
/** End offset answered when none is known (Kafka's `UNDEFINED_EPOCH_OFFSET`). */
export const UNDEFINED_EPOCH_OFFSET = -1;
/** The only checkpoint file version (Kafka's `LeaderEpochCheckpointFile.CurrentVersion`). */
export const LEADER_EPOCH_CHECKPOINT_VERSION = 0;

/** Largest leader epoch: epochs are int32 on the wire. */
const EPOCH_MAX = 2 ** 31 - 1;

/** One cache entry: leader `epoch` started writing at `startOffset`. */
export interface EpochEntry {
  readonly epoch: number;
  readonly startOffset: number;
}

/** Result of {@link LeaderEpochCache.endOffsetFor}. */
export interface EpochEndOffset {
  /** Largest known epoch ≤ the requested one (or as described there). */
  readonly epoch: number;
  /** Exclusive end offset of that epoch. */
  readonly endOffset: number;
}

/**
 * Epoch → start offset, with strictly increasing epochs and strictly increasing start offsets.
 * Mutations only mark the cache dirty; the owner calls {@link flush} to persist.
 */
export class LeaderEpochCache {
  /** The checkpoint file. */
  readonly path: string;
  private list: EpochEntry[];
  private dirty = false;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string) {
    this.path = path;
    this.list = [];
  }

  /**
   * Loads the checkpoint at `path`; a missing (or, as in Kafka, empty) file gives an empty cache.
   * Entries are re-assigned one by one, so a file with non-monotonic entries is normalized the
   * way Kafka does it. Throws {@link SamsaError} `KAFKA_STORAGE_ERROR` naming the file (and the
   * line) when the file is malformed or cannot be read.
   */
  static async load(path: string): Promise<LeaderEpochCache> {
    const cache = new LeaderEpochCache(path);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return cache;
      throw storageError(`cannot read leader epoch checkpoint ${path}`, err);
    }
    const parsed = parseCheckpoint(path, text);
    for (const entry of parsed) cache.assign(entry.epoch, entry.startOffset);
    // Each assign either appends its entry or drops entries, so an unchanged length means the
    // file was already normalized and needs no rewrite.
    cache.dirty = cache.list.length !== parsed.length;
    return cache;
  }

  /** The entries, oldest epoch first (a copy). */
  entries(): readonly EpochEntry[] {
    return this.list.slice();
  }

  /** The latest epoch, {@link UNDEFINED_EPOCH} when empty. */
  latestEpoch(): number {
    return this.list.at(-1)?.epoch ?? UNDEFINED_EPOCH;
  }

  /** The latest entry, `undefined` when empty. */
  latestEntry(): EpochEntry | undefined {
    return this.list.at(-1);
  }

  /**
   * Records that `epoch` starts at `startOffset` (Kafka's `assign`). A no-op when `epoch` is the
   * latest epoch and `startOffset` is not below its start offset. Otherwise every entry that
   * would break monotonicity (epoch ≥ `epoch` or start offset ≥ `startOffset`) is removed from the
   * end, then the new entry is appended. Asserts `epoch` and `startOffset` are ≥ 0.
   */
  assign(epoch: number, startOffset: number): void {
    assert(Number.isInteger(epoch) && epoch >= 0 && epoch <= EPOCH_MAX, "leader epoch is invalid");
    assert(Number.isSafeInteger(startOffset) && startOffset >= 0, "epoch start offset is invalid");
    const latest = this.list.at(-1);
    if (latest !== undefined && latest.epoch === epoch && startOffset >= latest.startOffset) return;
    while (this.list.length > 0) {
      const last = this.list[this.list.length - 1]!;
      if (last.epoch < epoch && last.startOffset < startOffset) break;
      this.list.pop();
    }
    this.list.push(Object.freeze({ epoch, startOffset }));
    this.dirty = true;
  }

  /**
   * Kafka's OffsetsForLeaderEpoch answer (`LeaderEpochFileCache.endOffsetFor`):
   * - `requestedEpoch` is {@link UNDEFINED_EPOCH} → (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
   * - it is the latest epoch → (latest, `logEndOffset`);
   * - it is above every known epoch (or the cache is empty) → (UNDEFINED_EPOCH,
   *   UNDEFINED_EPOCH_OFFSET);
   * - it is below the first epoch → (`requestedEpoch`, start offset of the first epoch): the older
   *   history is gone, so the follower truncates to where the leader's known history starts;
   * - otherwise → (largest epoch ≤ requested, start offset of the first epoch above it).
   */
  endOffsetFor(requestedEpoch: number, logEndOffset: number): EpochEndOffset {
    const list = this.list;
    if (requestedEpoch === UNDEFINED_EPOCH) return UNDEFINED_END_OFFSET;
    if (list.length > 0 && list[list.length - 1]!.epoch === requestedEpoch) {
      return { epoch: requestedEpoch, endOffset: logEndOffset };
    }
    const floor = floorBy(list, requestedEpoch, (e) => e.epoch);
    const higher = list[floor + 1];
    if (higher === undefined) return UNDEFINED_END_OFFSET;
    if (floor < 0) return { epoch: requestedEpoch, endOffset: higher.startOffset };
    return { epoch: list[floor]!.epoch, endOffset: higher.startOffset };
  }

  /** Epoch of the entry covering `offset`; {@link UNDEFINED_EPOCH} before the first entry. */
  epochForOffset(offset: number): number {
    const i = floorBy(this.list, offset, (e) => e.startOffset);
    return i < 0 ? UNDEFINED_EPOCH : this.list[i]!.epoch;
  }

  /** Removes the entries with start offset ≥ `endOffset` (after a log truncation to it). */
  truncateFromEnd(endOffset: number): void {
    if (endOffset < 0) return;
    const keep = floorBy(this.list, endOffset - 1, (e) => e.startOffset) + 1;
    if (keep === this.list.length) return;
    this.list.length = keep;
    this.dirty = true;
  }

  /**
   * Drops the history before the new log start offset `startOffset`: entries starting at or
   * before it are removed except the latest of them, which is moved to start at `startOffset`.
   * An entry starting exactly at `startOffset` is kept as is.
   */
  truncateFromStart(startOffset: number): void {
    const last = floorBy(this.list, startOffset, (e) => e.startOffset);
    if (last < 0) return;
    const kept = this.list[last]!;
    if (last === 0 && kept.startOffset === startOffset) return;
    this.list.splice(0, last + 1, Object.freeze({ epoch: kept.epoch, startOffset }));
    this.dirty = true;
  }

  /** Removes every entry. */
  clear(): void {
    if (this.list.length === 0) return;
    this.list = [];
    this.dirty = true;
  }

  /**
   * Writes the checkpoint atomically when anything changed since the last flush (or load).
   * Throws {@link SamsaError} `KAFKA_STORAGE_ERROR` when the write fails; the cache stays dirty.
   */
  flush(): Promise<void> {
    const result = this.queue.then(() => this.flushNow());
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async flushNow(): Promise<void> {
    if (!this.dirty) return;
    const text = formatCheckpoint(this.list);
    this.dirty = false;
    try {
      await writeFileAtomic(this.path, text);
    } catch (err) {
      this.dirty = true;
      throw storageError(`cannot write leader epoch checkpoint ${this.path}`, err);
    }
  }
}

const UNDEFINED_END_OFFSET: EpochEndOffset = Object.freeze({
  epoch: UNDEFINED_EPOCH,
  endOffset: UNDEFINED_EPOCH_OFFSET,
});

/** Index of the last entry whose `key` is ≤ `target` (keys ascending), or -1. */
function floorBy(list: readonly EpochEntry[], target: number, key: (e: EpochEntry) => number) {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (key(list[mid]!) <= target) lo = mid + 1;
    else hi = mid - 1;
  }
  return hi;
}

/** The checkpoint text of `entries`, byte for byte as Kafka writes it. */
function formatCheckpoint(entries: readonly EpochEntry[]): string {
  let text = `${LEADER_EPOCH_CHECKPOINT_VERSION}\n${entries.length}\n`;
  for (const e of entries) text += `${e.epoch} ${e.startOffset}\n`;
  return text;
}

/**
 * Parses checkpoint text like Kafka's `CheckpointReadBuffer`: an empty file, or one with only the
 * version line, has no entries; otherwise the version must be 0, the count must match the entry
 * lines, and each entry line holds two whitespace-separated non-negative integers.
 */
function parseCheckpoint(path: string, text: string): EpochEntry[] {
  // Lines end in "\n" (or "\r\n", which Java's readLine also accepts).
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  const malformed = (lineNo: number, why: string) =>
    new SamsaError(
      ErrorCode.KAFKA_STORAGE_ERROR,
      `malformed leader epoch checkpoint ${path}, line ${lineNo}: ${why}`,
    );
  if (lines.length === 0) return [];
  const version = parseInteger(lines[0]!);
  if (version !== LEADER_EPOCH_CHECKPOINT_VERSION) {
    throw malformed(1, `unsupported version "${lines[0]}"`);
  }
  if (lines.length === 1) return [];
  const expected = parseInteger(lines[1]!);
  if (expected === undefined || expected < 0) throw malformed(2, `bad entry count "${lines[1]}"`);
  const entries: EpochEntry[] = [];
  for (let i = 2; i < lines.length; i++) {
    const fields = lines[i]!.split(/\s+/);
    const epoch = fields.length === 2 ? parseInteger(fields[0]!) : undefined;
    const startOffset = fields.length === 2 ? parseInteger(fields[1]!) : undefined;
    if (epoch === undefined || epoch < 0 || epoch > EPOCH_MAX) {
      throw malformed(i + 1, `bad entry "${lines[i]}"`);
    }
    if (startOffset === undefined || startOffset < 0) {
      throw malformed(i + 1, `bad entry "${lines[i]}"`);
    }
    entries.push({ epoch, startOffset });
  }
  if (entries.length !== expected) {
    throw malformed(lines.length, `expected ${expected} entries but found ${entries.length}`);
  }
  return entries;
}

/** The safe integer `field` spells in decimal, or `undefined`. */
function parseInteger(field: string): number | undefined {
  if (!/^-?\d+$/.test(field)) return undefined;
  const value = Number(field);
  return Number.isSafeInteger(value) ? value : undefined;
}

function storageError(message: string, cause: unknown): SamsaError {
  const detail = cause instanceof Error ? `: ${cause.message}` : "";
  return new SamsaError(ErrorCode.KAFKA_STORAGE_ERROR, `${message}${detail}`, { cause });
}

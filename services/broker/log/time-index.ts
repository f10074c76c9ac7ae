/**
 * The sparse time index of one segment (Kafka's `.timeindex`): maps a timestamp to the first
 * offset whose batch may hold a record at or after it. An entry is added only when a batch raises
 * the segment's largest timestamp, so timestamps strictly increase along the index.
 *
 * File format: entries of {@link TIME_INDEX_ENTRY_BYTES} bytes, big-endian:
 * `timestamp int64` (ms since the epoch), `relativeOffset int32` (offset − baseOffset).
 * Entries live in memory and are persisted lazily by {@link TimeIndex.flush}.
 */
import { assert } from "../../shared/errors.js";
import {
  floorIndex,
  INT32_MAX,
  IndexCorruptError,
  lowerBound,
  readIndexFile,
  SparseIndexFile,
  withCapacity,
} from "./index-file.js";

/** Size of one time-index entry in the file, in bytes. */
export const TIME_INDEX_ENTRY_BYTES = 12;

/** Timestamp reported for "no entry" (Kafka's `NO_TIMESTAMP`). */
export const NO_TIMESTAMP = -1;

/** 2^32, to split a 64-bit timestamp into two 32-bit halves without BigInt. */
const UINT32_RANGE = 2 ** 32;

/** A time-index entry: records at or after `timestamp` are at offsets ≥ `offset`. */
export interface TimestampOffset {
  /** Timestamp in ms since the epoch; {@link NO_TIMESTAMP} for "none". */
  readonly timestamp: number;
  /** Absolute offset. */
  readonly offset: number;
}

/** The sparse timestamp → offset index of one segment. */
export class TimeIndex extends SparseIndexFile {
  /** Timestamps in ms, strictly increasing (float64 holds every safe-integer timestamp). */
  private timestamps: Float64Array;
  /** Offsets relative to `baseOffset`, non-decreasing. */
  private relOffsets: Int32Array;

  private constructor(
    path: string,
    baseOffset: number,
    maxEntries: number,
    loadedEntries: number | undefined,
  ) {
    super(path, baseOffset, maxEntries, TIME_INDEX_ENTRY_BYTES, loadedEntries);
    const capacity = this.initialCapacity(loadedEntries ?? 0);
    this.timestamps = new Float64Array(capacity);
    this.relOffsets = new Int32Array(capacity);
  }

  /**
   * Loads the index file at `path`; a missing file gives an empty index. Throws
   * {@link IndexCorruptError} when the file is damaged: size not a multiple of the entry size,
   * more than `maxEntries` entries, a negative or non-increasing timestamp, or a negative or
   * decreasing relative offset.
   *
   * @param baseOffset first offset of the segment.
   * @param maxEntries capacity in entries (`segment.index.bytes` / entry size).
   */
  static async open(path: string, baseOffset: number, maxEntries: number): Promise<TimeIndex> {
    const data = await readIndexFile(path, TIME_INDEX_ENTRY_BYTES, maxEntries);
    if (data === undefined) return TimeIndex.create(path, baseOffset, maxEntries);
    const entries = data.length / TIME_INDEX_ENTRY_BYTES;
    const index = new TimeIndex(path, baseOffset, maxEntries, entries);
    let lastTs = NO_TIMESTAMP;
    let lastRel = 0;
    for (let i = 0; i < entries; i++) {
      const at = i * TIME_INDEX_ENTRY_BYTES;
      const ts = data.readInt32BE(at) * UINT32_RANGE + data.readUInt32BE(at + 4);
      const rel = data.readInt32BE(at + 8);
      if (!Number.isSafeInteger(ts) || ts <= lastTs) {
        throw new IndexCorruptError(path, `entry ${i}: timestamp ${ts} after ${lastTs}`);
      }
      if (rel < lastRel) {
        throw new IndexCorruptError(path, `entry ${i}: relative offset ${rel} after ${lastRel}`);
      }
      index.timestamps[i] = ts;
      index.relOffsets[i] = rel;
      lastTs = ts;
      lastRel = rel;
    }
    return index;
  }

  /**
   * An empty index, for a new segment or a rebuild from the log. Nothing touches the disk until
   * the first flush, which (re)writes the file from scratch.
   */
  static create(path: string, baseOffset: number, maxEntries: number): TimeIndex {
    return new TimeIndex(path, baseOffset, maxEntries, undefined);
  }

  /** Timestamp of the last entry in ms; {@link NO_TIMESTAMP} (−1) when empty. */
  get lastTimestamp(): number {
    return this.count === 0 ? NO_TIMESTAMP : this.timestamps[this.count - 1]!;
  }

  /** The last entry; `{ NO_TIMESTAMP, baseOffset }` when empty. */
  get lastEntry(): TimestampOffset {
    const count = this.count;
    if (count === 0) return { timestamp: NO_TIMESTAMP, offset: this.baseOffset };
    return {
      timestamp: this.timestamps[count - 1]!,
      offset: this.baseOffset + this.relOffsets[count - 1]!,
    };
  }

  /**
   * Records that offsets from `offset` on may hold `timestamp` (ms). A no-op unless `timestamp`
   * is above {@link lastTimestamp}. Invariants (asserted): `offset` is within int32 above
   * `baseOffset` and not below the last entry's offset; an actual append needs room.
   */
  append(timestamp: number, offset: number): void {
    const count = this.count;
    const rel = offset - this.baseOffset;
    assert(
      Number.isInteger(rel) && rel >= 0 && rel <= INT32_MAX,
      "time index append: offset out of range",
    );
    assert(
      count === 0 || rel >= this.relOffsets[count - 1]!,
      "time index append: offset below the last entry",
    );
    if (!(timestamp > this.lastTimestamp)) return;
    assert(Number.isSafeInteger(timestamp), "time index append: timestamp is not a safe integer");
    assert(count < this.maxEntries, "time index append: index is full");
    if (count === this.timestamps.length) {
      const capacity = this.grownCapacity(count);
      this.timestamps = withCapacity(this.timestamps, capacity);
      this.relOffsets = withCapacity(this.relOffsets, capacity);
    }
    this.timestamps[count] = timestamp;
    this.relOffsets[count] = rel;
    this.count = count + 1;
  }

  /**
   * The entry with the largest timestamp ≤ `timestamp` (binary search), or
   * `{ NO_TIMESTAMP, baseOffset }` when there is none.
   */
  lookup(timestamp: number): TimestampOffset {
    const i = floorIndex(this.timestamps, this.count, timestamp);
    if (i < 0) return { timestamp: NO_TIMESTAMP, offset: this.baseOffset };
    return { timestamp: this.timestamps[i]!, offset: this.baseOffset + this.relOffsets[i]! };
  }

  /** Drops every entry whose offset is ≥ `offset`. */
  truncateTo(offset: number): void {
    this.truncateEntries(lowerBound(this.relOffsets, this.count, offset - this.baseOffset));
  }

  protected override encodeEntry(index: number, out: Buffer, at: number): void {
    const ts = this.timestamps[index]!;
    const high = Math.floor(ts / UINT32_RANGE);
    out.writeInt32BE(high, at);
    out.writeUInt32BE(ts - high * UINT32_RANGE, at + 4);
    out.writeInt32BE(this.relOffsets[index]!, at + 8);
  }
}

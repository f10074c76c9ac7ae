/**
 * The sparse offset index of one segment (Kafka's `.index`): maps an offset to the byte position
 * of a batch at or before it in the segment's `.log` file. One entry every
 * `index.interval.bytes` of log; a read looks up the nearest entry below its target offset and
 * scans forward from there.
 *
 * File format: entries of {@link OFFSET_INDEX_ENTRY_BYTES} bytes, big-endian:
 * `relativeOffset int32` (offset − baseOffset), `position int32` (byte position in the `.log`).
 * Entries live in memory and are persisted lazily by {@link OffsetIndex.flush}.
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

export { IndexCorruptError } from "./index-file.js";

/** Size of one offset-index entry in the file, in bytes. */
export const OFFSET_INDEX_ENTRY_BYTES = 8;

/** An offset-index entry: a batch at or before `offset` starts at byte `position`. */
export interface OffsetPosition {
  /** Absolute offset. */
  readonly offset: number;
  /** Byte position in the segment's `.log` file. */
  readonly position: number;
}

/** The sparse offset → position index of one segment. */
export class OffsetIndex extends SparseIndexFile {
  /** Offsets relative to `baseOffset`, strictly increasing. */
  private relOffsets: Int32Array;
  /** Byte positions, non-decreasing. */
  private positions: Int32Array;

  private constructor(
    path: string,
    baseOffset: number,
    maxEntries: number,
    loadedEntries: number | undefined,
  ) {
    super(path, baseOffset, maxEntries, OFFSET_INDEX_ENTRY_BYTES, loadedEntries);
    const capacity = this.initialCapacity(loadedEntries ?? 0);
    this.relOffsets = new Int32Array(capacity);
    this.positions = new Int32Array(capacity);
  }

  /**
   * Loads the index file at `path`; a missing file gives an empty index. Throws
   * {@link IndexCorruptError} when the file is damaged: size not a multiple of the entry size,
   * more than `maxEntries` entries, a negative or non-increasing relative offset, or a negative
   * or decreasing position.
   *
   * @param baseOffset first offset of the segment.
   * @param maxEntries capacity in entries (`segment.index.bytes` / entry size).
   */
  static async open(path: string, baseOffset: number, maxEntries: number): Promise<OffsetIndex> {
    const data = await readIndexFile(path, OFFSET_INDEX_ENTRY_BYTES, maxEntries);
    if (data === undefined) return OffsetIndex.create(path, baseOffset, maxEntries);
    const entries = data.length / OFFSET_INDEX_ENTRY_BYTES;
    const index = new OffsetIndex(path, baseOffset, maxEntries, entries);
    let lastRel = -1;
    let lastPos = 0;
    for (let i = 0; i < entries; i++) {
      const at = i * OFFSET_INDEX_ENTRY_BYTES;
      const rel = data.readInt32BE(at);
      const pos = data.readInt32BE(at + 4);
      if (rel <= lastRel) {
        throw new IndexCorruptError(path, `entry ${i}: relative offset ${rel} after ${lastRel}`);
      }
      if (pos < lastPos) {
        throw new IndexCorruptError(path, `entry ${i}: position ${pos} after ${lastPos}`);
      }
      index.relOffsets[i] = rel;
      index.positions[i] = pos;
      lastRel = rel;
      lastPos = pos;
    }
    return index;
  }

  /**
   * An empty index, for a new segment or a rebuild from the log. Nothing touches the disk until
   * the first flush, which (re)writes the file from scratch.
   */
  static create(path: string, baseOffset: number, maxEntries: number): OffsetIndex {
    return new OffsetIndex(path, baseOffset, maxEntries, undefined);
  }

  /** Offset of the last entry; `baseOffset` when empty. */
  get lastOffset(): number {
    return this.count === 0 ? this.baseOffset : this.baseOffset + this.relOffsets[this.count - 1]!;
  }

  /** Position of the last entry; 0 when empty. */
  get lastPosition(): number {
    return this.count === 0 ? 0 : this.positions[this.count - 1]!;
  }

  /**
   * Adds an entry. Invariants (asserted): the index is not full; `offset` is above the last
   * entry's offset (the first entry may be `baseOffset` itself) and within int32 of
   * `baseOffset`; `position` is an int32 not below the last entry's position.
   */
  append(offset: number, position: number): void {
    const count = this.count;
    const rel = offset - this.baseOffset;
    assert(count < this.maxEntries, "offset index append: index is full");
    assert(
      Number.isInteger(rel) && rel >= 0 && rel <= INT32_MAX,
      "offset index append: offset out of range",
    );
    assert(
      count === 0 || rel > this.relOffsets[count - 1]!,
      "offset index append: offset not above the last entry",
    );
    assert(
      Number.isInteger(position) && position <= INT32_MAX,
      "offset index append: position out of range",
    );
    assert(
      position >= (count === 0 ? 0 : this.positions[count - 1]!),
      "offset index append: position below the last entry",
    );
    if (count === this.relOffsets.length) {
      const capacity = this.grownCapacity(count);
      this.relOffsets = withCapacity(this.relOffsets, capacity);
      this.positions = withCapacity(this.positions, capacity);
    }
    this.relOffsets[count] = rel;
    this.positions[count] = position;
    this.count = count + 1;
  }

  /**
   * The entry with the largest offset ≤ `offset` (binary search), or `{ baseOffset, 0 }` when
   * `offset` is before the first entry or the index is empty.
   */
  lookup(offset: number): OffsetPosition {
    const i = floorIndex(this.relOffsets, this.count, offset - this.baseOffset);
    if (i < 0) return { offset: this.baseOffset, position: 0 };
    return { offset: this.baseOffset + this.relOffsets[i]!, position: this.positions[i]! };
  }

  /** Drops every entry whose offset is ≥ `offset`. */
  truncateTo(offset: number): void {
    this.truncateEntries(lowerBound(this.relOffsets, this.count, offset - this.baseOffset));
  }

  /**
   * False when the index points past the end of its log (`lastPosition ≥ logSizeBytes` with at
   * least one entry): used on reopen to decide whether to rebuild.
   */
  sanityCheck(logSizeBytes: number): boolean {
    return this.count === 0 || this.lastPosition < logSizeBytes;
  }

  protected override encodeEntry(index: number, out: Buffer, at: number): void {
    out.writeInt32BE(this.relOffsets[index]!, at);
    out.writeInt32BE(this.positions[index]!, at + 4);
  }
}

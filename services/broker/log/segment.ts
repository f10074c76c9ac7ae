/**
 * One log segment: a `<20-digit base offset>.log` file of back-to-back record batches with its
 * sparse offset index and time index. A segment knows nothing of leader epochs, retention or
 * the write queue; {@link PartitionLog} drives it and serialises every mutation.
 */
import { access, type FileHandle, open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { assert, ErrorCode, NEXT_OFFSET_METADATA_KEY, SamsaError } from "../../shared/errors.js";
import {
  type BatchHeader,
  readBatchHeader,
  validateBatch,
} from "../../shared/record-batch/header.js";
import {
  BATCH_BYTES_MAX,
  BATCH_HEADER_BYTES,
  LOG_OVERHEAD_BYTES,
} from "../../shared/record-batch/layout.js";
import { readAt, type ScanStop, scanBatches } from "./batch-scanner.js";
import type { LogConfig } from "../../shared/config/log-config.js";
import { OFFSET_INDEX_ENTRY_BYTES, OffsetIndex } from "./offset-index.js";
import { TIME_INDEX_ENTRY_BYTES, TimeIndex } from "./time-index.js";

export const LOG_FILE_SUFFIX = ".log";
export const OFFSET_INDEX_FILE_SUFFIX = ".index";
export const TIME_INDEX_FILE_SUFFIX = ".timeindex";
/** Suffix a deleted segment's files get until they are removed. */
export const DELETED_FILE_SUFFIX = ".deleted";
/** Remembered "next offset → file position" pairs per segment, for sequential readers. */
const READ_CACHE_ENTRIES_MAX = 64;
/** Window of a header-only walk: it reads 61-byte headers, not batches. */
export const HEADER_SCAN_WINDOW_BYTES = 16 * 1024;
/** Offsets relative to a segment's base must fit an int32 index entry. */
export const RELATIVE_OFFSET_MAX = 2 ** 31 - 1;
/** Bytes of a batch's base offset field (int64, the batch's first bytes). */
const BASE_OFFSET_BYTES = 8;

/** `<20-digit zero-padded offset><suffix>`, Kafka's file naming. */
export function segmentFileName(baseOffset: number, suffix: string): string {
  return `${String(baseOffset).padStart(20, "0")}${suffix}`;
}

/** What the partition log tells a segment about each batch it appends. */
export interface AppendedBatch {
  baseOffset: number;
  lastOffset: number;
  maxTimestamp: number;
  size: number;
}

/** Result of reading from a segment: whole batches only. */
export interface SegmentRead {
  bytes: Buffer;
  /** Offset after the last batch returned. */
  nextOffset: number;
}

/** Outcome of a recovery scan. */
export interface RecoveryResult {
  validBytes: number;
  truncatedBytes: number;
  batches: number;
  stop?: ScanStop;
}

export class LogSegment {
  readonly baseOffset: number;
  readonly dir: string;
  readonly logPath: string;
  /** Bytes of complete batches in the file; reads never go past it. */
  size = 0;
  /** Offset after the last batch (the segment's end offset); `baseOffset` when empty. */
  nextOffset: number;
  /** Largest batch max-timestamp seen, -1 when none. */
  maxTimestamp = -1;
  offsetOfMaxTimestamp = -1;
  /** Max timestamp of the first batch: what `segment.ms` rolls by; -1 when empty. */
  firstBatchTimestamp = -1;
  /** Bytes written since the last fsync of the log file. */
  unflushedBytes = 0;
  private bytesSinceIndexEntry = 0;
  private readonly readCache = new Map<number, number>();
  private deleted = false;

  private constructor(
    dir: string,
    baseOffset: number,
    private fh: FileHandle,
    public offsetIndex: OffsetIndex,
    public timeIndex: TimeIndex,
    private readonly config: LogConfig,
  ) {
    this.dir = dir;
    this.baseOffset = baseOffset;
    this.nextOffset = baseOffset;
    this.logPath = join(dir, segmentFileName(baseOffset, LOG_FILE_SUFFIX));
  }

  private static indexPaths(dir: string, baseOffset: number): [string, string] {
    return [
      join(dir, segmentFileName(baseOffset, OFFSET_INDEX_FILE_SUFFIX)),
      join(dir, segmentFileName(baseOffset, TIME_INDEX_FILE_SUFFIX)),
    ];
  }

  private static maxEntries(config: LogConfig, entryBytes: number): number {
    return Math.floor(config.segmentIndexBytes / entryBytes);
  }

  /** Creates an empty segment (an existing file of that name is emptied). */
  static async create(dir: string, baseOffset: number, config: LogConfig): Promise<LogSegment> {
    const [indexPath, timePath] = LogSegment.indexPaths(dir, baseOffset);
    const fh = await open(join(dir, segmentFileName(baseOffset, LOG_FILE_SUFFIX)), "w+");
    const oi = OffsetIndex.create(
      indexPath,
      baseOffset,
      LogSegment.maxEntries(config, OFFSET_INDEX_ENTRY_BYTES),
    );
    const ti = TimeIndex.create(
      timePath,
      baseOffset,
      LogSegment.maxEntries(config, TIME_INDEX_ENTRY_BYTES),
    );
    return new LogSegment(dir, baseOffset, fh, oi, ti, config);
  }

  /**
   * Opens an existing segment. `recoverFrom` is the partition's recovery point after an unclean
   * stop (+∞ after a clean one, or for a segment wholly below the recovery point): the batches
   * from that offset on are re-validated (length, magic, counts, CRC) and the file is truncated
   * at the first torn or corrupt one. Batches below it were flushed and acknowledged: they are
   * never truncated, only walked by their headers (a bit flip among them stays on disk and its
   * read answers CORRUPT_MESSAGE); a walk that breaks below it (a damaged length field) throws
   * KAFKA_STORAGE_ERROR instead of cutting. With `recoverFrom` = +∞ the indexes are loaded (and
   * rebuilt by such a header walk only if damaged) and the tail is located from the last index
   * entry.
   */
  static async open(
    dir: string,
    baseOffset: number,
    config: LogConfig,
    recoverFrom: number,
    onBatch?: (header: BatchHeader) => void,
  ): Promise<{ segment: LogSegment; recovery?: RecoveryResult }> {
    const fh = await open(join(dir, segmentFileName(baseOffset, LOG_FILE_SUFFIX)), "r+");
    try {
      return await LogSegment.openFrom(dir, baseOffset, config, fh, recoverFrom, onBatch);
    } catch (err) {
      // A segment that refused to open holds no handle (its indexes open files on flush only).
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  private static async openFrom(
    dir: string,
    baseOffset: number,
    config: LogConfig,
    fh: FileHandle,
    recoverFrom: number,
    onBatch?: (header: BatchHeader) => void,
  ): Promise<{ segment: LogSegment; recovery?: RecoveryResult }> {
    const [indexPath, timePath] = LogSegment.indexPaths(dir, baseOffset);
    const fileSize = (await fh.stat()).size;
    const oiMax = LogSegment.maxEntries(config, OFFSET_INDEX_ENTRY_BYTES);
    const tiMax = LogSegment.maxEntries(config, TIME_INDEX_ENTRY_BYTES);
    if (recoverFrom === Number.POSITIVE_INFINITY) {
      const indexes = await LogSegment.loadIndexes(
        indexPath,
        timePath,
        baseOffset,
        oiMax,
        tiMax,
        fileSize,
      );
      if (indexes) {
        const seg = new LogSegment(dir, baseOffset, fh, indexes[0], indexes[1], config);
        seg.size = fileSize;
        await seg.loadTail(onBatch);
        return { segment: seg };
      }
    }
    const oi = OffsetIndex.create(indexPath, baseOffset, oiMax);
    const ti = TimeIndex.create(timePath, baseOffset, tiMax);
    const seg = new LogSegment(dir, baseOffset, fh, oi, ti, config);
    const recovery = await seg.recover(fileSize, recoverFrom, onBatch);
    return { segment: seg, recovery };
  }

  private static async loadIndexes(
    indexPath: string,
    timePath: string,
    baseOffset: number,
    oiMax: number,
    tiMax: number,
    fileSize: number,
  ): Promise<[OffsetIndex, TimeIndex] | undefined> {
    // A clean close writes both files; a missing one is lost, not empty: rebuild from the log.
    if (fileSize > 0 && !((await fileExists(indexPath)) && (await fileExists(timePath)))) {
      return undefined;
    }
    try {
      const oi = await OffsetIndex.open(indexPath, baseOffset, oiMax);
      const ti = await TimeIndex.open(timePath, baseOffset, tiMax);
      // An empty offset index is normal (a segment smaller than index.interval.bytes has no
      // entry): the tail walk then starts at position 0. Treating it as damage used to send
      // every small segment through a validating rebuild even after a clean shutdown.
      if (!oi.sanityCheck(fileSize)) return undefined;
      return [oi, ti];
    } catch (err) {
      if (err instanceof Error && err.name === "IndexCorruptError") return undefined;
      throw err;
    }
  }

  /** Finds the end offset, max timestamp and first timestamp of a segment opened from its indexes. */
  private async loadTail(onBatch?: (header: BatchHeader) => void): Promise<void> {
    const indexEnd = this.offsetIndex.lastPosition;
    let start = indexEnd;
    if (this.timeIndex.entryCount > 0) {
      this.maxTimestamp = this.timeIndex.lastTimestamp;
      this.offsetOfMaxTimestamp = this.timeIndex.lastEntry.offset;
      // A full time index stops early: batches after its last entry may hold larger timestamps.
      start = Math.min(indexEnd, this.offsetIndex.lookup(this.timeIndex.lastEntry.offset).position);
    }
    let tailEnd = start;
    let broken: ScanStop | undefined;
    for await (const b of this.scan(start, false, (stop) => {
      broken = stop;
    })) {
      this.trackBatch(
        b.header.baseOffset,
        b.header.baseOffset + b.header.lastOffsetDelta,
        b.header.maxTimestamp,
      );
      onBatch?.(b.header);
      tailEnd = b.position + b.size;
    }
    // Everything here is below the recovery point (flushed, acknowledged): a walk that does not
    // reach the end of the file means damage, which is refused rather than cut or overwritten.
    if (broken) throw this.damagedBelowRecoveryPoint(broken);
    this.size = tailEnd;
    this.bytesSinceIndexEntry = this.size - indexEnd;
    if (this.size > 0) {
      const firstHeader = await readAt(this.fh, 0, BATCH_HEADER_BYTES);
      this.firstBatchTimestamp = readBatchHeader(firstHeader, 0).maxTimestamp;
    }
  }

  private scan(start: number, validate: boolean, onStop?: (s: ScanStop) => void) {
    return scanBatches(
      this.fh,
      // Any batch the format allows: a lowered segment.bytes must not make old batches "invalid".
      {
        start,
        end: this.size,
        validate,
        maxBatchBytes: BATCH_BYTES_MAX,
        windowBytes: validate ? undefined : HEADER_SCAN_WINDOW_BYTES,
      },
      onStop,
    );
  }

  private trackBatch(baseOffset: number, lastOffset: number, maxTimestamp: number): void {
    if (this.nextOffset === this.baseOffset && this.firstBatchTimestamp < 0) {
      this.firstBatchTimestamp = maxTimestamp;
    }
    if (maxTimestamp > this.maxTimestamp) {
      this.maxTimestamp = maxTimestamp;
      this.offsetOfMaxTimestamp = baseOffset;
    }
    this.nextOffset = lastOffset + 1;
  }

  /**
   * Rebuilds both indexes from the log: a header walk over the batches below `recoverFrom`
   * (never truncated, see {@link open}), then a validating scan of the rest, truncated at the
   * first torn or corrupt batch.
   */
  private async recover(
    fileSize: number,
    recoverFrom: number,
    onBatch?: (header: BatchHeader) => void,
  ): Promise<RecoveryResult> {
    this.size = fileSize;
    const start = await this.indexBelow(recoverFrom, onBatch);
    let stop: ScanStop | undefined;
    let validBytes = start;
    let batches = 0;
    for await (const b of this.scan(start, true, (s) => {
      stop = s;
    })) {
      if (b.header.baseOffset < this.nextOffset) {
        stop = {
          position: b.position,
          reason: `offset ${b.header.baseOffset} goes backwards (expected ≥ ${this.nextOffset})`,
        };
        break;
      }
      if (b.header.baseOffset + b.header.lastOffsetDelta - this.baseOffset > RELATIVE_OFFSET_MAX) {
        stop = { position: b.position, reason: "offset beyond the segment's int32 range" };
        break;
      }
      this.indexBatch(b.position, b.header.baseOffset, b.header.maxTimestamp, b.size);
      this.trackBatch(
        b.header.baseOffset,
        b.header.baseOffset + b.header.lastOffsetDelta,
        b.header.maxTimestamp,
      );
      onBatch?.(b.header);
      validBytes = b.position + b.size;
      batches++;
    }
    this.size = validBytes;
    if (fileSize > validBytes) await this.fh.truncate(validBytes);
    this.addFinalTimeIndexEntry();
    return { validBytes, truncatedBytes: fileSize - validBytes, batches, stop };
  }

  /**
   * Indexes the batches whose base offset is below `recoverFrom` by a header walk from the
   * start (no CRC check: they were flushed before the stop, and a damaged one is reported when
   * read). Returns the position of the first batch at or past `recoverFrom` (or of the end).
   * Throws KAFKA_STORAGE_ERROR when the walk breaks before reaching the recovery point.
   */
  private async indexBelow(
    recoverFrom: number,
    onBatch?: (header: BatchHeader) => void,
  ): Promise<number> {
    let position = 0;
    let broken: ScanStop | undefined;
    for await (const b of this.scan(0, false, (s) => {
      broken = s;
    })) {
      if (b.header.baseOffset >= recoverFrom) return b.position;
      if (b.header.baseOffset < this.nextOffset) {
        broken = {
          position: b.position,
          reason: `offset ${b.header.baseOffset} goes backwards (expected ≥ ${this.nextOffset})`,
        };
        break;
      }
      this.indexBatch(b.position, b.header.baseOffset, b.header.maxTimestamp, b.size);
      this.trackBatch(
        b.header.baseOffset,
        b.header.baseOffset + b.header.lastOffsetDelta,
        b.header.maxTimestamp,
      );
      onBatch?.(b.header);
      position = b.position + b.size;
    }
    // A break at the recovery point or past it (a torn write at the log end after an unclean
    // stop) is for the validating scan to cut; one below it is damage to acknowledged data.
    if (broken && this.nextOffset < recoverFrom) throw this.damagedBelowRecoveryPoint(broken);
    return position;
  }

  private damagedBelowRecoveryPoint(stop: ScanStop): SamsaError {
    return new SamsaError(
      ErrorCode.KAFKA_STORAGE_ERROR,
      `corrupt batch header at position ${stop.position} of ${this.logPath} (${stop.reason}), ` +
        `below the recovery point after offset ${this.nextOffset - 1}: flushed data is never ` +
        "truncated; restore the partition from a replica (see docs/operations.md)",
    );
  }

  /**
   * Kafka's sparse indexing: a batch gets an offset-index entry (its base offset → its position)
   * and a time-index entry (max timestamp so far → its offset) once more than
   * `index.interval.bytes` were written since the last entry.
   */
  private indexBatch(
    position: number,
    baseOffset: number,
    maxTimestamp: number,
    size: number,
  ): void {
    if (this.bytesSinceIndexEntry > this.config.indexIntervalBytes) {
      if (!this.offsetIndex.isFull) this.offsetIndex.append(baseOffset, position);
      const ts = Math.max(this.maxTimestamp, maxTimestamp);
      const tsOffset = maxTimestamp > this.maxTimestamp ? baseOffset : this.offsetOfMaxTimestamp;
      if (!this.timeIndex.isFull && ts >= 0) this.timeIndex.append(ts, tsOffset);
      this.bytesSinceIndexEntry = 0;
    }
    this.bytesSinceIndexEntry += size;
  }

  /** The time index gets the segment's max timestamp before the segment goes inactive or flushes. */
  addFinalTimeIndexEntry(): void {
    if (this.maxTimestamp >= 0 && !this.timeIndex.isFull) {
      this.timeIndex.append(this.maxTimestamp, this.offsetOfMaxTimestamp);
    }
  }

  /** True once the segment was retired (its files renamed, soon closed). */
  get isDeleted(): boolean {
    return this.deleted;
  }

  /** True when nothing has been written. */
  get isEmpty(): boolean {
    return this.size === 0;
  }

  /**
   * Whether appending `bytes` more (after `queuedBytes` not yet written), ending at
   * `lastOffset`, must go to a new segment.
   */
  mustRoll(
    queuedBytes: number,
    bytes: number,
    lastOffset: number,
    nowMs: number,
    rollJitterMs: number,
  ): boolean {
    if (this.size + queuedBytes === 0) return false;
    if (this.size + queuedBytes + bytes > this.config.segmentBytes) return true;
    if (lastOffset - this.baseOffset > RELATIVE_OFFSET_MAX) return true;
    if (this.offsetIndex.isFull || this.timeIndex.isFull) return true;
    return (
      this.firstBatchTimestamp >= 0 &&
      nowMs - this.firstBatchTimestamp > this.config.segmentMs - rollJitterMs
    );
  }

  /**
   * Writes `chunks` (whole, validated, stamped batches described by `batches`) at the end of
   * the file with one vectored write, then indexes them. Only the partition's write queue calls this.
   */
  async append(chunks: Buffer[], batches: AppendedBatch[]): Promise<void> {
    assert(!this.deleted, "append to a deleted segment");
    let total = 0;
    for (const c of chunks) total += c.length;
    // Always asynchronous: a synchronous write would block the event loop (and every other
    // partition) whenever the kernel throttles dirty pages. Group commit amortises the thread
    // pool round trip instead.
    const { bytesWritten } = await this.fh.writev(chunks, this.size);
    if (bytesWritten !== total) {
      throw new SamsaError(
        ErrorCode.KAFKA_STORAGE_ERROR,
        `short write to ${this.logPath}: ${bytesWritten} of ${total} bytes (no space left?)`,
      );
    }
    let position = this.size;
    for (const b of batches) {
      assert(b.baseOffset >= this.nextOffset, "offsets strictly increase within a segment");
      this.indexBatch(position, b.baseOffset, b.maxTimestamp, b.size);
      this.trackBatch(b.baseOffset, b.lastOffset, b.maxTimestamp);
      position += b.size;
    }
    assert(position === this.size + total, "batch sizes add up to the bytes written");
    this.size = position;
    this.unflushedBytes += total;
  }

  /**
   * After a failed write: cuts the file back to its last whole batch (`size`), so a partial
   * write leaves nothing torn behind. A no-op when the file is no longer than that.
   */
  async cutTornTail(): Promise<void> {
    if (this.deleted) return;
    const fileSize = (await this.fh.stat()).size;
    if (fileSize > this.size) await this.fh.truncate(this.size);
  }

  /** Position of the batch containing `offset` (or the first batch after it), with its header. */
  private async locate(
    offset: number,
  ): Promise<{ position: number; header: BatchHeader } | undefined> {
    const cached = this.readCache.get(offset);
    const start = cached ?? this.offsetIndex.lookup(offset).position;
    for await (const b of this.scan(start, false, (stop) => this.brokenChain(stop))) {
      if (b.header.baseOffset + b.header.lastOffsetDelta >= offset) {
        return { position: b.position, header: b.header };
      }
    }
    return undefined;
  }

  /**
   * Reads whole batches starting with the one that holds `offset`, up to `maxBytes` (at least
   * one batch, so a consumer always progresses) and stopping before any batch whose base offset
   * is ≥ `maxOffset`. Every batch returned has passed its CRC check.
   */
  async read(
    offset: number,
    maxBytes: number,
    maxOffset: number,
  ): Promise<SegmentRead | undefined> {
    if (offset >= this.nextOffset || offset >= maxOffset) return undefined;
    const found = await this.locate(offset);
    if (!found || found.header.baseOffset >= maxOffset) return undefined;
    const end = this.size;
    const firstSize = found.header.batchLength + 12;
    const want = Math.min(end - found.position, Math.max(maxBytes, firstSize));
    const buf = await readAt(this.fh, found.position, want);
    let pos = 0;
    let nextOffset = offset;
    while (pos + BATCH_HEADER_BYTES <= buf.length) {
      const size = buf.readInt32BE(pos + 8) + 12;
      if (pos + size > buf.length) break;
      const baseOffset = Number(buf.readBigInt64BE(pos));
      if (baseOffset >= maxOffset) break;
      try {
        const h = validateBatch(buf, pos, { maxBatchBytes: Number.MAX_SAFE_INTEGER });
        nextOffset = h.baseOffset + h.lastOffsetDelta + 1;
      } catch (err) {
        if (pos > 0) break; // serve the good batches; the bad one fails the next read
        throw await this.corruptBatch(offset, found, err);
      }
      pos += size;
    }
    if (pos === 0) return undefined;
    this.rememberPosition(nextOffset, found.position + pos);
    return { bytes: pos === buf.length ? buf : buf.subarray(0, pos), nextOffset };
  }

  /**
   * The error for a stored batch that fails its check (a bit flip the CRC caught): permanent, so
   * CORRUPT_MESSAGE (not the retriable KAFKA_STORAGE_ERROR), naming the batch's offset and where
   * the next batch starts, which also travels as {@link NEXT_OFFSET_METADATA_KEY} so that a
   * reader can move past the damage on purpose (the consumer's `onCorruptBatch`).
   */
  private async corruptBatch(
    offset: number,
    found: { position: number; header: BatchHeader },
    err: unknown,
  ): Promise<SamsaError> {
    const h = found.header;
    const nextPosition = found.position + h.batchLength + LOG_OVERHEAD_BYTES;
    // The next batch's base offset (outside any CRC, stamped by the leader) is more trustworthy
    // than this batch's own last offset delta, which lies in the damaged CRC'd region.
    let next = this.nextOffset;
    if (nextPosition + BASE_OFFSET_BYTES <= this.size) {
      next = Number((await readAt(this.fh, nextPosition, BASE_OFFSET_BYTES)).readBigInt64BE(0));
    }
    if (!Number.isSafeInteger(next) || next <= offset) next = offset + 1;
    return new SamsaError(
      ErrorCode.CORRUPT_MESSAGE,
      `corrupt batch at offset ${h.baseOffset} (position ${found.position} of ${this.logPath}): ` +
        `${(err as Error).message}; the next batch starts at offset ${next}`,
      { metadata: { [NEXT_OFFSET_METADATA_KEY]: String(next) } },
    );
  }

  /**
   * A header walk over the served part of a segment must reach its end; stopping earlier means
   * a damaged length field. Serving the next segment instead would silently skip offsets.
   */
  private brokenChain(stop: ScanStop): never {
    throw new SamsaError(
      ErrorCode.KAFKA_STORAGE_ERROR,
      `corrupt batch header at position ${stop.position} of ${this.logPath}: ${stop.reason}`,
    );
  }

  private rememberPosition(offset: number, position: number): void {
    if (this.readCache.size >= READ_CACHE_ENTRIES_MAX) {
      const oldest = this.readCache.keys().next().value as number;
      this.readCache.delete(oldest);
    }
    this.readCache.set(offset, position);
  }

  /**
   * The headers of the batches holding offsets ≥ `fromOffset`, in order (a header walk from the
   * offset index's entry below it): what rebuilding producer state reads.
   */
  async *headersFrom(fromOffset: number): AsyncGenerator<BatchHeader> {
    if (fromOffset >= this.nextOffset) return;
    const start = this.offsetIndex.lookup(fromOffset).position;
    for await (const b of this.scan(start, false, (stop) => this.brokenChain(stop))) {
      if (b.header.baseOffset + b.header.lastOffsetDelta >= fromOffset) yield b.header;
    }
  }

  /**
   * First offset whose batch max-timestamp is ≥ `timestamp`, with that batch's position, or
   * undefined when no batch here qualifies.
   */
  async findBatchByTimestamp(
    timestamp: number,
    fromOffset: number,
  ): Promise<{ position: number; header: BatchHeader } | undefined> {
    if (this.maxTimestamp < timestamp) return undefined;
    const entry = this.timeIndex.lookup(timestamp);
    const startOffset = Math.max(entry.offset, fromOffset);
    const start = this.offsetIndex.lookup(startOffset).position;
    for await (const b of this.scan(start, false, (stop) => this.brokenChain(stop))) {
      if (
        b.header.maxTimestamp >= timestamp &&
        b.header.baseOffset + b.header.lastOffsetDelta >= fromOffset
      ) {
        return { position: b.position, header: b.header };
      }
    }
    return undefined;
  }

  /** Reads the whole batch at `position` (CRC-checked). */
  async readBatchAt(position: number, size: number): Promise<Buffer> {
    const buf = await readAt(this.fh, position, size);
    try {
      validateBatch(buf, 0, { maxBatchBytes: Number.MAX_SAFE_INTEGER });
    } catch (err) {
      throw new SamsaError(
        ErrorCode.KAFKA_STORAGE_ERROR,
        `corrupt batch at position ${position} of ${this.logPath}: ${(err as Error).message}`,
      );
    }
    return buf;
  }

  /**
   * Cuts the segment so that it ends before `offset`: every batch holding an offset ≥ `offset`
   * goes (Kafka's rule; the end offset may land below `offset`). Returns the bytes removed.
   */
  async truncateTo(offset: number): Promise<number> {
    if (offset >= this.nextOffset) return 0;
    let cut = this.size;
    this.nextOffset = this.baseOffset;
    this.maxTimestamp = -1;
    this.offsetOfMaxTimestamp = -1;
    this.firstBatchTimestamp = -1;
    this.bytesSinceIndexEntry = 0;
    const start = 0;
    this.offsetIndex.truncateTo(this.baseOffset);
    this.timeIndex.truncateTo(this.baseOffset);
    for await (const b of this.scan(start, false)) {
      if (b.header.baseOffset + b.header.lastOffsetDelta >= offset) {
        cut = b.position;
        break;
      }
      this.indexBatch(b.position, b.header.baseOffset, b.header.maxTimestamp, b.size);
      this.trackBatch(
        b.header.baseOffset,
        b.header.baseOffset + b.header.lastOffsetDelta,
        b.header.maxTimestamp,
      );
    }
    const removed = this.size - cut;
    this.size = cut;
    await this.fh.truncate(cut);
    this.readCache.clear();
    this.addFinalTimeIndexEntry();
    return removed;
  }

  /** Fsyncs the log file and persists both indexes. */
  async flush(): Promise<void> {
    if (this.deleted) return;
    if (this.unflushedBytes > 0) {
      const pending = this.unflushedBytes;
      await this.fh.datasync();
      this.unflushedBytes -= pending;
    }
    this.addFinalTimeIndexEntry();
    await this.offsetIndex.flush();
    await this.timeIndex.flush();
  }

  /** Fsyncs only the log file (strict mode's group commit). */
  async syncData(): Promise<void> {
    const pending = this.unflushedBytes;
    if (pending === 0) return;
    await this.fh.datasync();
    this.unflushedBytes -= pending;
  }

  /**
   * Flushes and closes all files; with `flush` false (a log offline after a failed write, whose
   * disk may be full) only closes them: recovery on the next open re-derives what was not flushed.
   */
  async close(flush = true): Promise<void> {
    if (this.deleted) return;
    if (flush) await this.flush();
    // The indexes write their pending entries as they close; on a failed log that may fail too.
    const ignore = flush ? undefined : () => undefined;
    await this.offsetIndex.close().catch(ignore);
    await this.timeIndex.close().catch(ignore);
    await this.fh.close();
  }

  /**
   * Marks the segment deleted: its files are renamed with `.deleted` at once (so a restart
   * never resurrects it) and closed and removed after `delayMs`, giving in-flight reads time.
   */
  async markDeleted(): Promise<() => Promise<void>> {
    this.deleted = true;
    const deletedLog = this.logPath + DELETED_FILE_SUFFIX;
    await rename(this.logPath, deletedLog);
    await this.offsetIndex.renameTo(this.offsetIndex.path + DELETED_FILE_SUFFIX);
    await this.timeIndex.renameTo(this.timeIndex.path + DELETED_FILE_SUFFIX);
    return async () => {
      await this.offsetIndex.deleteFile();
      await this.timeIndex.deleteFile();
      await this.fh.close().catch(() => undefined);
      await unlink(deletedLog).catch(() => undefined);
    };
  }
}

async function fileExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

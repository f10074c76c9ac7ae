/**
 * The log of one partition: an ordered list of segments plus the offsets that frame them.
 *
 *   logStartOffset ≤ highWatermark ≤ logEndOffset
 *
 * Contract, method by method (offsets are JS numbers, exact below 2^53):
 * - `append(batches, {leaderEpoch})` (leader): validates every batch (CRC, sizes, counts) at
 *   once, then queues it; the write queue assigns offsets from the log end, stamps base offset
 *   and leader epoch (outside the CRC, so batch bytes are kept as sent), writes and resolves with
 *   the offsets given. Appends queued together are written with one vectored write and, in
 *   strict mode, one fsync (group commit). The log owns `batches` after the call.
 * - `appendAsFollower(batches)`: keeps the leader's offsets and epochs; they must start at or
 *   after the log end.
 * - `read(offset, maxBytes, {maxOffset})`: whole batches from the one holding `offset`, at least
 *   one, at most `maxBytes` beyond the first, none starting at or past `maxOffset` (the high
 *   watermark by default). OFFSET_OUT_OF_RANGE outside [logStartOffset, logEndOffset].
 * - `offsetForTimestamp(ts)`: first offset with a timestamp ≥ ts, below the high watermark.
 * - `truncateTo(offset)`: drops every batch holding an offset ≥ `offset` (replication).
 * - `truncateFullyAndStartAt(offset)`: empties the log; it continues at `offset`.
 * - `deleteRecordsBefore(offset)`: raises the log start offset (≤ high watermark).
 * - `endOffsetForEpoch(epoch)`: Kafka's OffsetsForLeaderEpoch answer from the epoch cache.
 * - `enforceRetention(now)`, `maybeFlush(now)`, `flush()`, `roll()`, `close()`, `delete()`.
 * Every mutation runs on one serial queue; reads run concurrently on an immutable snapshot of
 * the segment list, and a deleted segment's files stay open for `file.delete.delay.ms`.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { assert, ErrorCode, SamsaError } from "../../shared/errors.js";
import {
  type BatchesSummary,
  stampBatch,
  validateBatches,
} from "../../shared/record-batch/header.js";
import type { Logger } from "../../shared/logger.js";
import { fsyncDir, writeFileAtomic } from "./atomic-file.js";
import { type LeaderEpochCache, UNDEFINED_EPOCH } from "./leader-epoch-cache.js";
import type { LogConfig } from "../../shared/config/log-config.js";
import { writePartitionCheckpoint } from "./partition-checkpoint.js";
import { CLEAN_SHUTDOWN_FILE, type LoadedLog, loadPartitionLog } from "./partition-loader.js";
import { findRecordAtTimestamp } from "./timestamp-lookup.js";
import { type AppendedBatch, LogSegment } from "./segment.js";
import { SerialQueue } from "./serial-queue.js";

/** Bytes of appends waiting for the writer before `append` starts waiting (backpressure). */
export const PENDING_APPEND_BYTES_MAX = 64 * 1024 * 1024;
/** Bytes written by one vectored write at most (one group commit). */
export const APPEND_GROUP_BYTES_MAX = 16 * 1024 * 1024;
/** Batches written by one vectored write at most (bounds the iovec list). */
export const APPEND_GROUP_BATCHES_MAX = 4096;

/** Where a partition lives and how it behaves. */
export interface PartitionLogOptions {
  /** The partition's directory, `<log.dir>/<topic>-<partition>`. */
  dir: string;
  topic: string;
  partition: number;
  config: LogConfig;
  logger: Logger;
  /** Clock in ms; tests may replace it. Default `Date.now`. */
  now?: () => number;
}

/** Offsets given to an append. */
export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  recordCount: number;
}

/** Options of {@link PartitionLog.read}. */
export interface ReadOptions {
  /** Exclusive upper bound on batch base offsets. Default: the high watermark. */
  maxOffset?: number;
}

/** The answer to a read. `bytes` is empty when nothing is available yet. */
export interface ReadResult {
  bytes: Buffer;
  /** Offset to read next. */
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
  logEndOffset: number;
}

interface PendingAppend {
  buf: Buffer;
  summary: BatchesSummary;
  /** Leader epoch to stamp; undefined for follower appends (bytes kept as sent). */
  leaderEpoch: number | undefined;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

export class PartitionLog {
  readonly dir: string;
  readonly topic: string;
  readonly partition: number;
  readonly config: LogConfig;
  private readonly logger: Logger;
  private readonly now: () => number;
  /** Copy-on-write: readers keep the array they started with. */
  private segments: readonly LogSegment[];
  private epochs: LeaderEpochCache;
  private startOffset: number;
  private endOffset: number;
  private hw: number;
  private recoveryPoint: number;
  private lastFlushMs: number;
  private unflushedMessages = 0;
  private rollJitterMs: number;
  private readonly queue = new SerialQueue();
  private readonly checkpointQueue = new SerialQueue();
  private flushing: Promise<void> | undefined;
  private truncatedDuringFlush = Number.POSITIVE_INFINITY;
  private pending: PendingAppend[] = [];
  private pendingBytes = 0;
  private draining = false;
  private drainWaiters: Array<() => void> = [];
  private closed = false;
  private failure: SamsaError | undefined;

  private constructor(options: PartitionLogOptions, loaded: LoadedLog) {
    this.dir = options.dir;
    this.topic = options.topic;
    this.partition = options.partition;
    this.config = options.config;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.segments = loaded.segments;
    this.epochs = loaded.epochs;
    this.startOffset = loaded.logStartOffset;
    this.endOffset = loaded.logEndOffset;
    this.hw = loaded.highWatermark;
    this.recoveryPoint = loaded.recoveryPoint;
    this.lastFlushMs = this.now();
    this.rollJitterMs = this.newJitter();
  }

  /** Opens (or creates) the log in `options.dir`, recovering it after an unclean stop. */
  static async open(options: PartitionLogOptions): Promise<PartitionLog> {
    const loaded = await loadPartitionLog(options);
    const log = new PartitionLog(options, loaded);
    await log.writeCheckpoint();
    return log;
  }

  /** First offset kept. */
  get logStartOffset(): number {
    return this.startOffset;
  }

  /** Offset the next appended record gets. */
  get logEndOffset(): number {
    return this.endOffset;
  }

  /** Offsets below this are committed and visible to consumers. */
  get highWatermark(): number {
    return this.hw;
  }

  /** Total bytes of all segments. */
  get sizeBytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.size;
    return n;
  }

  /** Number of segments (the active one included). */
  get segmentCount(): number {
    return this.segments.length;
  }

  /** Base offsets of the segments, oldest first. */
  segmentBaseOffsets(): number[] {
    return this.segments.map((s) => s.baseOffset);
  }

  /** Latest leader epoch recorded in the log, -1 when none. */
  get latestEpoch(): number {
    return this.epochs.latestEpoch();
  }

  /** The epoch cache's entries (epoch → start offset), oldest first. */
  epochEntries(): ReadonlyArray<{ epoch: number; startOffset: number }> {
    return this.epochs.entries();
  }

  /** Sets the high watermark, clamped into [logStartOffset, logEndOffset]. */
  setHighWatermark(offset: number): void {
    this.hw = Math.min(Math.max(offset, this.startOffset), this.endOffset);
  }

  /** Largest batch accepted: a batch must fit in one segment, so segment.bytes bounds it too. */
  private get maxBatchBytes(): number {
    return Math.min(this.config.maxMessageBytes, this.config.segmentBytes);
  }

  private get active(): LogSegment {
    return this.segments[this.segments.length - 1]!;
  }

  private newJitter(): number {
    const j = this.config.segmentJitterMs;
    return j > 0 ? Math.floor(Math.random() * j) : 0;
  }

  private checkUsable(): void {
    if (this.closed)
      throw new SamsaError(
        ErrorCode.KAFKA_STORAGE_ERROR,
        `log ${this.topic}-${this.partition} is closed`,
      );
    if (this.failure) throw this.failure;
  }

  /** Appends as the leader: assigns offsets and stamps `leaderEpoch` on every batch. */
  async append(batches: Buffer, options: { leaderEpoch?: number } = {}): Promise<AppendResult> {
    this.checkUsable();
    const leaderEpoch = options.leaderEpoch ?? Math.max(this.epochs.latestEpoch(), 0);
    if (leaderEpoch < this.epochs.latestEpoch()) {
      throw new SamsaError(
        ErrorCode.FENCED_LEADER_EPOCH,
        `leader epoch ${leaderEpoch} is older than the log's ${this.epochs.latestEpoch()}`,
      );
    }
    const summary = validateBatches(batches, { maxBatchBytes: this.maxBatchBytes });
    return this.enqueue(batches, summary, leaderEpoch);
  }

  /** Appends as a follower: offsets and epochs are the leader's and stay as they are. */
  async appendAsFollower(batches: Buffer): Promise<AppendResult> {
    this.checkUsable();
    const summary = validateBatches(batches, { maxBatchBytes: this.maxBatchBytes });
    let next = -1;
    for (const h of summary.headers) {
      if (h.baseOffset < next) {
        throw new SamsaError(
          ErrorCode.CORRUPT_MESSAGE,
          `follower batch offsets go backwards at ${h.baseOffset}`,
        );
      }
      next = h.baseOffset + h.lastOffsetDelta + 1;
    }
    return this.enqueue(batches, summary, undefined);
  }

  private async enqueue(
    buf: Buffer,
    summary: BatchesSummary,
    leaderEpoch: number | undefined,
  ): Promise<AppendResult> {
    while (this.pendingBytes > PENDING_APPEND_BYTES_MAX) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
      this.checkUsable();
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ buf, summary, leaderEpoch, resolve, reject });
      this.pendingBytes += buf.length;
      if (!this.draining) {
        this.draining = true;
        void this.queue.run(() => this.drain());
      }
    });
  }

  /** Writes everything pending, in groups; runs on the queue. */
  private async drain(): Promise<void> {
    try {
      if (this.pending.length > 0) await this.writeGroup(this.takeGroup());
    } finally {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
      // One group per turn: truncation, roll and retention queued meanwhile go next, so a
      // steady stream of appends never starves them.
      if (this.pending.length > 0) void this.queue.run(() => this.drain());
      else this.draining = false;
    }
  }

  private takeGroup(): PendingAppend[] {
    const group: PendingAppend[] = [];
    let bytes = 0;
    let batches = 0;
    while (this.pending.length > 0) {
      const next = this.pending[0]!;
      if (
        group.length > 0 &&
        (bytes + next.buf.length > APPEND_GROUP_BYTES_MAX ||
          batches + next.summary.headers.length > APPEND_GROUP_BATCHES_MAX)
      )
        break;
      this.pending.shift();
      this.pendingBytes -= next.buf.length;
      bytes += next.buf.length;
      batches += next.summary.headers.length;
      group.push(next);
    }
    return group;
  }

  /**
   * Assigns offsets to a group of appends and writes it, rolling first where a segment limit
   * says so. Items that fail (a follower offset behind the log end) are rejected alone.
   */
  private async writeGroup(group: PendingAppend[]): Promise<void> {
    let chunks: Buffer[] = [];
    let infos: AppendedBatch[] = [];
    let done: Array<[PendingAppend, AppendResult]> = [];
    let groupBytes = 0;
    let next = this.endOffset;
    let latestEpoch = this.epochs.latestEpoch();
    const flushChunks = async () => {
      if (chunks.length > 0) await this.writeChunks(chunks, infos, done);
      chunks = [];
      infos = [];
      done = [];
      groupBytes = 0;
    };
    try {
      for (const item of group) {
        const first = item.summary.headers[0]!;
        if (item.leaderEpoch === undefined && first.baseOffset < next) {
          item.reject(
            new SamsaError(
              ErrorCode.OFFSET_OUT_OF_RANGE,
              `follower append at ${first.baseOffset} is behind the log end ${next}`,
            ),
          );
          continue;
        }
        if (item.leaderEpoch !== undefined && item.leaderEpoch < latestEpoch) {
          // Checked again here: appends of two epochs queued together must stay in order.
          item.reject(
            new SamsaError(
              ErrorCode.FENCED_LEADER_EPOCH,
              `leader epoch ${item.leaderEpoch} is older than the log's ${latestEpoch}`,
            ),
          );
          continue;
        }
        const base = item.leaderEpoch === undefined ? first.baseOffset : next;
        const last =
          item.leaderEpoch === undefined
            ? item.summary.headers.at(-1)!.baseOffset + item.summary.headers.at(-1)!.lastOffsetDelta
            : next + item.summary.offsetCount - 1;
        if (
          this.active.mustRoll(groupBytes, item.buf.length, last, this.now(), this.rollJitterMs)
        ) {
          await flushChunks();
          await this.rollAt(base);
        }
        next = this.stampItem(item, next, infos);
        for (const h of item.summary.headers)
          latestEpoch = Math.max(latestEpoch, h.partitionLeaderEpoch);
        chunks.push(item.buf);
        groupBytes += item.buf.length;
        done.push([
          item,
          { baseOffset: base, lastOffset: next - 1, recordCount: item.summary.recordCount },
        ]);
      }
      await flushChunks();
    } catch (err) {
      const failure =
        err instanceof SamsaError
          ? err
          : new SamsaError(
              ErrorCode.KAFKA_STORAGE_ERROR,
              `write to ${this.dir} failed: ${(err as Error).message}`,
              { cause: err },
            );
      this.failure = failure;
      this.logger.error("log write failed; partition log is offline", { error: failure.message });
      for (const [item] of done) item.reject(failure);
      for (const item of group) item.reject(failure);
      for (const item of this.pending.splice(0)) item.reject(failure);
      this.pendingBytes = 0;
    }
  }

  /** Stamps offsets (leader) and records epochs; returns the offset after the item. */
  private stampItem(item: PendingAppend, next: number, infos: AppendedBatch[]): number {
    const { headers, positions } = item.summary;
    for (let i = 0; i < headers.length; i++) {
      const h = headers[i]!;
      if (item.leaderEpoch !== undefined) {
        stampBatch(item.buf, positions[i]!, next, item.leaderEpoch);
        h.baseOffset = next;
        h.partitionLeaderEpoch = item.leaderEpoch;
      }
      infos.push({
        baseOffset: h.baseOffset,
        lastOffset: h.baseOffset + h.lastOffsetDelta,
        maxTimestamp: h.maxTimestamp,
        size: h.batchLength + 12,
      });
      next = h.baseOffset + h.lastOffsetDelta + 1;
    }
    return next;
  }

  private async writeChunks(
    chunks: Buffer[],
    infos: AppendedBatch[],
    done: Array<[PendingAppend, AppendResult]>,
  ): Promise<void> {
    await this.active.append(chunks, infos);
    for (const [item] of done) {
      for (const h of item.summary.headers) {
        if (h.partitionLeaderEpoch > this.epochs.latestEpoch())
          this.epochs.assign(h.partitionLeaderEpoch, h.baseOffset);
      }
      this.unflushedMessages += item.summary.recordCount;
    }
    this.endOffset = infos.at(-1)!.lastOffset + 1;
    if (this.config.flushMessages > 0 && this.unflushedMessages >= this.config.flushMessages) {
      await this.flushNow();
    } else if (this.config.flushStrict) {
      await this.active.syncData();
    }
    for (const [item, result] of done) item.resolve(result);
  }

  /** Starts a new active segment at `baseOffset` (≥ log end); runs on the queue. */
  private async rollAt(baseOffset: number): Promise<void> {
    assert(baseOffset >= this.endOffset, "a new segment starts at or after the log end");
    const old = this.active;
    old.addFinalTimeIndexEntry();
    const seg = await LogSegment.create(this.dir, baseOffset, this.config);
    // The new file must survive a crash before anything acknowledged lands in it.
    await fsyncDir(this.dir);
    this.segments = [...this.segments, seg];
    this.rollJitterMs = this.newJitter();
    this.logger.info("rolled segment", {
      baseOffset,
      previousBaseOffset: old.baseOffset,
      previousBytes: old.size,
    });
  }

  /** Rolls the active segment now (if it holds anything). */
  async roll(): Promise<void> {
    this.checkUsable();
    await this.queue.run(async () => {
      if (!this.active.isEmpty) await this.rollAt(this.endOffset);
    });
  }

  /** Reads whole batches; see the contract at the top of the file. */
  async read(offset: number, maxBytes: number, options: ReadOptions = {}): Promise<ReadResult> {
    this.checkUsable();
    const segments = this.segments;
    const maxOffset = Math.min(options.maxOffset ?? this.hw, this.endOffset);
    const answer = (bytes: Buffer, nextOffset: number): ReadResult => ({
      bytes,
      nextOffset,
      highWatermark: this.hw,
      logStartOffset: this.startOffset,
      logEndOffset: this.endOffset,
    });
    if (!Number.isSafeInteger(offset) || offset < this.startOffset || offset > this.endOffset) {
      throw new SamsaError(
        ErrorCode.OFFSET_OUT_OF_RANGE,
        `offset ${offset} is outside [${this.startOffset}, ${this.endOffset}]`,
      );
    }
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new SamsaError(
        ErrorCode.INVALID_REQUEST,
        `maxBytes ${maxBytes} must be a non-negative integer`,
      );
    }
    for (let i = this.segmentIndexFor(segments, offset); i < segments.length; i++) {
      const seg = segments[i]!;
      if (seg.baseOffset >= maxOffset) break;
      const r = await seg.read(Math.max(offset, seg.baseOffset), maxBytes, maxOffset);
      if (r) return answer(r.bytes, r.nextOffset);
    }
    return answer(Buffer.alloc(0), offset);
  }

  /** Index of the segment whose range holds `offset` (binary search on base offsets). */
  private segmentIndexFor(segments: readonly LogSegment[], offset: number): number {
    let lo = 0;
    let hi = segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segments[mid]!.baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * First offset (≥ log start, < high watermark) whose record timestamp is ≥ `timestamp`, with
   * that record's timestamp; undefined when there is none.
   */
  async offsetForTimestamp(
    timestamp: number,
    options: ReadOptions = {},
  ): Promise<{ offset: number; timestamp: number } | undefined> {
    this.checkUsable();
    const maxOffset = Math.min(options.maxOffset ?? this.hw, this.endOffset);
    return findRecordAtTimestamp(this.segments, timestamp, this.startOffset, maxOffset);
  }

  /** Kafka's OffsetsForLeaderEpoch: the end offset of `epoch` (or of the largest epoch below it). */
  endOffsetForEpoch(epoch: number): { epoch: number; endOffset: number } {
    return this.epochs.endOffsetFor(epoch, this.endOffset);
  }

  /** Removes every batch that holds an offset ≥ `offset`. */
  async truncateTo(offset: number): Promise<void> {
    this.checkUsable();
    await this.queue.run(async () => {
      if (offset >= this.endOffset) return;
      if (offset <= this.startOffset) {
        await this.resetTo(offset);
        return;
      }
      const keep = this.segments.filter((s) => s.baseOffset < offset);
      const drop = this.segments.filter((s) => s.baseOffset >= offset);
      this.segments = keep;
      await this.retire(drop);
      const removed = await this.active.truncateTo(offset);
      this.endOffset = this.active.nextOffset;
      if (this.endOffset < this.startOffset) {
        // The cut batch straddled the log start: nothing at or above the start remains.
        await this.resetTo(this.startOffset);
        return;
      }
      this.afterTruncation();
      this.logger.info("truncated log", {
        offset,
        logEndOffset: this.endOffset,
        bytesRemoved: removed,
        segmentsRemoved: drop.length,
      });
      await this.writeCheckpoint();
    });
  }

  /** Empties the log; the next append gets `offset`. */
  async truncateFullyAndStartAt(offset: number): Promise<void> {
    this.checkUsable();
    await this.queue.run(() => this.resetTo(offset));
  }

  private async resetTo(offset: number): Promise<void> {
    // Retire first: the new segment may reuse a retired one's file name.
    await this.retire(this.segments);
    this.segments = [await LogSegment.create(this.dir, offset, this.config)];
    this.startOffset = offset;
    this.endOffset = offset;
    this.hw = offset;
    this.epochs.clear();
    this.afterTruncation();
    this.logger.info("truncated log fully", { offset });
    await this.writeCheckpoint();
  }

  private afterTruncation(): void {
    this.truncatedDuringFlush = Math.min(this.truncatedDuringFlush, this.endOffset);
    this.epochs.truncateFromEnd(this.endOffset);
    this.hw = Math.min(this.hw, this.endOffset);
    this.recoveryPoint = Math.min(this.recoveryPoint, this.endOffset);
    this.unflushedMessages = 0;
  }

  /**
   * Raises the log start offset to `offset` (Kafka's DeleteRecords); whole segments below it go.
   * Returns the new log start offset.
   */
  async deleteRecordsBefore(offset: number): Promise<number> {
    this.checkUsable();
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.hw) {
      throw new SamsaError(
        ErrorCode.OFFSET_OUT_OF_RANGE,
        `cannot delete records before ${offset}: high watermark is ${this.hw}`,
      );
    }
    return this.queue.run(async () => {
      if (offset > this.startOffset) {
        this.startOffset = offset;
        this.epochs.truncateFromStart(offset);
        await this.writeCheckpoint();
        this.logger.info("log start offset raised", { logStartOffset: offset });
      }
      await this.deleteSegmentsBelowStart();
      return this.startOffset;
    });
  }

  private async deleteSegmentsBelowStart(): Promise<void> {
    if (this.active.nextOffset <= this.startOffset && !this.active.isEmpty) {
      await this.rollAt(this.endOffset);
    }
    await this.deletePrefix(
      (s, i) => i < this.segments.length - 1 && s.nextOffset <= this.startOffset,
      "log start offset",
    );
  }

  /** Deletes the oldest segments while `deletable` holds; never the active one. */
  private async deletePrefix(
    deletable: (s: LogSegment, index: number) => boolean,
    reason: string,
  ): Promise<number> {
    let n = 0;
    while (n < this.segments.length - 1 && deletable(this.segments[n]!, n)) n++;
    if (n === 0) return 0;
    const drop = this.segments.slice(0, n);
    this.segments = this.segments.slice(n);
    const newStart = Math.max(this.startOffset, this.segments[0]!.baseOffset);
    if (newStart !== this.startOffset) {
      this.startOffset = newStart;
      this.epochs.truncateFromStart(newStart);
    }
    await this.writeCheckpoint();
    await this.retire(drop);
    this.logger.info("deleted segments", {
      reason,
      segments: drop.map((s) => s.baseOffset),
      logStartOffset: this.startOffset,
    });
    return n;
  }

  /** Renames segments to `.deleted` now; closes and removes their files after the delay. */
  private async retire(drop: readonly LogSegment[]): Promise<void> {
    for (const seg of drop) {
      const remove = await seg.markDeleted();
      const timer = setTimeout(
        () => void remove().catch(() => undefined),
        this.config.fileDeleteDelayMs,
      );
      timer.unref();
    }
  }

  /**
   * Applies `retention.ms` and `retention.bytes` (and the log start offset): deletes whole
   * segments from the oldest, never the active one and never one holding offsets at or above
   * the high watermark. Returns the number of segments deleted.
   */
  async enforceRetention(nowMs = this.now()): Promise<number> {
    this.checkUsable();
    return this.queue.run(async () => {
      let deleted = 0;
      const before = this.segments.length;
      await this.deleteSegmentsBelowStart();
      deleted += before - this.segments.length;
      const { retentionMs, retentionBytes } = this.config;
      const belowHw = (s: LogSegment) => s.nextOffset <= this.hw;
      if (retentionMs >= 0) {
        deleted += await this.deletePrefix(
          (s) => belowHw(s) && s.maxTimestamp < nowMs - retentionMs,
          "retention.ms",
        );
      }
      if (retentionBytes >= 0) {
        let excess = this.sizeBytes - retentionBytes;
        deleted += await this.deletePrefix((s) => {
          if (!belowHw(s) || s.size > excess) return false;
          excess -= s.size;
          return true;
        }, "retention.bytes");
      }
      return deleted;
    });
  }

  /** Flushes when `flush.ms` has passed since the last flush (and none is running). */
  async maybeFlush(nowMs = this.now()): Promise<boolean> {
    const { flushMs } = this.config;
    if (this.closed || this.flushing || flushMs < 0 || nowMs - this.lastFlushMs < flushMs)
      return false;
    await this.flush();
    return true;
  }

  /** Fsyncs everything written so far and advances the recovery point. */
  async flush(): Promise<void> {
    this.checkUsable();
    await this.flushNow();
  }

  /**
   * Runs a flush after any in progress. A flush does not take the write queue (Kafka's flush
   * does not hold the log lock either): it snapshots the log end, fsyncs the segments while
   * appends go on, then advances the recovery point to the snapshot — or to a truncation point
   * that happened meanwhile, whichever is lower.
   */
  private async flushNow(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined);
    this.flushing = this.flushSnapshot();
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  private async flushSnapshot(): Promise<void> {
    const upTo = this.endOffset;
    const messages = this.unflushedMessages;
    this.truncatedDuringFlush = Number.POSITIVE_INFINITY;
    for (const seg of this.segments) {
      if (seg.nextOffset <= this.recoveryPoint && seg !== this.active) continue;
      try {
        await seg.flush();
      } catch (err) {
        if (!seg.isDeleted) throw err; // retired meanwhile: nothing left to make durable
      }
    }
    this.recoveryPoint = Math.min(upTo, this.truncatedDuringFlush, this.endOffset);
    this.unflushedMessages = Math.max(0, this.unflushedMessages - messages);
    this.lastFlushMs = this.now();
    await this.writeCheckpoint();
  }

  /**
   * Persists the epoch cache and the partition checkpoint. Runs on its own queue: flushes run
   * beside the write queue, and two atomic replacements of one file must never interleave.
   */
  private writeCheckpoint(): Promise<void> {
    return this.checkpointQueue.run(async () => {
      await this.epochs.flush();
      await writePartitionCheckpoint(this.dir, {
        recoveryPoint: this.recoveryPoint,
        logStartOffset: this.startOffset,
        highWatermark: this.hw,
      });
    });
  }

  /** Finishes queued work, flushes, and closes every file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.queue.idle();
    if (!this.failure) await this.flushNow();
    this.closed = true;
    for (const seg of this.segments) await seg.close();
    // Only a log whose every byte was flushed may skip recovery next time.
    if (!this.failure) await writeFileAtomic(join(this.dir, CLEAN_SHUTDOWN_FILE), "");
  }

  /** Closes the log and removes its directory with all data. */
  async delete(): Promise<void> {
    if (!this.closed) {
      await this.queue.idle();
      this.closed = true;
      for (const seg of this.segments) await seg.close().catch(() => undefined);
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /** The epoch value meaning "none". */
  static readonly NO_EPOCH = UNDEFINED_EPOCH;
}

/**
 * The partition log as an interface: what the rest of the broker (partitions, the replica
 * manager, the log manager, and next replication and producer state) may ask of one
 * partition's log. The implementation on disk is `FilePartitionLog` (`file-partition-log.ts`);
 * docs/storage.md lists the modules behind it. This file imports no implementation, so code
 * that only uses a log depends on nothing else of the storage engine.
 *
 * Units and conventions, for every method:
 * - Offsets are int64 in Kafka, JS numbers here: exact below 2^53 (`Number.isSafeInteger`).
 *   The log end offset is the offset the next appended record gets (one past the last).
 * - Timestamps are ms since the Unix epoch; sizes are bytes.
 * - Invariant: logStartOffset ≤ highWatermark ≤ logEndOffset, at every moment a caller can see.
 *   Offsets in the log strictly increase; every batch carries the leader epoch it was written
 *   in, and epochs never decrease along the log.
 * - Errors are `SamsaError`s carrying an ErrorCode. KAFKA_STORAGE_ERROR from any method
 *   means the log is closed, or offline after a failed write (every later call throws the
 *   same error; the broker must stop serving the partition from this disk).
 * - "On the write queue": the method's work runs on the log's one serial queue, in call order
 *   with every other such method, so it sees the effects of those called before it and none of
 *   those called after. Appends, roll, truncation, DeleteRecords and retention are on it. Reads
 *   and the flush are not: they run concurrently with it.
 */
import type { LogConfig } from "../../shared/config/log-config.js";
import type { SamsaError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";

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
  /** `producer.id.expiration.ms`. Default `PRODUCER_ID_EXPIRATION_MS_DEFAULT` (1 day). */
  producerIdExpirationMs?: number;
  /**
   * Called once when a failed write takes the log offline (disk full, I/O error): the log
   * manager then takes the whole log dir offline (Kafka's offline log dir).
   */
  onFailure?: (error: SamsaError) => void;
}

/** The idempotent producers of a partition, as the metrics see them. */
export interface ProducerStateStats {
  /** Producer ids with state here. */
  activeProducers: number;
  /** Re-sent batches answered with their first offsets instead of being written again. */
  duplicates: number;
  /** Batches refused with INVALID_PRODUCER_EPOCH (a zombie producer fenced). */
  fencedEpochs: number;
}

/** Offsets given to an append. */
export interface AppendResult {
  /** Base offset of the first batch appended. */
  baseOffset: number;
  /** Last offset of the last batch appended (inclusive). */
  lastOffset: number;
  /** Records appended, over all batches. */
  recordCount: number;
}

/** Options of {@link PartitionLog.read} and {@link PartitionLog.offsetForTimestamp}. */
export interface ReadOptions {
  /**
   * Exclusive upper bound on batch base offsets. Default: the high watermark (what consumers
   * may see); followers pass the log end. Values above the log end mean the log end.
   */
  maxOffset?: number;
}

/** The answer to a read. `bytes` is empty when nothing is available yet. */
export interface ReadResult {
  /** Whole record batches, back to back, exactly as stored (CRC-checked when read from a file; the in-memory tail was checked when appended). */
  bytes: Buffer;
  /** Offset to read next: one past the last offset of the last batch returned. */
  nextOffset: number;
  /** The log's offsets when the read finished. */
  highWatermark: number;
  logStartOffset: number;
  logEndOffset: number;
}

/** One partition's log. See the file comment for units, invariants and the write queue. */
export interface PartitionLog {
  /** The partition's directory. */
  readonly dir: string;
  readonly topic: string;
  readonly partition: number;
  /** The topic's log config the log was opened with (frozen). */
  readonly config: LogConfig;

  /** First offset kept; raised by DeleteRecords and retention, reset by full truncation. */
  readonly logStartOffset: number;
  /** Offset the next appended record gets. */
  readonly logEndOffset: number;
  /** Offsets below it are committed and visible to consumers. Always in [start, end]. */
  readonly highWatermark: number;
  /** Latest leader epoch recorded in the log (in its epoch cache), -1 when none. */
  readonly latestEpoch: number;
  /** Total bytes of all segments' `.log` files (indexes not counted). */
  readonly sizeBytes: number;
  /** Number of segments, the active one included (≥ 1). */
  readonly segmentCount: number;
  /** Base offsets of the segments, oldest first. */
  segmentBaseOffsets(): number[];
  /** The epoch cache's entries (epoch → start offset), oldest first. */
  epochEntries(): ReadonlyArray<{ epoch: number; startOffset: number }>;
  /** The idempotent producers' counts (docs/idempotence.md). Synchronous. */
  producerStateStats(): ProducerStateStats;
  /**
   * Drops the producers that have not written for `producer.id.expiration.ms` (by their last
   * batch's max timestamp). Resolves with how many went. On the write queue.
   *
   * @param nowMs default the log's clock
   */
  removeExpiredProducers(nowMs?: number): Promise<number>;

  /**
   * Appends as the leader. Validates every batch in the caller first (header, sizes, counts,
   * CRC-32C), so a bad batch never reaches the queue; then, on the write queue, assigns offsets
   * from the log end, stamps each batch's base offset and `leaderEpoch` in place (both outside
   * the CRC: the bytes are otherwise kept as sent), writes, and resolves with the offsets
   * given. Appends queued together are written with one vectored write and, with
   * `flush.strict`, one fsync (group commit); with `flush.messages` the flush runs before the
   * append resolves. The log owns `batches` after the call (it is stamped in place).
   * Waits (backpressure) while 64 MiB of appends are pending.
   *
   * @param batches one or more record batches back to back (docs/format.md). The log takes
   *   the Buffer: it stamps offsets and epoch into it and may serve reads of the log end from it
   *   afterwards (`recent-appends.ts`), so the caller must not change it after the call.
   * @param options.leaderEpoch epoch to stamp; default the log's latest (0 for a new log)
   * @throws CORRUPT_MESSAGE a batch fails validation; nothing of this call is appended
   * @throws MESSAGE_TOO_LARGE a batch exceeds `max.message.bytes` (or `segment.bytes`)
   * @throws FENCED_LEADER_EPOCH `leaderEpoch` is older than the log's latest epoch, checked at
   *   the call and again on the write queue
   * @throws OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, UNKNOWN_PRODUCER_ID an
   *   idempotent batch's sequence or epoch does not fit the producer's state (checked on the
   *   write queue); a batch already written is not an error: it resolves with the offsets it got
   *   the first time and is not written again (docs/idempotence.md)
   * @throws KAFKA_STORAGE_ERROR closed, offline, or the write failed (the log goes offline)
   */
  append(batches: Buffer, options?: { leaderEpoch?: number }): Promise<AppendResult>;

  /**
   * Appends as a follower: base offsets and leader epochs are the leader's and stay as they
   * are (nothing is stamped). Validated like {@link append}, plus: offsets must increase
   * within the call, and, on the write queue, the first batch must start at or after the log
   * end. Runs on the write queue; the log owns `batches` after the call.
   *
   * @throws CORRUPT_MESSAGE a batch fails validation, or offsets go backwards within the call
   * @throws MESSAGE_TOO_LARGE a batch exceeds `max.message.bytes` (or `segment.bytes`)
   * @throws OFFSET_OUT_OF_RANGE the first batch starts below the log end when written
   * @throws KAFKA_STORAGE_ERROR closed, offline, or the write failed
   */
  appendAsFollower(batches: Buffer): Promise<AppendResult>;

  /**
   * Reads whole batches, starting with the batch that holds `offset` (so the first may begin
   * before it), at least one batch even when larger than `maxBytes` (a reader always
   * progresses), at most `maxBytes` beyond the first, all from one segment, and none whose base
   * offset is ≥ `maxOffset`. `offset` equal to the end of what is visible answers empty bytes.
   * Every batch returned is CRC-checked. Not on the write queue: runs on the segment list as it
   * was when the read started.
   *
   * @param offset in [logStartOffset, logEndOffset]
   * @param maxBytes non-negative integer, bytes
   * @throws OFFSET_OUT_OF_RANGE `offset` outside [logStartOffset, logEndOffset]
   * @throws INVALID_REQUEST `maxBytes` negative or not an integer
   * @throws KAFKA_STORAGE_ERROR closed, offline, or a stored batch failed its CRC
   */
  read(offset: number, maxBytes: number, options?: ReadOptions): Promise<ReadResult>;

  /**
   * ListOffsets by time: the first offset in [logStartOffset, maxOffset) whose record
   * timestamp is ≥ `timestamp` (ms), with that record's timestamp; undefined when there is
   * none. Not on the write queue.
   *
   * @throws KAFKA_STORAGE_ERROR closed or offline
   */
  offsetForTimestamp(
    timestamp: number,
    options?: ReadOptions,
  ): Promise<{ offset: number; timestamp: number } | undefined>;

  /**
   * Kafka's OffsetsForLeaderEpoch answer from the epoch cache (`LeaderEpochCache.endOffsetFor`
   * gives every case): for the latest epoch, (it, log end); otherwise the largest known epoch
   * ≤ `epoch` and the start offset of the epoch after it; (-1, -1) when `epoch` is -1 or above
   * every known epoch. A follower truncates to this end offset, never to its own high
   * watermark. Synchronous, not on the write queue.
   */
  endOffsetForEpoch(epoch: number): { epoch: number; endOffset: number };

  /**
   * Starts leader epoch `epoch` at the log end (Kafka assigns the epoch when a replica becomes
   * leader, before any append): a follower whose last epoch is older then learns exactly where
   * it ended here. Persisted before it resolves. A no-op when `epoch` is already the latest. On
   * the write queue.
   *
   * @throws FENCED_LEADER_EPOCH `epoch` is older than the log's latest epoch
   * @throws KAFKA_STORAGE_ERROR closed, offline, or a file operation failed
   */
  beginLeaderEpoch(epoch: number): Promise<void>;

  /**
   * Sets the high watermark (the replication layer's call; a single-replica partition sets it
   * to the log end), clamped into [logStartOffset, logEndOffset] so the invariant holds.
   * Synchronous, not on the write queue; persisted with the next checkpoint.
   */
  setHighWatermark(offset: number): void;

  /**
   * Removes every batch holding an offset ≥ `offset` (replication: a follower cutting what
   * diverges from its leader). A batch is never split, so the new log end may fall below
   * `offset`; later segments are deleted, the epoch cache is trimmed, and the high watermark
   * and recovery point are lowered to the new log end. `offset` ≥ log end drops no batch, but
   * removes an epoch that starts at the log end with no batch in it (see log-truncate.ts);
   * `offset` ≤ log start empties the log (as {@link truncateFullyAndStartAt}). On the write
   * queue.
   *
   * @throws KAFKA_STORAGE_ERROR closed, offline, or a file operation failed
   */
  truncateTo(offset: number): Promise<void>;

  /**
   * Empties the log: every segment and epoch goes, and start, end and high watermark become
   * `offset` (the next append gets it). On the write queue.
   *
   * @throws KAFKA_STORAGE_ERROR closed, offline, or a file operation failed
   */
  truncateFullyAndStartAt(offset: number): Promise<void>;

  /**
   * Kafka's DeleteRecords: raises the log start offset to `offset` (never lowers it) and
   * deletes the whole segments below it. Resolves with the new log start offset. The range
   * check runs in the caller, the change on the write queue.
   *
   * @throws OFFSET_OUT_OF_RANGE `offset` negative, not an integer, or above the high watermark
   * @throws KAFKA_STORAGE_ERROR closed, offline, or a file operation failed
   */
  deleteRecordsBefore(offset: number): Promise<number>;

  /**
   * Applies retention: deletes whole segments from the oldest while they lie below the log
   * start, are older than `retention.ms` (by their newest record's timestamp), or keep the log
   * above `retention.bytes`; never the active segment and never one holding offsets at or
   * above the high watermark. Resolves with the number of segments deleted. On the write queue.
   *
   * @param nowMs the time retention is measured against, ms; default the log's clock
   * @throws KAFKA_STORAGE_ERROR closed, offline, or a file operation failed
   */
  enforceRetention(nowMs?: number): Promise<number>;

  /**
   * Rolls the active segment now if it holds anything (the next append starts a new one).
   * On the write queue.
   *
   * @throws KAFKA_STORAGE_ERROR closed, offline, or a file operation failed
   */
  roll(): Promise<void>;

  /**
   * Fsyncs everything written so far (segments, indexes, epoch cache), then advances the
   * recovery point and writes the partition checkpoint. Not on the write queue: appends go on
   * while it runs, and the recovery point advances only to what was written when it started.
   * Flushes never overlap (a second waits for the first).
   *
   * @throws KAFKA_STORAGE_ERROR closed, offline, or an fsync failed
   */
  flush(): Promise<void>;

  /**
   * Flushes when `flush.ms` (≥ 0) has passed since the last flush and none is running;
   * resolves true when it flushed. False, without throwing, when closed.
   *
   * @param nowMs current time, ms; default the log's clock
   */
  maybeFlush(nowMs?: number): Promise<boolean>;

  /**
   * Waits for queued work, flushes, closes every file and marks the directory cleanly shut
   * down (the next open skips recovery). A log offline after a failed write is closed without
   * flushing or marking. Idempotent; every other method throws KAFKA_STORAGE_ERROR afterwards.
   */
  close(): Promise<void>;

  /** Waits for queued work, closes the log (without flushing) and removes its directory. */
  delete(): Promise<void>;

  /** The storage error that took the log offline; undefined while it is usable. */
  readonly failure: SamsaError | undefined;

  /**
   * Takes the log offline with `error` (another log of its dir failed): every later call
   * throws it, appends queued and not yet written are refused with it, and `close()` leaves no
   * clean-shutdown marker, so the next open recovers past the recovery point. Idempotent.
   */
  takeOffline(error: SamsaError): void;
}

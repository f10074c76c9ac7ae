/**
 * `FilePartitionLog`: the {@link PartitionLog} on disk, one directory of segments. This class is
 * the facade: it opens the log, decides which work runs on the serial write queue, and
 * delegates each concern to its module (see docs/storage.md, "Modules"):
 *
 *   partition-loader.ts  open: leftovers, recovery, checkpoint reconciliation
 *   log-state.ts         segments, offsets, queues, roll, retire, checkpoint (shared state)
 *   log-append.ts        the append pipeline (validate, queue, stamp, group write)
 *   log-read.ts          read, offsetForTimestamp (concurrent with the queue)
 *   log-truncate.ts      truncateTo, truncateFullyAndStartAt (replication)
 *   log-retention.ts     deleteRecordsBefore, retention.ms / retention.bytes
 *   log-flush.ts         flush, flush.ms (beside the queue)
 *
 * The contract, method by method, is on the interface in `partition-log.ts`.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { LogConfig } from "../../shared/config/log-config.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { writeFileAtomic } from "./atomic-file.js";
import { UNDEFINED_EPOCH } from "./leader-epoch-cache.js";
import { AppendPipeline } from "./log-append.js";
import { LogFlusher } from "./log-flush.js";
import { offsetForTimestamp, readBatches } from "./log-read.js";
import {
  checkDeleteRecordsOffset,
  deleteRecordsBefore,
  enforceRetention,
} from "./log-retention.js";
import { LogState } from "./log-state.js";
import { truncateFully, truncateTo } from "./log-truncate.js";
import { CLEAN_SHUTDOWN_FILE, loadPartitionLog } from "./partition-loader.js";
import type {
  AppendResult,
  PartitionLog,
  PartitionLogOptions,
  ProducerStateStats,
  ReadOptions,
  ReadResult,
} from "./partition-log.js";
import { rebuildProducerState, writeProducerSnapshot } from "./producer-snapshot.js";

/** The partition log on disk; see {@link PartitionLog} for the contract. */
export class FilePartitionLog implements PartitionLog {
  /** The epoch value meaning "none". */
  static readonly NO_EPOCH = UNDEFINED_EPOCH;

  private readonly state: LogState;
  private readonly flusher: LogFlusher;
  private readonly appender: AppendPipeline;

  private constructor(state: LogState) {
    this.state = state;
    this.flusher = new LogFlusher(state);
    this.appender = new AppendPipeline(state, this.flusher);
  }

  /** Opens (or creates) the log in `options.dir`, recovering it after an unclean stop. */
  static async open(options: PartitionLogOptions): Promise<FilePartitionLog> {
    const loaded = await loadPartitionLog(options);
    const state = new LogState(options, loaded);
    const from = await rebuildProducerState(state, state.producers, state.now());
    if (state.producers.size > 0 || from >= 0) {
      state.logger.info("loaded producer state", {
        producers: state.producers.size,
        snapshotOffset: from,
      });
    }
    const log = new FilePartitionLog(state);
    await log.state.writeCheckpoint();
    return log;
  }

  get dir(): string {
    return this.state.dir;
  }

  get topic(): string {
    return this.state.topic;
  }

  get partition(): number {
    return this.state.partition;
  }

  get config(): LogConfig {
    return this.state.config;
  }

  get logStartOffset(): number {
    return this.state.startOffset;
  }

  get logEndOffset(): number {
    return this.state.endOffset;
  }

  get highWatermark(): number {
    return this.state.hw;
  }

  get latestEpoch(): number {
    return this.state.epochs.latestEpoch();
  }

  get sizeBytes(): number {
    return this.state.sizeBytes;
  }

  get segmentCount(): number {
    return this.state.segments.length;
  }

  segmentBaseOffsets(): number[] {
    return this.state.segments.map((s) => s.baseOffset);
  }

  epochEntries(): ReadonlyArray<{ epoch: number; startOffset: number }> {
    return this.state.epochs.entries();
  }

  producerStateStats(): ProducerStateStats {
    const s = this.state;
    return { activeProducers: s.producers.size, ...s.producerCounters };
  }

  async removeExpiredProducers(nowMs = this.state.now()): Promise<number> {
    const s = this.state;
    s.checkUsable();
    return s.queue.run(async () => s.producers.removeExpired(nowMs));
  }

  setHighWatermark(offset: number): void {
    const s = this.state;
    s.hw = Math.min(Math.max(offset, s.startOffset), s.endOffset);
  }

  async beginLeaderEpoch(epoch: number): Promise<void> {
    const s = this.state;
    s.checkUsable();
    await s.queue.run(async () => {
      const latest = s.epochs.latestEpoch();
      if (epoch === latest) return;
      if (epoch < latest) {
        throw new SamsaError(
          ErrorCode.FENCED_LEADER_EPOCH,
          `leader epoch ${epoch} is older than the log's ${latest}`,
        );
      }
      s.epochs.assign(epoch, s.endOffset);
      await s.writeCheckpoint();
    });
  }

  endOffsetForEpoch(epoch: number): { epoch: number; endOffset: number } {
    return this.state.epochs.endOffsetFor(epoch, this.state.endOffset);
  }

  append(batches: Buffer, options: { leaderEpoch?: number } = {}): Promise<AppendResult> {
    return this.appender.appendAsLeader(batches, options.leaderEpoch);
  }

  appendAsFollower(batches: Buffer): Promise<AppendResult> {
    return this.appender.appendAsFollower(batches);
  }

  read(offset: number, maxBytes: number, options: ReadOptions = {}): Promise<ReadResult> {
    return readBatches(this.state, offset, maxBytes, options);
  }

  offsetForTimestamp(
    timestamp: number,
    options: ReadOptions = {},
  ): Promise<{ offset: number; timestamp: number } | undefined> {
    return offsetForTimestamp(this.state, timestamp, options);
  }

  async roll(): Promise<void> {
    const s = this.state;
    s.checkUsable();
    await s.queue.run(async () => {
      if (!s.active.isEmpty) await s.rollAt(s.endOffset);
    });
  }

  async truncateTo(offset: number): Promise<void> {
    this.state.checkUsable();
    await this.state.queue.run(() => truncateTo(this.state, offset));
  }

  async truncateFullyAndStartAt(offset: number): Promise<void> {
    this.state.checkUsable();
    await this.state.queue.run(() => truncateFully(this.state, offset));
  }

  async deleteRecordsBefore(offset: number): Promise<number> {
    this.state.checkUsable();
    checkDeleteRecordsOffset(this.state, offset);
    return this.state.queue.run(() => deleteRecordsBefore(this.state, offset));
  }

  async enforceRetention(nowMs = this.state.now()): Promise<number> {
    this.state.checkUsable();
    return this.state.queue.run(() => enforceRetention(this.state, nowMs));
  }

  async flush(): Promise<void> {
    this.state.checkUsable();
    await this.flusher.flushNow();
  }

  maybeFlush(nowMs = this.state.now()): Promise<boolean> {
    return this.flusher.maybeFlush(nowMs);
  }

  async close(): Promise<void> {
    const s = this.state;
    if (s.closed) return;
    await s.queue.idle();
    if (!s.failure) {
      await this.flusher.flushNow();
      // The next open loads the state from here instead of reading the last segment.
      await writeProducerSnapshot(s.dir, s.endOffset, s.producers);
    }
    s.closed = true;
    for (const seg of s.segments) await seg.close(!s.failure);
    // Only a log whose every byte was flushed may skip recovery next time.
    if (!s.failure) await writeFileAtomic(join(s.dir, CLEAN_SHUTDOWN_FILE), "");
  }

  get failure(): SamsaError | undefined {
    return this.state.failure;
  }

  takeOffline(error: SamsaError): void {
    const s = this.state;
    if (s.failure || s.closed) return;
    s.failure = error;
    s.recent.clear();
    s.logger.error("partition log is offline: its log dir failed", { error: error.message });
  }

  async delete(): Promise<void> {
    const s = this.state;
    if (!s.closed) {
      await s.queue.idle();
      s.closed = true;
      for (const seg of s.segments) await seg.close().catch(() => undefined);
    }
    await rm(s.dir, { recursive: true, force: true });
  }
}

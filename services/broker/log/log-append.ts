/**
 * The append pipeline of one partition log: validate in the caller, queue (bounded), then on
 * the serial write queue take a group of pending appends, assign offsets, stamp base offset and
 * leader epoch in place (outside the CRC), roll where a segment limit says so, and write the
 * group with one vectored write (group commit), with one fsync in strict mode.
 *
 * This is the one place where offsets are assigned and the log end advances; per-batch checks
 * that depend on the log's state at write time (follower offsets, fencing, and next producer
 * state) belong in {@link AppendPipeline.checkItem}, which runs there in order.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import {
  type BatchesSummary,
  stampBatch,
  validateBatches,
} from "../../shared/record-batch/header.js";
import { validateRecordBatches } from "../../shared/record-batch/record-walk.js";
import type { LogFlusher } from "./log-flush.js";
import type { LogState } from "./log-state.js";
import type { AppendResult } from "./partition-log.js";
import type { StagedProducers } from "./producer-state.js";
import type { AppendedBatch } from "./segment.js";

/** Bytes of appends waiting for the writer before `append` starts waiting (backpressure). */
export const PENDING_APPEND_BYTES_MAX = 64 * 1024 * 1024;
/** Bytes written by one vectored write at most (one group commit). */
export const APPEND_GROUP_BYTES_MAX = 16 * 1024 * 1024;
/** Batches written by one vectored write at most (bounds the iovec list). */
export const APPEND_GROUP_BATCHES_MAX = 4096;

interface PendingAppend {
  buf: Buffer;
  summary: BatchesSummary;
  /** Leader epoch to stamp; undefined for follower appends (bytes kept as sent). */
  leaderEpoch: number | undefined;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

/** Batches ready for one vectored write, with the appends they complete. */
interface WriteChunk {
  chunks: Buffer[];
  infos: AppendedBatch[];
  done: Array<[PendingAppend, AppendResult]>;
  /** Idempotent re-sends answered with their first offsets once the chunk is written. */
  duplicates: Array<[PendingAppend, AppendResult]>;
  bytes: number;
}

const emptyChunk = (): WriteChunk => ({
  chunks: [],
  infos: [],
  done: [],
  duplicates: [],
  bytes: 0,
});

/** What {@link AppendPipeline.checkItem} decides for one append. */
type ItemVerdict =
  /** Write it; then the producer state takes `staged` (undefined: no idempotent batch). */
  | { readonly kind: "write"; readonly staged: StagedProducers | undefined }
  /** An idempotent re-send already in the log: answer these offsets, write nothing. */
  | { readonly kind: "duplicate"; readonly result: AppendResult }
  | { readonly kind: "refused"; readonly error: SamsaError };

/** The verdict of an append without idempotent batches (no allocation on the hot path). */
const WRITE_PLAIN: ItemVerdict = Object.freeze({ kind: "write", staged: undefined });

/** The write side of one partition log. */
export class AppendPipeline {
  private pending: PendingAppend[] = [];
  private pendingBytes = 0;
  private draining = false;
  private drainWaiters: Array<() => void> = [];

  constructor(
    private readonly log: LogState,
    private readonly flusher: LogFlusher,
  ) {}

  /** Validates and queues a leader append; see `PartitionLog.append`. */
  async appendAsLeader(batches: Buffer, epoch: number | undefined): Promise<AppendResult> {
    const log = this.log;
    log.checkUsable();
    const leaderEpoch = epoch ?? Math.max(log.epochs.latestEpoch(), 0);
    if (leaderEpoch < log.epochs.latestEpoch()) {
      throw new SamsaError(
        ErrorCode.FENCED_LEADER_EPOCH,
        `leader epoch ${leaderEpoch} is older than the log's ${log.epochs.latestEpoch()}`,
      );
    }
    // Every record's framing is walked too (Kafka's LogValidator on a client's append), so a
    // CRC-correct batch that no reader could decode is refused and never stored.
    const summary = validateRecordBatches(batches, {
      maxBatchBytes: log.maxBatchBytes,
      contiguousOffsets: true,
    });
    return this.enqueue(batches, summary, leaderEpoch);
  }

  /** Validates and queues a follower append; see `PartitionLog.appendAsFollower`. */
  async appendAsFollower(batches: Buffer): Promise<AppendResult> {
    this.log.checkUsable();
    // Header and CRC only, no record walk (as Kafka's follower append): the CRC proves these are
    // the bytes the leader stored, which it walked when it appended them; and a follower that
    // refused its leader's log could not repair it, only stall replication of the partition.
    const summary = validateBatches(batches, { maxBatchBytes: this.log.maxBatchBytes });
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
      this.log.checkUsable();
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ buf, summary, leaderEpoch, resolve, reject });
      this.pendingBytes += buf.length;
      if (!this.draining) {
        this.draining = true;
        void this.log.queue.run(() => this.drain());
      }
    });
  }

  /** Writes one group of what is pending; runs on the write queue. */
  private async drain(): Promise<void> {
    try {
      if (this.pending.length > 0) await this.writeGroup(this.takeGroup());
    } finally {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
      // One group per turn: truncation, roll and retention queued meanwhile go next, so a
      // steady stream of appends never starves them.
      if (this.pending.length > 0) void this.log.queue.run(() => this.drain());
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
   * says so. Items that fail a check (see {@link checkItem}) are rejected alone; a failed write
   * takes the log offline.
   */
  private async writeGroup(group: PendingAppend[]): Promise<void> {
    const log = this.log;
    let w = emptyChunk();
    let next = log.endOffset;
    let latestEpoch = log.epochs.latestEpoch();
    const writeChunk = async () => {
      if (w.chunks.length > 0) await this.writeChunk(w);
      // After the write: a re-send's first copy may be in this very chunk.
      for (const [item, result] of w.duplicates) item.resolve(result);
      w = emptyChunk();
    };
    try {
      for (const item of group) {
        const verdict = this.checkItem(item, next, latestEpoch);
        if (verdict.kind === "refused") {
          item.reject(verdict.error);
          continue;
        }
        if (verdict.kind === "duplicate") {
          log.producerCounters.duplicates++;
          w.duplicates.push([item, verdict.result]);
          continue;
        }
        const headers = item.summary.headers;
        const base = item.leaderEpoch === undefined ? headers[0]!.baseOffset : next;
        const last =
          item.leaderEpoch === undefined
            ? headers.at(-1)!.baseOffset + headers.at(-1)!.lastOffsetDelta
            : next + item.summary.offsetCount - 1;
        if (log.active.mustRoll(w.bytes, item.buf.length, last, log.now(), log.rollJitterMs)) {
          await writeChunk();
          await log.rollAt(base);
        }
        next = this.stampItem(item, next, w.infos);
        // After the roll: the snapshot it writes is the state before this item.
        if (verdict.staged !== undefined) log.producers.commit(verdict.staged);
        for (const h of headers) latestEpoch = Math.max(latestEpoch, h.partitionLeaderEpoch);
        w.chunks.push(item.buf);
        w.bytes += item.buf.length;
        w.done.push([
          item,
          { baseOffset: base, lastOffset: next - 1, recordCount: item.summary.recordCount },
        ]);
      }
      await writeChunk();
    } catch (err) {
      await this.fail(err, group, w.done);
    }
  }

  /**
   * Checks an append against the log as it is when its turn comes (on the write queue, with
   * `next` the offset it would get and `latestEpoch` the epoch of the batches before it): the
   * follower's offsets, the leader's epoch, then the idempotent producers' sequences.
   */
  private checkItem(item: PendingAppend, next: number, latestEpoch: number): ItemVerdict {
    const first = item.summary.headers[0]!;
    if (item.leaderEpoch === undefined && first.baseOffset < next) {
      return refused(
        new SamsaError(
          ErrorCode.OFFSET_OUT_OF_RANGE,
          `follower append at ${first.baseOffset} is behind the log end ${next}`,
        ),
      );
    }
    if (item.leaderEpoch !== undefined && item.leaderEpoch < latestEpoch) {
      // Checked again here: appends of two epochs queued together must stay in order.
      return refused(
        new SamsaError(
          ErrorCode.FENCED_LEADER_EPOCH,
          `leader epoch ${item.leaderEpoch} is older than the log's ${latestEpoch}`,
        ),
      );
    }
    return this.checkProducers(item, next);
  }

  /**
   * The producer state's verdict (docs/idempotence.md): every batch of a leader append is
   * checked against the state as the batches before it leave it; a follower's are recorded
   * unchecked. An append is written whole, answered whole as a duplicate, or refused whole.
   */
  private checkProducers(item: PendingAppend, next: number): ItemVerdict {
    const headers = item.summary.headers;
    let staged: StagedProducers | undefined;
    const producers = this.log.producers;
    if (item.leaderEpoch === undefined) {
      for (const h of headers) {
        if (h.producerId < 0n) continue;
        staged ??= new Map();
        producers.stage(staged, h, h.baseOffset, h.baseOffset + h.lastOffsetDelta);
      }
      return staged === undefined ? WRITE_PLAIN : { kind: "write", staged };
    }
    let offset = next;
    let duplicates = 0;
    let dupFirst = -1;
    let dupLast = -1;
    for (const h of headers) {
      const first = offset;
      offset += h.lastOffsetDelta + 1;
      if (h.producerId < 0n) continue;
      const check = producers.check(h, staged);
      if (check.kind === "none") continue;
      if (check.kind === "error") {
        if (check.error.code === ErrorCode.INVALID_PRODUCER_EPOCH)
          this.log.producerCounters.fencedEpochs++;
        return refused(check.error);
      }
      if (check.kind === "duplicate") {
        if (duplicates === 0) dupFirst = check.firstOffset;
        dupLast = check.lastOffset;
        duplicates++;
        continue;
      }
      staged ??= new Map();
      producers.stage(staged, h, first, first + h.lastOffsetDelta);
    }
    if (duplicates === 0) return staged === undefined ? WRITE_PLAIN : { kind: "write", staged };
    if (duplicates === headers.length) {
      return {
        kind: "duplicate",
        result: {
          baseOffset: dupFirst,
          lastOffset: dupLast,
          recordCount: item.summary.recordCount,
        },
      };
    }
    return refused(
      new SamsaError(
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
        "an append mixes batches already written with new ones",
      ),
    );
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

  /** Writes one chunk to the active segment, advances the log end, flushes per policy. */
  private async writeChunk(w: WriteChunk): Promise<void> {
    const log = this.log;
    await log.active.append(w.chunks, w.infos);
    for (const [item] of w.done) {
      for (const h of item.summary.headers) {
        if (h.partitionLeaderEpoch > log.epochs.latestEpoch())
          log.epochs.assign(h.partitionLeaderEpoch, h.baseOffset);
      }
      log.unflushedMessages += item.summary.recordCount;
    }
    log.endOffset = w.infos.at(-1)!.lastOffset + 1;
    log.recent.add(w.chunks, w.infos);
    if (log.config.flushMessages > 0 && log.unflushedMessages >= log.config.flushMessages) {
      await this.flusher.flushNow();
    } else if (log.config.flushStrict) {
      await log.active.syncData();
    }
    for (const [item, result] of w.done) item.resolve(result);
  }

  /**
   * A write failed (disk full, I/O error): the log goes offline and every append not yet
   * resolved is rejected with KAFKA_STORAGE_ERROR. A partial write is cut back to the last whole
   * batch, so nothing torn stays on disk (if that cut fails too, recovery on the next open cuts
   * it: the log was not closed cleanly). Then the log's owner hears of it (`onFailure`).
   */
  private async fail(
    err: unknown,
    group: PendingAppend[],
    done: WriteChunk["done"],
  ): Promise<void> {
    const log = this.log;
    const failure =
      err instanceof SamsaError && err.code === ErrorCode.KAFKA_STORAGE_ERROR
        ? err
        : new SamsaError(
            ErrorCode.KAFKA_STORAGE_ERROR,
            `write to ${log.dir} failed: ${(err as Error).message}`,
            { cause: err },
          );
    const firstFailure = log.failure === undefined;
    log.failure ??= failure;
    log.logger.error("log write failed; partition log is offline", {
      error: failure.message,
      logEndOffset: log.endOffset,
    });
    for (const [item] of done) item.reject(failure);
    for (const item of group) item.reject(failure);
    for (const item of this.pending.splice(0)) item.reject(failure);
    this.pendingBytes = 0;
    // Reads at the log end are served from memory: nothing there may outlive the failure.
    log.recent.clear();
    if (firstFailure) log.onFailure?.(failure);
    // On the write queue: a close waits for it.
    await log.active.cutTornTail().catch((cutErr: unknown) =>
      log.logger.error("cannot cut a partial write back; recovery will on the next open", {
        error: (cutErr as Error).message,
      }),
    );
  }
}

function refused(error: SamsaError): ItemVerdict {
  return { kind: "refused", error };
}

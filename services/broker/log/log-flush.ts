/**
 * Flushing a partition log: `flush.ms` (interval, driven by the log manager's scheduler),
 * `flush.messages` and `flush.strict` (driven by the append pipeline), and `close()`.
 *
 * A flush does not take the write queue (Kafka's flush does not hold the log lock either): it
 * snapshots the log end, fsyncs the segments while appends go on, then advances the recovery
 * point to the snapshot — or to a truncation point that happened meanwhile, whichever is lower.
 * Flushes never overlap: a second one waits for the first, then runs.
 */
import type { LogState } from "./log-state.js";

/** The flush side of one partition log. */
export class LogFlusher {
  private flushing: Promise<void> | undefined;
  private lastFlushMs: number;

  constructor(private readonly log: LogState) {
    this.lastFlushMs = log.now();
  }

  /** Flushes when `flush.ms` has passed since the last flush (and none is running). */
  async maybeFlush(nowMs: number): Promise<boolean> {
    const { flushMs } = this.log.config;
    if (this.log.closed || this.flushing || flushMs < 0 || nowMs - this.lastFlushMs < flushMs)
      return false;
    this.log.checkUsable();
    await this.flushNow();
    return true;
  }

  /** Runs a flush after any in progress; resolves once it is durable. */
  async flushNow(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined);
    this.flushing = this.flushSnapshot();
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  private async flushSnapshot(): Promise<void> {
    const log = this.log;
    const upTo = log.endOffset;
    const messages = log.unflushedMessages;
    log.truncatedDuringFlush = Number.POSITIVE_INFINITY;
    for (const seg of log.segments) {
      if (seg.nextOffset <= log.recoveryPoint && seg !== log.active) continue;
      try {
        await seg.flush();
      } catch (err) {
        if (!seg.isDeleted) throw err; // retired meanwhile: nothing left to make durable
      }
    }
    log.recoveryPoint = Math.min(upTo, log.truncatedDuringFlush, log.endOffset);
    log.unflushedMessages = Math.max(0, log.unflushedMessages - messages);
    this.lastFlushMs = log.now();
    await log.writeCheckpoint();
  }
}

/**
 * Deleting a partition log from its start: Kafka's DeleteRecords (`deleteRecordsBefore`) and
 * retention by `retention.ms` / `retention.bytes`. Only whole segments go, oldest first, never
 * the active one. Both run on the serial write queue; the facade queues them.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { LogState } from "./log-state.js";
import { deleteSnapshots } from "./producer-snapshot.js";
import type { LogSegment } from "./segment.js";

/** Throws OFFSET_OUT_OF_RANGE unless `offset` is a safe integer in [0, high watermark]. */
export function checkDeleteRecordsOffset(log: LogState, offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > log.hw) {
    throw new SamsaError(
      ErrorCode.OFFSET_OUT_OF_RANGE,
      `cannot delete records before ${offset}: high watermark is ${log.hw}`,
    );
  }
}

/** Raises the log start offset to `offset` and deletes the segments below it. Runs on the queue. */
export async function deleteRecordsBefore(log: LogState, offset: number): Promise<number> {
  if (offset > log.startOffset) {
    log.startOffset = offset;
    log.epochs.truncateFromStart(offset);
    await log.writeCheckpoint();
    log.logger.info("log start offset raised", { logStartOffset: offset });
  }
  await deleteSegmentsBelowStart(log);
  return log.startOffset;
}

/**
 * Applies the log start offset, `retention.ms` and `retention.bytes`, never deleting a segment
 * holding offsets at or above the high watermark. Returns the segments deleted. Runs on the queue.
 */
export async function enforceRetention(log: LogState, nowMs: number): Promise<number> {
  let deleted = 0;
  const before = log.segments.length;
  await deleteSegmentsBelowStart(log);
  deleted += before - log.segments.length;
  const { retentionMs, retentionBytes } = log.config;
  const belowHw = (s: LogSegment) => s.nextOffset <= log.hw;
  if (retentionMs >= 0) {
    deleted += await deletePrefix(
      log,
      (s) => belowHw(s) && s.maxTimestamp < nowMs - retentionMs,
      "retention.ms",
    );
  }
  if (retentionBytes >= 0) {
    let excess = log.sizeBytes - retentionBytes;
    deleted += await deletePrefix(
      log,
      (s) => {
        if (!belowHw(s) || s.size > excess) return false;
        excess -= s.size;
        return true;
      },
      "retention.bytes",
    );
  }
  return deleted;
}

async function deleteSegmentsBelowStart(log: LogState): Promise<void> {
  if (log.active.nextOffset <= log.startOffset && !log.active.isEmpty) {
    await log.rollAt(log.endOffset);
  }
  await deletePrefix(
    log,
    (s, i) => i < log.segments.length - 1 && s.nextOffset <= log.startOffset,
    "log start offset",
  );
}

/** Deletes the oldest segments while `deletable` holds; never the active one. */
async function deletePrefix(
  log: LogState,
  deletable: (s: LogSegment, index: number) => boolean,
  reason: string,
): Promise<number> {
  let n = 0;
  while (n < log.segments.length - 1 && deletable(log.segments[n]!, n)) n++;
  if (n === 0) return 0;
  const drop = log.segments.slice(0, n);
  log.segments = log.segments.slice(n);
  const newStart = Math.max(log.startOffset, log.segments[0]!.baseOffset);
  if (newStart !== log.startOffset) {
    log.startOffset = newStart;
    log.epochs.truncateFromStart(newStart);
  }
  await log.writeCheckpoint();
  await log.retire(drop);
  // Snapshots below the first segment describe deleted batches; the one at its base stays.
  const first = log.segments[0]!.baseOffset;
  await deleteSnapshots(log.dir, (offset) => offset < first);
  log.logger.info("deleted segments", {
    reason,
    segments: drop.map((s) => s.baseOffset),
    logStartOffset: log.startOffset,
  });
  return n;
}

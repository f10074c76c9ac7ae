/**
 * Truncation of one partition log from its end, for replication: a follower cuts what diverges
 * from its leader (`truncateTo`), or starts over at the leader's offset (`truncateFully`).
 * Both run on the serial write queue; the facade queues them.
 */
import type { LogState } from "./log-state.js";
import { deleteSnapshots, rebuildProducerState } from "./producer-snapshot.js";
import { LogSegment } from "./segment.js";

/**
 * Removes every batch holding an offset ≥ `offset` (a batch is never split, so the log end may
 * fall below `offset`); an offset at or below the log start empties the log. Runs on the queue.
 */
export async function truncateTo(log: LogState, offset: number): Promise<void> {
  if (offset >= log.endOffset) {
    // No batch to drop, but an epoch may start at the log end without a batch in it: a broker
    // that became leader (and assigned its epoch) but appended nothing before another leader
    // was elected. That entry must go, or the follower keeps answering with it as its last
    // epoch and its leader keeps answering the same divergence (Kafka truncates it the same way).
    const before = log.epochs.latestEpoch();
    log.epochs.truncateFromEnd(log.endOffset);
    if (log.epochs.latestEpoch() !== before) await log.writeCheckpoint();
    return;
  }
  if (offset <= log.startOffset) {
    await truncateFully(log, offset);
    return;
  }
  const keep = log.segments.filter((s) => s.baseOffset < offset);
  const drop = log.segments.filter((s) => s.baseOffset >= offset);
  log.segments = keep;
  await log.retire(drop);
  const removed = await log.active.truncateTo(offset);
  log.endOffset = log.active.nextOffset;
  if (log.endOffset < log.startOffset) {
    // The cut batch straddled the log start: nothing at or above the start remains.
    await truncateFully(log, log.startOffset);
    return;
  }
  afterTruncation(log);
  // Producer state follows the log: rebuilt from the newest snapshot at or below the new end.
  await rebuildProducerState(log, log.producers, log.now());
  log.logger.info("truncated log", {
    offset,
    logEndOffset: log.endOffset,
    bytesRemoved: removed,
    segmentsRemoved: drop.length,
  });
  await log.writeCheckpoint();
}

/** Empties the log; the next append gets `offset`, which is also the new log start. */
export async function truncateFully(log: LogState, offset: number): Promise<void> {
  // Retire first: the new segment may reuse a retired one's file name.
  await log.retire(log.segments);
  log.segments = [await LogSegment.create(log.dir, offset, log.config)];
  log.startOffset = offset;
  log.endOffset = offset;
  log.hw = offset;
  log.epochs.clear();
  log.producers.clear();
  await deleteSnapshots(log.dir, () => true);
  afterTruncation(log);
  log.logger.info("truncated log fully", { offset });
  await log.writeCheckpoint();
}

/** Lowers everything that may point past the new log end. */
function afterTruncation(log: LogState): void {
  log.truncatedDuringFlush = Math.min(log.truncatedDuringFlush, log.endOffset);
  log.epochs.truncateFromEnd(log.endOffset);
  log.hw = Math.min(log.hw, log.endOffset);
  log.recoveryPoint = Math.min(log.recoveryPoint, log.endOffset);
  log.unflushedMessages = 0;
  log.recent.clear();
}

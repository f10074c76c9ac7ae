/**
 * Opening a partition directory: clears leftovers of interrupted operations, loads segments,
 * recovers what an unclean stop may have torn, and reconciles the checkpoints with the data.
 *
 * Recovery (Kafka's): after a clean shutdown (`.clean-shutdown` present) segments open from
 * their indexes, and nothing is ever truncated. Otherwise every segment that may hold offsets at
 * or past the recovery point gets its indexes rebuilt, and its batches from the recovery point
 * on are re-validated batch by batch (length, magic, counts, CRC, increasing offsets): the log
 * is cut at the first torn or corrupt one (the rest of that segment and every later segment go,
 * and the cut is logged as a warning). Below the recovery point the data was flushed and
 * acknowledged: a batch damaged there (a bit flip) stays on disk and its read answers
 * CORRUPT_MESSAGE, and a header chain broken there refuses the open with KAFKA_STORAGE_ERROR
 * rather than cut (see `LogSegment.open`).
 */
import { mkdir, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { BatchHeader } from "../../shared/record-batch/header.js";
import { fsyncDir, TEMP_FILE_SUFFIX } from "./atomic-file.js";
import { LeaderEpochCache } from "./leader-epoch-cache.js";
import { readPartitionCheckpoint } from "./partition-checkpoint.js";
import type { PartitionLogOptions } from "./partition-log.js";
import {
  DELETED_FILE_SUFFIX,
  LOG_FILE_SUFFIX,
  LogSegment,
  OFFSET_INDEX_FILE_SUFFIX,
  TIME_INDEX_FILE_SUFFIX,
} from "./segment.js";

/** File name of the leader-epoch checkpoint (Kafka's name and format). */
export const LEADER_EPOCH_CHECKPOINT_FILE = "leader-epoch-checkpoint";
/** Marker written by a clean close; its absence means recovery is needed. */
export const CLEAN_SHUTDOWN_FILE = ".clean-shutdown";

/** What {@link loadPartitionLog} hands to the partition log. */
export interface LoadedLog {
  segments: LogSegment[];
  epochs: LeaderEpochCache;
  logStartOffset: number;
  logEndOffset: number;
  highWatermark: number;
  recoveryPoint: number;
}

const SEGMENT_FILE = /^(\d{20})\.(log|index|timeindex)$/;

/** Deletes leftovers and returns the base offsets of the segments present, sorted. */
async function scanDirectory(dir: string): Promise<{ bases: number[]; clean: boolean }> {
  const names = await readdir(dir);
  const logs = new Set<number>();
  const indexes: Array<[string, number]> = [];
  let clean = false;
  for (const name of names) {
    if (name.endsWith(TEMP_FILE_SUFFIX) || name.endsWith(DELETED_FILE_SUFFIX)) {
      await unlink(join(dir, name)).catch(() => undefined);
      continue;
    }
    if (name === CLEAN_SHUTDOWN_FILE) clean = true;
    const m = SEGMENT_FILE.exec(name);
    if (!m) continue;
    const base = Number(m[1]);
    if (m[2] === "log") logs.add(base);
    else indexes.push([name, base]);
  }
  for (const [name, base] of indexes) {
    if (!logs.has(base)) await unlink(join(dir, name)).catch(() => undefined);
  }
  return { bases: [...logs].sort((a, b) => a - b), clean };
}

/** Opens every segment, recovering those past the recovery point after an unclean stop. */
export async function loadPartitionLog(options: PartitionLogOptions): Promise<LoadedLog> {
  const { dir, config, logger } = options;
  await mkdir(dir, { recursive: true });
  const { bases, clean } = await scanDirectory(dir);
  const checkpoint = await readPartitionCheckpoint(dir);
  const epochs = await LeaderEpochCache.load(join(dir, LEADER_EPOCH_CHECKPOINT_FILE));
  const onBatch = (h: BatchHeader) => {
    if (h.partitionLeaderEpoch >= 0 && h.partitionLeaderEpoch > epochs.latestEpoch()) {
      epochs.assign(h.partitionLeaderEpoch, h.baseOffset);
    }
  };
  const segments: LogSegment[] = [];
  for (let i = 0; i < bases.length; i++) {
    const base = bases[i]!;
    const nextBase = bases[i + 1] ?? Number.POSITIVE_INFINITY;
    // Only what lies past the recovery point of an unclean stop is re-validated (and cut at
    // its first bad batch); anything below it was flushed and acknowledged, and is kept.
    const recoverFrom =
      !clean && nextBase > checkpoint.recoveryPoint
        ? checkpoint.recoveryPoint
        : Number.POSITIVE_INFINITY;
    const prevEnd = segments.at(-1)?.nextOffset ?? 0;
    const { segment, recovery } = await LogSegment.open(
      dir,
      base,
      config,
      recoverFrom,
      onBatch,
    ).catch(async (err: unknown) => {
      for (const s of segments) await s.close().catch(() => undefined);
      throw err;
    });
    segments.push(segment);
    if (recovery?.stop && (recovery.truncatedBytes > 0 || i < bases.length - 1)) {
      const dropped = bases.slice(i + 1);
      logger.warn("recovery truncated a torn or corrupt log tail", {
        segment: segment.logPath,
        position: recovery.validBytes,
        reason: recovery.stop.reason,
        bytesTruncated: recovery.truncatedBytes,
        laterSegmentsDeleted: dropped.length,
      });
      for (const b of dropped) await deleteSegmentFiles(dir, b);
      break;
    }
    if (segment.baseOffset < prevEnd) {
      logger.warn("segment overlaps its predecessor", {
        segment: segment.logPath,
        previousEnd: prevEnd,
      });
    }
  }
  if (segments.length === 0) {
    segments.push(await LogSegment.create(dir, checkpoint.logStartOffset, config));
  }
  const logEndOffset = segments.at(-1)!.nextOffset;
  const logStartOffset = Math.min(
    Math.max(checkpoint.logStartOffset, segments[0]!.baseOffset),
    logEndOffset,
  );
  const highWatermark = Math.min(Math.max(checkpoint.highWatermark, logStartOffset), logEndOffset);
  const recoveryPoint = clean ? logEndOffset : Math.min(checkpoint.recoveryPoint, logEndOffset);
  epochs.truncateFromEnd(logEndOffset);
  epochs.truncateFromStart(logStartOffset);
  await epochs.flush();
  if (clean) {
    // From here on the log is open for writes: a crash must trigger recovery again.
    await unlink(join(dir, CLEAN_SHUTDOWN_FILE));
    await fsyncDir(dir);
  }
  logger.info("opened partition log", {
    segments: segments.length,
    logStartOffset,
    logEndOffset,
    highWatermark,
    recovered: !clean,
  });
  return { segments, epochs, logStartOffset, logEndOffset, highWatermark, recoveryPoint };
}

async function deleteSegmentFiles(dir: string, base: number): Promise<void> {
  for (const suffix of [LOG_FILE_SUFFIX, OFFSET_INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX]) {
    await unlink(join(dir, `${String(base).padStart(20, "0")}${suffix}`)).catch(() => undefined);
  }
}

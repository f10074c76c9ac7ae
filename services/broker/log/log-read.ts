/**
 * Reads of one partition log. They never take the write queue: each works on the segment list
 * as it was when it started (the list is copy-on-write), and a segment retired meanwhile keeps
 * its files open for `file.delete.delay.ms`, so the read finishes.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { LogState } from "./log-state.js";
import type { ReadOptions, ReadResult } from "./partition-log.js";
import type { LogSegment } from "./segment.js";
import { findRecordAtTimestamp } from "./timestamp-lookup.js";

/** Whole batches from the one holding `offset`; see `PartitionLog.read`. */
export async function readBatches(
  log: LogState,
  offset: number,
  maxBytes: number,
  options: ReadOptions,
): Promise<ReadResult> {
  log.checkUsable();
  const segments = log.segments;
  const maxOffset = Math.min(options.maxOffset ?? log.hw, log.endOffset);
  const answer = (bytes: Buffer, nextOffset: number): ReadResult => ({
    bytes,
    nextOffset,
    highWatermark: log.hw,
    logStartOffset: log.startOffset,
    logEndOffset: log.endOffset,
  });
  if (!Number.isSafeInteger(offset) || offset < log.startOffset || offset > log.endOffset) {
    throw new SamsaError(
      ErrorCode.OFFSET_OUT_OF_RANGE,
      `offset ${offset} is outside [${log.startOffset}, ${log.endOffset}]`,
    );
  }
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `maxBytes ${maxBytes} must be a non-negative integer`,
    );
  }
  // The log end is usually in memory (followers and tailing consumers read there).
  const tail = log.recent.read(offset, maxBytes, maxOffset);
  if (tail !== undefined) return answer(tail.bytes, tail.nextOffset);
  for (let i = segmentIndexFor(segments, offset); i < segments.length; i++) {
    const seg = segments[i]!;
    if (seg.baseOffset >= maxOffset) break;
    const r = await seg.read(Math.max(offset, seg.baseOffset), maxBytes, maxOffset);
    if (r) return answer(r.bytes, r.nextOffset);
  }
  return answer(Buffer.alloc(0), offset);
}

/** Index of the segment whose range holds `offset` (binary search on base offsets). */
export function segmentIndexFor(segments: readonly LogSegment[], offset: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (segments[mid]!.baseOffset <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The first record at or after `timestamp`; see `PartitionLog.offsetForTimestamp`. */
export async function offsetForTimestamp(
  log: LogState,
  timestamp: number,
  options: ReadOptions,
): Promise<{ offset: number; timestamp: number } | undefined> {
  log.checkUsable();
  const maxOffset = Math.min(options.maxOffset ?? log.hw, log.endOffset);
  return findRecordAtTimestamp(log.segments, timestamp, log.startOffset, maxOffset);
}

/**
 * Offset-by-timestamp lookup (ListOffsets by time): finds the first record whose timestamp is
 * at or after a target. The time index narrows the search to one stretch of one segment; only
 * the batch found is decoded, never the log around it.
 */
import { decodeBatch } from "../../shared/record-batch/builder.js";
import type { LogSegment } from "./segment.js";

/** First record with timestamp ≥ `timestamp` and offset in [startOffset, maxOffset). */
export async function findRecordAtTimestamp(
  segments: readonly LogSegment[],
  timestamp: number,
  startOffset: number,
  maxOffset: number,
): Promise<{ offset: number; timestamp: number } | undefined> {
  for (const seg of segments) {
    if (seg.baseOffset >= maxOffset) return undefined;
    let from = Math.max(startOffset, seg.baseOffset);
    while (from < seg.nextOffset) {
      const found = await seg.findBatchByTimestamp(timestamp, from);
      if (!found) break;
      if (found.header.baseOffset >= maxOffset) return undefined;
      const bytes = await seg.readBatchAt(found.position, found.header.batchLength + 12);
      for (const r of decodeBatch(bytes).records) {
        if (r.offset >= maxOffset) return undefined;
        if (r.offset >= startOffset && r.timestamp >= timestamp) {
          return { offset: r.offset, timestamp: r.timestamp };
        }
      }
      from = found.header.baseOffset + found.header.lastOffsetDelta + 1;
    }
  }
  return undefined;
}

/**
 * ListOffsets: the log start offset (timestamp -2), the high watermark (-1), or the first offset
 * whose record's timestamp is at or after a time.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { ListOffsetsPartitionResult } from "../../shared/generated/samsa/v1/ListOffsetsPartitionResult.js";
import type { ListOffsetsRequest__Output } from "../../shared/generated/samsa/v1/ListOffsetsRequest.js";
import {
  LIST_OFFSETS_EARLIEST_TIMESTAMP,
  LIST_OFFSETS_LATEST_TIMESTAMP,
  NO_OFFSET,
} from "../../shared/protocol-limits.js";
import {
  checkPartitionCount,
  checkTopicPartition,
  errorResult,
  NO_ERROR,
  parseInt64,
} from "../../shared/request-parsing.js";
import { UNDEFINED_EPOCH } from "../log/leader-epoch-cache.js";
import type { Partition } from "../partition.js";
import type { HandlerDeps } from "./handler-deps.js";

type Query = ListOffsetsRequest__Output["partitions"][number];

/** The offset and timestamp a query asks for. */
async function lookUp(part: Partition, ts: number): Promise<{ offset: number; timestamp: number }> {
  const log = part.log;
  if (ts === LIST_OFFSETS_EARLIEST_TIMESTAMP)
    return { offset: log.logStartOffset, timestamp: NO_OFFSET };
  if (ts === LIST_OFFSETS_LATEST_TIMESTAMP)
    return { offset: log.highWatermark, timestamp: NO_OFFSET };
  if (ts < 0) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `timestamp ${ts} is neither ${LIST_OFFSETS_EARLIEST_TIMESTAMP}, ${LIST_OFFSETS_LATEST_TIMESTAMP} nor a time`,
    );
  }
  const found = await log.offsetForTimestamp(ts);
  return { offset: found?.offset ?? NO_OFFSET, timestamp: found?.timestamp ?? NO_OFFSET };
}

async function listPartition(deps: HandlerDeps, q: Query): Promise<ListOffsetsPartitionResult> {
  const base = { topic: q.topic, partition: q.partition };
  try {
    checkTopicPartition(q.topic, q.partition);
    const ts = parseInt64(q.timestamp, "timestamp");
    const part = deps.replicas.partitionFor(q.topic, q.partition, true);
    const { offset, timestamp } = await lookUp(part, ts);
    return {
      ...base,
      errorCode: NO_ERROR,
      offset: String(offset),
      timestamp: String(timestamp),
      leaderEpoch: part.leaderEpoch,
    };
  } catch (err) {
    deps.logUnexpected(err, q.topic, q.partition);
    const none = String(NO_OFFSET);
    return {
      ...base,
      ...errorResult(err),
      offset: none,
      timestamp: none,
      leaderEpoch: UNDEFINED_EPOCH,
    };
  }
}

/** Answers a ListOffsets. */
export async function listOffsets(
  deps: HandlerDeps,
  request: ListOffsetsRequest__Output,
): Promise<{ partitions: ListOffsetsPartitionResult[] }> {
  checkPartitionCount(request.partitions.length);
  return { partitions: await Promise.all(request.partitions.map((q) => listPartition(deps, q))) };
}

/**
 * Fetch (consumers): every asked partition read below its high watermark, within the request's
 * byte budget, long-polled when fewer than `min_bytes` are there (long-poll.ts).
 */
import { ErrorCode, NEXT_OFFSET_METADATA_KEY, SamsaError } from "../../shared/errors.js";
import type { FetchPartitionResult } from "../../shared/generated/samsa/v1/FetchPartitionResult.js";
import type { FetchRequest__Output } from "../../shared/generated/samsa/v1/FetchRequest.js";
import { NO_OFFSET } from "../../shared/protocol-limits.js";
import {
  checkPartitionCount,
  checkTopicPartition,
  errorResult,
  NO_ERROR,
  parseInt64,
} from "../../shared/request-parsing.js";
import type { HandlerDeps } from "./handler-deps.js";
import { type BudgetedRead, longPoll } from "./long-poll.js";

/** One partition's read: the answer, and what to wait on if the fetch parks. */
interface PartitionRead extends BudgetedRead {
  readonly result: FetchPartitionResult;
}

const EMPTY = Buffer.alloc(0);

function asRead(result: FetchPartitionResult, wait?: BudgetedRead["wait"]): PartitionRead {
  return {
    result,
    wait,
    answerNow: result.errorCode !== NO_ERROR,
    get bytes() {
      return (result.records as Buffer).length;
    },
    dropBytes() {
      result.records = EMPTY;
    },
  };
}

async function readPartition(
  deps: HandlerDeps,
  fp: FetchRequest__Output["partitions"][number],
  maxBytes: number,
): Promise<PartitionRead> {
  const base = { topic: fp.topic, partition: fp.partition };
  let offset = NO_OFFSET;
  try {
    checkTopicPartition(fp.topic, fp.partition);
    offset = parseInt64(fp.fetchOffset, "fetch_offset");
    const part = deps.replicas.partitionFor(
      fp.topic,
      fp.partition,
      true,
      fp.currentLeaderEpoch ?? -1,
    );
    const r = await part.log.read(offset, maxBytes);
    const result = {
      ...base,
      errorCode: NO_ERROR,
      highWatermark: String(r.highWatermark),
      logStartOffset: String(r.logStartOffset),
      logEndOffset: String(r.logEndOffset),
      records: r.bytes,
      nextOffset: String(r.nextOffset),
    };
    return asRead(result, { part, offset });
  } catch (err) {
    deps.logUnexpected(err, fp.topic, fp.partition);
    const none = String(NO_OFFSET);
    return asRead({
      ...base,
      ...errorResult(err),
      highWatermark: none,
      logStartOffset: none,
      logEndOffset: none,
      records: EMPTY,
      // A damaged stored batch: where the next batch starts, for readers that skip it.
      nextOffset: nextOffsetOf(err) ?? String(offset),
    });
  }
}

function nextOffsetOf(err: unknown): string | undefined {
  return err instanceof SamsaError && err.code === ErrorCode.CORRUPT_MESSAGE
    ? err.metadata?.[NEXT_OFFSET_METADATA_KEY]
    : undefined;
}

/** Answers a Fetch: at once when `min_bytes` are there or a partition failed, else after a long poll. */
export async function fetch(
  deps: HandlerDeps,
  request: FetchRequest__Output,
  callSignal: AbortSignal,
): Promise<{ partitions: FetchPartitionResult[] }> {
  checkPartitionCount(request.partitions.length);
  const limits = { ...request, bound: "highWatermark" } as const;
  const reads = await longPoll(
    request.partitions,
    limits,
    (fp, maxBytes) => readPartition(deps, fp, maxBytes),
    callSignal,
  );
  const partitions = reads.map((r) => r.result);
  deps.metrics.recordFetch(partitions);
  return { partitions };
}

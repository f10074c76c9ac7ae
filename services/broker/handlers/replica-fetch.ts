/**
 * The leader side of ReplicaFetch (Kafka's follower fetch in `ReplicaManager.fetchMessages`):
 * each partition is checked (leader, epoch, divergence), the follower's fetch offset recorded as
 * its log end offset (which may move the high watermark and the ISR), and batches read from the
 * fetch offset up to the log end, not only the high watermark. With no bytes to send, the fetch
 * parks until a partition's log end moves, the wait ends or the follower goes away.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { ReplicaFetchPartitionResult } from "../../shared/generated/samsa/internal/v1/ReplicaFetchPartitionResult.js";
import type { ReplicaFetchRequest__Output } from "../../shared/generated/samsa/internal/v1/ReplicaFetchRequest.js";
import { NO_OFFSET } from "../../shared/protocol-limits.js";
import {
  checkPartitionCount,
  checkTopicPartition,
  errorResult,
  NO_ERROR,
  parseInt64,
} from "../../shared/request-parsing.js";
import type { Partition } from "../partition.js";
import type { HandlerDeps } from "./handler-deps.js";
import { type BudgetedRead, longPoll } from "./long-poll.js";

type Query = ReplicaFetchRequest__Output["partitions"][number];

interface Read extends BudgetedRead {
  readonly result: ReplicaFetchPartitionResult;
}

const EMPTY = Buffer.alloc(0);

function asRead(result: ReplicaFetchPartitionResult, wait?: BudgetedRead["wait"]): Read {
  return {
    result,
    wait,
    answerNow: result.errorCode !== NO_ERROR || Boolean(result.divergingEpoch),
    get bytes() {
      return (result.records as Buffer).length;
    },
    dropBytes() {
      result.records = EMPTY;
    },
  };
}

/** The follower must be a registered broker, and not an earlier incarnation of it. */
function checkReplica(deps: HandlerDeps, request: ReplicaFetchRequest__Output): number {
  const registration = deps.metadata.broker(request.replicaId);
  if (registration === undefined) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `replica ${request.replicaId} is not a registered broker`,
    );
  }
  const brokerEpoch = parseInt64(request.brokerEpoch, "broker_epoch");
  if (brokerEpoch < registration.brokerEpoch) {
    throw new SamsaError(
      ErrorCode.STALE_BROKER_EPOCH,
      `broker ${request.replicaId} epoch ${brokerEpoch} is older than the registered ${registration.brokerEpoch}`,
    );
  }
  return brokerEpoch;
}

async function readPartition(
  deps: HandlerDeps,
  request: ReplicaFetchRequest__Output,
  brokerEpoch: number,
  q: Query,
  maxBytes: number,
): Promise<Read> {
  const base = { topic: q.topic, partition: q.partition };
  let offset = NO_OFFSET;
  let part: Partition | undefined;
  try {
    checkTopicPartition(q.topic, q.partition);
    offset = parseInt64(q.fetchOffset, "fetch_offset");
    part = deps.replicas.partitionFor(q.topic, q.partition, true, q.currentLeaderEpoch);
    const log = part.log;
    const ends = {
      highWatermark: String(log.highWatermark),
      logStartOffset: String(log.logStartOffset),
      logEndOffset: String(log.logEndOffset),
    };
    const diverged = part.recordFollowerFetch(
      request.replicaId,
      brokerEpoch,
      offset,
      q.lastFetchedEpoch,
    );
    if (diverged !== undefined) {
      const divergingEpoch = { epoch: diverged.epoch, endOffset: String(diverged.endOffset) };
      return asRead({ ...base, errorCode: NO_ERROR, ...ends, records: EMPTY, divergingEpoch });
    }
    const r = await log.read(offset, maxBytes, { maxOffset: log.logEndOffset });
    const result = {
      ...base,
      errorCode: NO_ERROR,
      ...ends,
      highWatermark: String(log.highWatermark),
      records: r.bytes,
    };
    return asRead(result, { part, offset });
  } catch (err) {
    deps.logUnexpected(err, q.topic, q.partition);
    const none = String(NO_OFFSET);
    const ends =
      part === undefined
        ? { highWatermark: none, logStartOffset: none, logEndOffset: none }
        : {
            highWatermark: String(part.log.highWatermark),
            logStartOffset: String(part.log.logStartOffset),
            logEndOffset: String(part.log.logEndOffset),
          };
    return asRead({ ...base, ...errorResult(err), ...ends, records: EMPTY });
  }
}

/** Answers a ReplicaFetch (long poll on the partitions' log ends). */
export async function replicaFetch(
  deps: HandlerDeps,
  request: ReplicaFetchRequest__Output,
  callSignal: AbortSignal,
): Promise<{ partitions: ReplicaFetchPartitionResult[] }> {
  checkPartitionCount(request.partitions.length);
  const brokerEpoch = checkReplica(deps, request);
  const reads = await longPoll(
    request.partitions,
    { ...request, bound: "logEnd" },
    (q, maxBytes) => readPartition(deps, request, brokerEpoch, q, maxBytes),
    callSignal,
  );
  return { partitions: reads.map((r) => r.result) };
}

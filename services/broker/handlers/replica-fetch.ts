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
import {
  FETCH_BYTES_MAX_DEFAULT,
  FETCH_PARTITION_BYTES_MAX_DEFAULT,
  FETCH_WAIT_MS_MAX,
  NO_OFFSET,
} from "../../shared/protocol-limits.js";
import {
  checkPartitionCount,
  checkTopicPartition,
  errorResult,
  limit,
  NO_ERROR,
  parseInt64,
} from "../../shared/request-parsing.js";
import type { Partition } from "../partition.js";
import type { HandlerDeps } from "./handler-deps.js";

type Query = ReplicaFetchRequest__Output["partitions"][number];

interface Read {
  readonly result: ReplicaFetchPartitionResult;
  readonly part?: Partition;
  readonly offset: number;
  readonly bytes: number;
}

const EMPTY = Buffer.alloc(0);

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
    part = deps.replicas.partitionFor(q.topic, q.partition, true);
    part.checkEpoch(q.currentLeaderEpoch);
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
      const result = { ...base, errorCode: NO_ERROR, ...ends, records: EMPTY, divergingEpoch };
      return { result, offset, bytes: 0 };
    }
    const r = await log.read(offset, maxBytes, { maxOffset: log.logEndOffset });
    const result = {
      ...base,
      errorCode: NO_ERROR,
      ...ends,
      highWatermark: String(log.highWatermark),
      records: r.bytes,
    };
    return { result, part, offset, bytes: r.bytes.length };
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
    return { result: { ...base, ...errorResult(err), ...ends, records: EMPTY }, offset, bytes: 0 };
  }
}

async function fetchOnce(
  deps: HandlerDeps,
  request: ReplicaFetchRequest__Output,
  brokerEpoch: number,
): Promise<Read[]> {
  let budget = limit(request.maxBytes, FETCH_BYTES_MAX_DEFAULT, 1, FETCH_BYTES_MAX_DEFAULT);
  const out: Read[] = [];
  for (const q of request.partitions) {
    const partMax = limit(
      q.partitionMaxBytes,
      FETCH_PARTITION_BYTES_MAX_DEFAULT,
      1,
      FETCH_BYTES_MAX_DEFAULT,
    );
    const r = await readPartition(
      deps,
      request,
      brokerEpoch,
      q,
      budget > 0 ? Math.min(partMax, budget) : 0,
    );
    if (budget <= 0) r.result.records = EMPTY;
    budget -= r.bytes;
    out.push(r);
  }
  return out;
}

/** Answers a ReplicaFetch (long poll on the partitions' log ends). */
export async function replicaFetch(
  deps: HandlerDeps,
  request: ReplicaFetchRequest__Output,
  callSignal: AbortSignal,
): Promise<{ partitions: ReplicaFetchPartitionResult[] }> {
  checkPartitionCount(request.partitions.length);
  const brokerEpoch = checkReplica(deps, request);
  const minBytes = Math.max(request.minBytes, 1);
  const deadline = Date.now() + Math.min(request.maxWaitMs, FETCH_WAIT_MS_MAX);
  for (;;) {
    const reads = await fetchOnce(deps, request, brokerEpoch);
    const bytes = reads.reduce((n, r) => n + r.bytes, 0);
    const answerNow = reads.some((r) => r.result.errorCode !== NO_ERROR || r.result.divergingEpoch);
    const waitMs = deadline - Date.now();
    if (bytes >= minBytes || answerNow || waitMs <= 0 || callSignal.aborted) {
      return { partitions: reads.map((r) => r.result) };
    }
    const woken = new AbortController();
    const signal = AbortSignal.any([callSignal, woken.signal]);
    await Promise.race(reads.map((r) => r.part!.waitForData(r.offset, waitMs, signal, "logEnd")));
    woken.abort();
  }
}

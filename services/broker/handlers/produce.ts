/**
 * Produce: each partition's batches are appended by its leader; acks=0 answers before the
 * appends finish, acks=leader after the leader's append, acks=all once the high watermark passes
 * the batch (every in-sync replica has it) or `timeout_ms` passed (REQUEST_TIMED_OUT).
 */
import { Acks } from "../../shared/generated/samsa/v1/Acks.js";
import type { ProducePartitionResult } from "../../shared/generated/samsa/v1/ProducePartitionResult.js";
import type { ProduceRequest__Output } from "../../shared/generated/samsa/v1/ProduceRequest.js";
import {
  NO_OFFSET,
  PRODUCE_TIMEOUT_MS_DEFAULT,
  PRODUCE_TIMEOUT_MS_MAX,
} from "../../shared/protocol-limits.js";
import {
  checkPartitionCount,
  checkTopicPartition,
  errorResult,
  NO_ERROR,
} from "../../shared/request-parsing.js";
import type { HandlerDeps } from "./handler-deps.js";

type PartitionRecords = ProduceRequest__Output["partitions"][number];

async function producePartition(
  deps: HandlerDeps,
  p: PartitionRecords,
  acks: number,
  timeoutMs: number,
): Promise<ProducePartitionResult> {
  const base = { topic: p.topic, partition: p.partition };
  try {
    checkTopicPartition(p.topic, p.partition);
    const part = deps.replicas.partitionFor(p.topic, p.partition, true);
    const result = await part.appendAsLeader(p.records, {
      acksAll: acks === Acks.ACKS_ALL,
      timeoutMs,
    });
    deps.metrics.recordProduce(p.topic, p.records.length, result.recordCount);
    return {
      ...base,
      errorCode: NO_ERROR,
      baseOffset: String(result.baseOffset),
      logStartOffset: String(part.log.logStartOffset),
    };
  } catch (err) {
    deps.logUnexpected(err, p.topic, p.partition);
    deps.metrics.recordProduceError(p.topic, err);
    const none = String(NO_OFFSET);
    return { ...base, ...errorResult(err), baseOffset: none, logStartOffset: none };
  }
}

/** Answers a Produce. */
export async function produce(
  deps: HandlerDeps,
  request: ProduceRequest__Output,
): Promise<{ partitions: ProducePartitionResult[] }> {
  checkPartitionCount(request.partitions.length);
  const acks = request.acks as number;
  const timeoutMs = Math.min(
    request.timeoutMs || PRODUCE_TIMEOUT_MS_DEFAULT,
    PRODUCE_TIMEOUT_MS_MAX,
  );
  const work = request.partitions.map((p) => producePartition(deps, p, acks, timeoutMs));
  if (acks !== Acks.ACKS_NONE) return { partitions: await Promise.all(work) };
  // acks=0: the producer does not wait; failures only show in logs and metrics.
  void Promise.all(work);
  const none = String(NO_OFFSET);
  const partitions = request.partitions.map((p) => ({
    topic: p.topic,
    partition: p.partition,
    errorCode: NO_ERROR,
    baseOffset: none,
    logStartOffset: none,
  }));
  return { partitions };
}

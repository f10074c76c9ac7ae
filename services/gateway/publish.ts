/**
 * Publish: records given as fields, appended through the router. Each record's partition is the
 * one it names, else Kafka's murmur2 of its key, else round robin (the shared partitioner the
 * client library uses too, so a key lands where a Kafka client would put it). A partition's
 * records go to the partition's accumulator (`publish-accumulator.ts`), which appends what
 * concurrent calls sent to that partition together, as record batches (`buildBatch`, split near
 * {@link PUBLISH_BATCH_BYTES_TARGET}) in one Produce; one call's records of a partition get
 * consecutive offsets and succeed or fail together; each record's answer is its partition and
 * offset, or its partition's error code.
 * With an acknowledgement asked for, the batches carry the gateway's producer id and sequences
 * (`idempotence.ts`), so the router's retries after a leader change write them once.
 */
import { topicConfigOf } from "../shared/config/index.js";
import type { Partitioner } from "../shared/partitioner.js";
import type { Deadline } from "../shared/retry.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { PublishRequest__Output } from "../shared/generated/samsa/v1/PublishRequest.js";
import type { PublishResult } from "../shared/generated/samsa/v1/PublishResult.js";
import { buildBatch } from "../shared/record-batch/builder.js";
import { BATCH_HEADER_BYTES } from "../shared/record-batch/layout.js";
import { type ProducerRecord, recordBytesMax } from "../shared/record-batch/records.js";
import { errorResult, NO_ERROR, parseInt64 } from "../shared/request-parsing.js";
import { validateTopicName } from "../shared/topic-name.js";
import { Acks } from "../shared/generated/samsa/v1/Acks.js";
import type { ProducePartitionResult__Output } from "../shared/generated/samsa/v1/ProducePartitionResult.js";
import type { GatewayProducers, ProducerTurn } from "./idempotence.js";
import type { PublishAccumulator, SendAppend } from "./publish-accumulator.js";
import type { ProduceOptions, Router } from "./router.js";
import type { Routing } from "./routing.js";

/** Records in one Publish at most. */
export const PUBLISH_RECORDS_MAX = 10_000;
/**
 * Estimated bytes after which a partition's records start a new batch: Kafka's default
 * `batch.size` (16 KiB), far under the default `max.message.bytes` (1 MiB). A topic whose own
 * `max.message.bytes` is smaller gets batches that fit it (the gateway cannot see a broker's
 * `message.max.bytes`, as a Kafka producer cannot).
 */
export const PUBLISH_BATCH_BYTES_TARGET = 16 * 1024;

/** What Publish needs. */
export interface PublishDeps {
  readonly routing: Routing;
  readonly router: Router;
  readonly partitioner: Partitioner;
  /** The gateway's idempotent producer; undefined: plain appends. */
  readonly producers?: GatewayProducers;
}

/** One partition's share of the request. */
interface PartitionShare {
  readonly indices: number[];
  readonly records: ProducerRecord[];
}

/** Handles one Publish; see the module comment. */
export async function publish(
  request: PublishRequest__Output,
  deps: PublishDeps,
  appends: PublishAccumulator,
  deadline: Deadline,
  signal: AbortSignal,
): Promise<{ results: PublishResult[] }> {
  validateTopicName(request.topic);
  const n = request.records.length;
  if (n === 0) throw new SamsaError(ErrorCode.INVALID_REQUEST, "no records in the request");
  if (n > PUBLISH_RECORDS_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `${n} records exceed the limit of ${PUBLISH_RECORDS_MAX}`,
    );
  }
  const topic = await deps.routing.topic(request.topic, deadline, signal);
  const results: PublishResult[] = new Array(n);
  const shares = assign(request, topic.partitions, deps.partitioner, results);
  const batchBytes = batchBytesTarget(topicConfigOf(topic).maxMessageBytes);
  const partitions = [...shares.keys()];
  const answers = await Promise.all(
    partitions.map((partition) =>
      appends.append(
        {
          topic: request.topic,
          partition,
          acks: request.acks,
          timeoutMs: request.timeoutMs,
          batchBytes,
        },
        shares.get(partition)!.records,
        deadline,
        signal,
      ),
    ),
  );
  for (const [k, partition] of partitions.entries()) {
    fill(results, partition, shares.get(partition)!.indices, answers[k]!);
  }
  return { results };
}

/**
 * How the gateway appends one coalesced share of a partition (see `publish-accumulator.ts`):
 * as batches of about the topic's batch size, through the router (which follows the leader);
 * with an acknowledgement asked for, as the gateway's idempotent producer, so the router's
 * retries write them once.
 */
export function appendThroughRouter(deps: PublishDeps): SendAppend {
  return (spec, records, deadline, signal) => {
    const options = { acks: spec.acks, timeoutMs: spec.timeoutMs, method: "Publish" };
    const call = { options, deadline, signal };
    const producers = deps.producers;
    if (producers === undefined || spec.acks === Acks.ACKS_NONE) {
      return sendOne(
        deps,
        spec.topic,
        spec.partition,
        buildBatches(records, spec.batchBytes),
        call,
      );
    }
    return producers.append(spec.topic, spec.partition, records.length, deadline, signal, (turn) =>
      sendOne(deps, spec.topic, spec.partition, buildBatches(records, spec.batchBytes, turn), call),
    );
  };
}

/** One partition's append through the router. */
async function sendOne(
  deps: PublishDeps,
  topic: string,
  partition: number,
  records: Buffer,
  call: {
    options: ProduceOptions;
    deadline: Deadline;
    signal: AbortSignal;
  },
): Promise<ProducePartitionResult__Output> {
  const [answer] = await deps.router.produceParts(
    [{ topic, partition, records }],
    call.options,
    call.deadline,
    call.signal,
  );
  return answer!;
}

/** The results of a partition's records from its append's answer. */
function fill(
  results: PublishResult[],
  partition: number,
  indices: readonly number[],
  answer: { baseOffset: string; errorCode: PublishResult["errorCode"]; errorMessage: string },
): void {
  const base = Number(answer.baseOffset);
  const ok = answer.errorCode === NO_ERROR;
  for (const [position, i] of indices.entries()) {
    results[i] = {
      partition,
      offset: ok && base >= 0 ? String(base + position) : "-1",
      errorCode: answer.errorCode,
      errorMessage: answer.errorMessage,
    };
  }
}

/**
 * Chooses each record's partition and groups the records by it, in request order. A record that
 * names a partition the topic does not have, or carries a bad timestamp, gets its error result
 * here and is not sent.
 */
function assign(
  request: PublishRequest__Output,
  count: number,
  partitioner: Partitioner,
  results: PublishResult[],
): Map<number, PartitionShare> {
  const shares = new Map<number, PartitionShare>();
  const now = Date.now();
  for (const [i, r] of request.records.entries()) {
    const partition = r.partition ?? partitioner.partition(request.topic, r.key ?? null, count);
    try {
      if (partition < 0 || partition >= count) {
        throw new SamsaError(
          ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
          `partition ${partition} of ${request.topic} does not exist (it has ${count})`,
        );
      }
      const timestamp = r.timestamp === undefined ? now : parseInt64(r.timestamp, "timestamp");
      if (timestamp < 0)
        throw new SamsaError(ErrorCode.INVALID_TIMESTAMP, `timestamp ${timestamp} is negative`);
      const share = shares.get(partition) ?? { indices: [], records: [] };
      share.indices.push(i);
      share.records.push({
        key: r.key ?? null,
        value: r.value,
        headers: r.headers.map((h) => ({ key: h.key, value: h.value })),
        timestamp,
      });
      shares.set(partition, share);
    } catch (err) {
      results[i] = { partition, offset: "-1", ...errorResult(err) };
    }
  }
  return shares;
}

/** The estimated batch size to aim for, given the topic's `max.message.bytes` (if set). */
function batchBytesTarget(topicMaxMessageBytes: number | undefined): number {
  const max = topicMaxMessageBytes;
  if (max === undefined || max <= BATCH_HEADER_BYTES) return PUBLISH_BATCH_BYTES_TARGET;
  return Math.min(PUBLISH_BATCH_BYTES_TARGET, max - BATCH_HEADER_BYTES);
}

/**
 * The records as batches of about `targetBytes` each (estimated), back to back; with `turn`,
 * each batch carries the producer id, epoch and its first record's sequence.
 */
function buildBatches(
  records: readonly ProducerRecord[],
  targetBytes: number,
  turn?: ProducerTurn,
): Buffer {
  const batches: Buffer[] = [];
  let start = 0;
  let bytes = 0;
  const build = (from: number, to: number) =>
    buildBatch(
      records.slice(from, to),
      turn === undefined
        ? {}
        : {
            producerId: turn.producerId,
            producerEpoch: turn.producerEpoch,
            baseSequence: turn.baseSequence + from,
          },
    );
  for (const [i, r] of records.entries()) {
    const size = recordBytesMax(r);
    if (i > start && bytes + size > targetBytes) {
      batches.push(build(start, i));
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  batches.push(build(start, records.length));
  return batches.length === 1 ? batches[0]! : Buffer.concat(batches);
}

/**
 * One producer send, from records to per-record outcomes. Records are given partitions (explicit,
 * by key, or round robin) and cut per partition into batches of at most max.request.size. Each
 * round sends the head batch of every partition still pending, one Produce call per leader
 * (calls in parallel, each at most max.request.size). A written batch leaves its queue; a
 * non-retriable error fails its records; a retriable one keeps the batch queued, and the next
 * round follows a backoff and, for stale-metadata errors, a metadata refresh. When the delivery
 * deadline passes, what is left fails with the last error. Batches are built once, so a retry
 * sends the same bytes (and timestamps).
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { Acks__Output as ProtoAcks } from "../shared/generated/samsa/v1/Acks.js";
import type { ProduceResponse__Output } from "../shared/generated/samsa/v1/ProduceResponse.js";
import { unary } from "../shared/grpc/client.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import {
  BATCH_HEADER_BYTES,
  buildBatch,
  type CompressionType,
} from "../shared/record-batch/index.js";
import { type Cluster, needsMetadataRefresh, type TopicMetadata } from "./metadata.js";
import type { Partitioner } from "../shared/partitioner.js";
import {
  type NormalizedRecord,
  normalizeRecord,
  type ProducerRecord,
  type RecordMetadata,
} from "./records.js";
import { backoffMs, Deadline, sleep } from "../shared/retry.js";

/** Extra gRPC deadline over a Produce's own `timeout_ms`, so the broker's answer can arrive, ms. */
export const PRODUCE_DEADLINE_MARGIN_MS = 1_000;

/** The outcome of one record: where it was written, or why not. */
export type RecordOutcome = RecordMetadata | SamsaError;

/** Settings of one job (resolved from the producer's and the send's options). */
export interface ProduceJobOptions {
  acks: ProtoAcks;
  compression: CompressionType;
  deliveryTimeoutMs: number;
  requestTimeoutMs: number;
  maxRequestSizeBytes: number;
}

/** A batch's records (indices into the job's records), its estimated size and, once built, bytes. */
interface Chunk {
  indices: number[];
  bytes: number;
  batch?: Buffer;
}

/** One partition's chunks still to write, in order. */
interface PartitionQueue {
  partition: number;
  chunks: Chunk[];
}

/** A planned Produce call: the head chunk of some partitions led by one broker. */
type Request = { q: PartitionQueue; batch: Buffer }[];

/** One send's state; {@link run} once. */
export class ProduceJob {
  private readonly records: NormalizedRecord[];
  private readonly outcomes: (RecordOutcome | undefined)[];
  private readonly queues = new Map<number, PartitionQueue>();
  private readonly deadline: Deadline;
  private failures: SamsaError[] = [];

  constructor(
    private readonly cluster: Cluster,
    private readonly partitioner: Partitioner,
    private readonly topic: string,
    records: readonly ProducerRecord[],
    private readonly options: ProduceJobOptions,
  ) {
    this.deadline = new Deadline(options.deliveryTimeoutMs);
    const now = Date.now();
    this.records = records.map((r) => normalizeRecord(r, now));
    this.outcomes = new Array(records.length);
  }

  /** Sends everything; resolves with one outcome per record, in input order. Never rejects for a record's error. */
  async run(): Promise<RecordOutcome[]> {
    let metadata: TopicMetadata;
    try {
      metadata = await this.cluster.topic(this.topic, { timeoutMs: this.deadline.remainingMs() });
    } catch (err) {
      return this.outcomes.fill(asSamsaError(err)) as RecordOutcome[];
    }
    this.plan(metadata.partitions.length);
    for (let attempt = 0; this.queues.size > 0; ) {
      this.failures = [];
      await this.round(metadata);
      if (this.failures.length === 0) continue;
      const last = this.failures[this.failures.length - 1]!;
      if (this.deadline.expired) {
        this.failRemaining(last);
        break;
      }
      if (this.failures.some((e) => needsMetadataRefresh(e.code)))
        this.cluster.invalidate(this.topic);
      await sleep(backoffMs(attempt++), undefined, this.deadline);
      try {
        metadata = await this.cluster.topic(this.topic, {
          timeoutMs: Math.max(1, this.deadline.remainingMs()),
        });
      } catch {
        // Keep the old metadata: the next round fails retriably again, or the deadline ends it.
      }
    }
    return this.outcomes as RecordOutcome[];
  }

  /** Chooses each record's partition and cuts each partition's records into chunks. */
  private plan(partitionCount: number): void {
    const max = this.options.maxRequestSizeBytes;
    this.records.forEach((r, i) => {
      if (r.sizeBytes + BATCH_HEADER_BYTES > max) {
        this.outcomes[i] = new SamsaError(
          ErrorCode.MESSAGE_TOO_LARGE,
          `a record of ${r.sizeBytes} bytes exceeds max.request.size ${max}`,
        );
        return;
      }
      const p = r.partition ?? this.partitioner.partition(this.topic, r.key, partitionCount);
      if (p >= partitionCount) {
        this.outcomes[i] = new SamsaError(
          ErrorCode.INVALID_REQUEST,
          `topic ${this.topic} has no partition ${p} (it has ${partitionCount})`,
        );
        return;
      }
      let q = this.queues.get(p);
      if (q === undefined) {
        q = { partition: p, chunks: [] };
        this.queues.set(p, q);
      }
      let chunk = q.chunks[q.chunks.length - 1];
      if (chunk === undefined || chunk.bytes + r.sizeBytes + BATCH_HEADER_BYTES > max) {
        chunk = { indices: [], bytes: 0 };
        q.chunks.push(chunk);
      }
      chunk.indices.push(i);
      chunk.bytes += r.sizeBytes;
    });
  }

  /** One round: plan the calls per leader, send them in parallel, settle each partition. */
  private async round(metadata: TopicMetadata): Promise<void> {
    const requests = new Map<string, Request>();
    const requestBytes = new Map<string, number>();
    for (const q of this.queues.values()) {
      const leader = this.cluster.leaderOf(metadata, q.partition);
      if (leader instanceof SamsaError) {
        this.settle(q, leader);
        continue;
      }
      const chunk = q.chunks[0]!;
      const bytes = requestBytes.get(leader.address) ?? 0;
      // A call that is full leaves this partition to the next round (no error, no backoff).
      if (bytes > 0 && bytes + chunk.bytes > this.options.maxRequestSizeBytes) continue;
      try {
        chunk.batch ??= buildBatch(
          chunk.indices.map((i) => this.records[i]!),
          { compression: this.options.compression },
        );
      } catch (err) {
        this.settle(q, asSamsaError(err));
        continue;
      }
      requestBytes.set(leader.address, bytes + chunk.bytes);
      requests.set(leader.address, [
        ...(requests.get(leader.address) ?? []),
        { q, batch: chunk.batch },
      ]);
    }
    await Promise.all([...requests].map(([address, request]) => this.call(address, request)));
  }

  /** One Produce call; a call-level failure (e.g. an unreachable broker) fails every partition in it. */
  private async call(address: string, request: Request): Promise<void> {
    let response: ProduceResponse__Output;
    try {
      const timeoutMs = this.deadline.requestMs(this.options.requestTimeoutMs);
      response = await unary(
        this.cluster.client(address),
        "Produce",
        {
          partitions: request.map(({ q, batch }) => ({
            topic: this.topic,
            partition: q.partition,
            records: batch,
          })),
          acks: this.options.acks,
          timeoutMs,
        },
        { deadlineMs: timeoutMs + PRODUCE_DEADLINE_MARGIN_MS },
      );
    } catch (err) {
      for (const { q } of request) this.settle(q, asSamsaError(err));
      return;
    }
    for (const { q } of request) {
      const result = response.partitions.find(
        (r) => r.topic === this.topic && r.partition === q.partition,
      );
      const code = result === undefined ? ErrorCode.UNKNOWN : fromProtoErrorCode(result.errorCode);
      if (code === ErrorCode.NONE) {
        this.settle(q, Number(result!.baseOffset));
      } else {
        const message = result?.errorMessage || `no result for the partition (${ErrorCode[code]})`;
        this.settle(q, new SamsaError(code, `${this.topic}-${q.partition}: ${message}`));
      }
    }
  }

  /**
   * Settles the head chunk of `q`: written at `outcome` (its base offset; -1 with acks=0), or
   * failed. A retriable error leaves the chunk queued and is noted for the retry decision.
   */
  private settle(q: PartitionQueue, outcome: SamsaError | number): void {
    if (outcome instanceof SamsaError && outcome.retriable) {
      this.failures.push(outcome);
      return;
    }
    if (typeof outcome === "number" && !(Number.isSafeInteger(outcome) && outcome >= -1)) {
      outcome = new SamsaError(ErrorCode.UNKNOWN, `the broker answered base offset ${outcome}`);
    }
    const chunk = q.chunks.shift()!;
    chunk.indices.forEach((index, n) => {
      this.outcomes[index] =
        typeof outcome === "number"
          ? {
              topic: this.topic,
              partition: q.partition,
              offset: outcome < 0 ? -1 : outcome + n,
              timestamp: this.records[index]!.timestamp,
            }
          : outcome;
    });
    if (q.chunks.length === 0) this.queues.delete(q.partition);
  }

  private failRemaining(error: SamsaError): void {
    for (const q of this.queues.values()) {
      for (const chunk of q.chunks) for (const i of chunk.indices) this.outcomes[i] = error;
    }
    this.queues.clear();
  }
}

/** Any error as a SamsaError (a non-Samsa one is a bug somewhere: UNKNOWN). */
export function asSamsaError(err: unknown): SamsaError {
  if (err instanceof SamsaError) return err;
  return new SamsaError(ErrorCode.UNKNOWN, err instanceof Error ? err.message : String(err), {
    cause: err,
  });
}

/**
 * The producer: sends records straight to partition leaders. `send` groups records per
 * partition, builds one record batch per partition and round (compressed as configured), makes
 * one Produce call per leader broker, and retries retriable per-partition errors after a
 * metadata refresh until the delivery timeout. `add` + `flush` batch records in the background
 * (linger.ms, batch.size, buffer.memory; see record-accumulator.ts).
 *
 * Without idempotence (not implemented yet), a retry after a lost answer may write a batch
 * twice, as with Kafka's `enable.idempotence=false`. Records of one partition in one `send` keep
 * their order; each `send` resolves only when all its records are written.
 */
import { assert, ErrorCode, SamsaError } from "../shared/errors.js";
import { unary } from "../shared/grpc/client.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import {
  Acks as ProtoAcks,
  type Acks__Output as ProtoAcksValue,
} from "../shared/generated/samsa/v1/Acks.js";
import { BATCH_HEADER_BYTES, buildBatch, CompressionType } from "../shared/record-batch/index.js";
import {
  Cluster,
  type ClusterOptions,
  needsMetadataRefresh,
  type TopicMetadata,
} from "./metadata.js";
import { Partitioner } from "./partitioner.js";
import { type AccumulatorOptions, type Delivery, RecordAccumulator } from "./record-accumulator.js";
import {
  type NormalizedRecord,
  normalizeRecord,
  type ProducerRecord,
  type RecordMetadata,
} from "./records.js";
import { backoffMs, Deadline, REQUEST_TIMEOUT_MS_DEFAULT, sleep } from "./retry.js";

/** Kafka's acks: 0 = none, 1 = the leader, "all" or -1 = every in-sync replica. */
export type Acks = 0 | 1 | -1 | "all";

/** Default acks (Kafka's default since 3.0). */
export const ACKS_DEFAULT: Acks = "all";
/** Longest a record may take to be acknowledged, retries included, ms (Kafka's `delivery.timeout.ms`). */
export const DELIVERY_TIMEOUT_MS_DEFAULT = 120_000;
/** Largest Produce request, bytes; also the largest batch (Kafka's `max.request.size`). */
export const MAX_REQUEST_SIZE_BYTES_DEFAULT = 1_048_576;

/** Options of {@link Producer}. Give `cluster` (shared) or `bootstrapServers` (owned). */
export interface ProducerOptions extends AccumulatorOptions {
  /** A cluster to share with other clients; not closed by {@link Producer.close}. */
  cluster?: Cluster;
  /** Bootstrap brokers, when no `cluster` is given. */
  bootstrapServers?: ClusterOptions["bootstrapServers"];
  /** Default acks of every send. Default {@link ACKS_DEFAULT}. */
  acks?: Acks;
  /** Codec of every batch. Default NONE. */
  compression?: CompressionType;
  /** Delivery deadline of a send with its retries, ms. Default {@link DELIVERY_TIMEOUT_MS_DEFAULT}. */
  deliveryTimeoutMs?: number;
  /** Deadline of one Produce call (and acks=all wait), ms. Default {@link REQUEST_TIMEOUT_MS_DEFAULT}. */
  requestTimeoutMs?: number;
  /** Largest request and batch, bytes. Default {@link MAX_REQUEST_SIZE_BYTES_DEFAULT}. */
  maxRequestSizeBytes?: number;
  /** Chooses partitions; default: murmur2 for keys, round robin without. */
  partitioner?: Partitioner;
}

/** Options of one {@link Producer.send}. */
export interface SendOptions {
  /** Default: the producer's acks. */
  acks?: Acks;
  /** Default: the producer's delivery timeout, ms. */
  timeoutMs?: number;
}

/** The outcome of one record: where it was written, or why not. */
export type RecordOutcome = RecordMetadata | SamsaError;

/** The proto Acks value of Kafka's acks setting. */
export function toProtoAcks(acks: Acks): ProtoAcksValue {
  if (acks === 0) return ProtoAcks.ACKS_NONE;
  if (acks === 1) return ProtoAcks.ACKS_LEADER;
  return ProtoAcks.ACKS_ALL;
}

/** One partition's records still to write, cut into batches (built on first send). */
interface PartitionQueue {
  partition: number;
  chunks: { indices: number[]; bytes: number; batch?: Buffer }[];
}

/** Produces records to Samsa. Close it when done. */
export class Producer {
  private readonly cluster: Cluster;
  private readonly ownsCluster: boolean;
  private readonly acks: Acks;
  private readonly compression: CompressionType;
  private readonly deliveryTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly maxRequestSizeBytes: number;
  private readonly partitioner: Partitioner;
  private readonly accumulator: RecordAccumulator;

  constructor(options: ProducerOptions) {
    assert(
      options.cluster !== undefined || options.bootstrapServers !== undefined,
      "cluster or bootstrapServers",
    );
    this.ownsCluster = options.cluster === undefined;
    this.cluster = options.cluster ?? new Cluster({ bootstrapServers: options.bootstrapServers! });
    this.acks = options.acks ?? ACKS_DEFAULT;
    this.compression = options.compression ?? CompressionType.NONE;
    this.deliveryTimeoutMs = options.deliveryTimeoutMs ?? DELIVERY_TIMEOUT_MS_DEFAULT;
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.maxRequestSizeBytes = options.maxRequestSizeBytes ?? MAX_REQUEST_SIZE_BYTES_DEFAULT;
    this.partitioner = options.partitioner ?? new Partitioner();
    this.accumulator = new RecordAccumulator((topic, records) => this.produce(topic, records, {}), {
      ...options,
      maxRequestSizeBytes: this.maxRequestSizeBytes,
    });
  }

  /**
   * Sends `records` to `topic` and resolves with where each was written, in input order.
   * @throws SamsaError the first record's error when any record failed (non-retriable, or
   *   retriable past the deadline); records of other partitions may have been written.
   */
  async send(
    topic: string,
    records: readonly ProducerRecord[],
    options: SendOptions = {},
  ): Promise<RecordMetadata[]> {
    const outcomes = await this.produce(topic, records, options);
    const failed = outcomes.find((o): o is SamsaError => o instanceof SamsaError);
    if (failed !== undefined) throw failed;
    return outcomes as RecordMetadata[];
  }

  /**
   * Buffers one record for a batched send (after linger.ms, or once batch.size is reached).
   * Resolves once the record is buffered (waiting while buffer.memory is full); its `delivered`
   * promise then resolves with where it was written.
   */
  add(topic: string, record: ProducerRecord): Promise<Delivery> {
    return this.accumulator.add(topic, record);
  }

  /** Sends every buffered record now and waits for them; throws the first delivery error since the last flush. */
  flush(): Promise<void> {
    return this.accumulator.flush();
  }

  /** Flushes, then closes the connections (when the producer owns its cluster). */
  async close(): Promise<void> {
    try {
      await this.accumulator.close();
    } finally {
      if (this.ownsCluster) this.cluster.close();
    }
  }

  /** Sends records and gives each one's outcome; never throws for a record's error. */
  async produce(
    topic: string,
    records: readonly ProducerRecord[],
    options: SendOptions,
  ): Promise<RecordOutcome[]> {
    const deadline = new Deadline(options.timeoutMs ?? this.deliveryTimeoutMs);
    const acks = toProtoAcks(options.acks ?? this.acks);
    const now = Date.now();
    const normalized = records.map((r) => normalizeRecord(r, now));
    const outcomes: (RecordOutcome | undefined)[] = new Array(records.length);
    let metadata: TopicMetadata;
    try {
      metadata = await this.cluster.topic(topic, { timeoutMs: deadline.remainingMs() });
    } catch (err) {
      return outcomes.fill(asSamsaError(err)) as RecordOutcome[];
    }
    const queues = this.partitionQueues(topic, metadata, normalized, outcomes);
    for (let attempt = 0; queues.size > 0; ) {
      const failures = await this.round(
        topic,
        metadata,
        acks,
        deadline,
        normalized,
        queues,
        outcomes,
      );
      if (failures.length === 0) continue;
      // Retriable failures: refresh when needed, back off, then retry what is left.
      const last = failures[failures.length - 1]!;
      if (deadline.expired) {
        for (const q of queues.values())
          for (const c of q.chunks) for (const i of c.indices) outcomes[i] = last;
        break;
      }
      if (failures.some((e) => needsMetadataRefresh(e.code))) this.cluster.invalidate(topic);
      await sleep(backoffMs(attempt++), undefined, deadline);
      try {
        metadata = await this.cluster.topic(topic, {
          timeoutMs: Math.max(1, deadline.remainingMs()),
        });
      } catch {
        // Keep the old metadata; the next round fails retriably again or the deadline ends it.
      }
    }
    return outcomes as RecordOutcome[];
  }

  /** Chooses each record's partition and cuts each partition's records into batches. */
  private partitionQueues(
    topic: string,
    metadata: TopicMetadata,
    records: readonly NormalizedRecord[],
    outcomes: (RecordOutcome | undefined)[],
  ): Map<number, PartitionQueue> {
    const count = metadata.partitions.length;
    const queues = new Map<number, PartitionQueue>();
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (r.sizeBytes + BATCH_HEADER_BYTES > this.maxRequestSizeBytes) {
        outcomes[i] = new SamsaError(
          ErrorCode.MESSAGE_TOO_LARGE,
          `a record of ${r.sizeBytes} bytes exceeds max.request.size ${this.maxRequestSizeBytes}`,
        );
        continue;
      }
      const p = r.partition ?? this.partitioner.partition(topic, r.key, count);
      if (p >= count) {
        outcomes[i] = new SamsaError(
          ErrorCode.INVALID_REQUEST,
          `topic ${topic} has no partition ${p}`,
        );
        continue;
      }
      let q = queues.get(p);
      if (q === undefined) queues.set(p, (q = { partition: p, chunks: [] }));
      let chunk = q.chunks[q.chunks.length - 1];
      if (
        chunk === undefined ||
        chunk.bytes + r.sizeBytes + BATCH_HEADER_BYTES > this.maxRequestSizeBytes
      ) {
        q.chunks.push((chunk = { indices: [], bytes: 0 }));
      }
      chunk.indices.push(i);
      chunk.bytes += r.sizeBytes;
    }
    return queues;
  }

  /**
   * One round: the head batch of every partition, grouped per leader into requests of at most
   * max.request.size, sent in parallel. Written batches leave their queue; non-retriable errors
   * fail their records; retriable errors are returned (the batch stays queued).
   */
  private async round(
    topic: string,
    metadata: TopicMetadata,
    acks: ProtoAcksValue,
    deadline: Deadline,
    records: readonly NormalizedRecord[],
    queues: Map<number, PartitionQueue>,
    outcomes: (RecordOutcome | undefined)[],
  ): Promise<SamsaError[]> {
    const failures: SamsaError[] = [];
    const requests = new Map<string, { q: PartitionQueue; batch: Buffer }[]>();
    const requestBytes = new Map<string, number>();
    const settle = (q: PartitionQueue, outcome: SamsaError | number): void => {
      const chunk = q.chunks[0]!;
      if (outcome instanceof SamsaError && outcome.retriable) return void failures.push(outcome);
      chunk.indices.forEach((index, n) => {
        const r = records[index]!;
        outcomes[index] =
          outcome instanceof SamsaError
            ? outcome
            : {
                topic,
                partition: q.partition,
                offset: outcome < 0 ? -1 : outcome + n,
                timestamp: r.timestamp,
              };
      });
      q.chunks.shift();
      if (q.chunks.length === 0) queues.delete(q.partition);
    };
    for (const q of queues.values()) {
      const leader = this.cluster.leaderOf(metadata, q.partition);
      if (leader instanceof SamsaError) {
        settle(q, leader);
        continue;
      }
      const chunk = q.chunks[0]!;
      const bytes = requestBytes.get(leader.address) ?? 0;
      if (bytes > 0 && bytes + chunk.bytes > this.maxRequestSizeBytes) continue; // next round
      try {
        chunk.batch ??= buildBatch(
          chunk.indices.map((i) => records[i]!),
          { compression: this.compression },
        );
      } catch (err) {
        settle(q, asSamsaError(err));
        continue;
      }
      requestBytes.set(leader.address, bytes + chunk.bytes);
      const list = requests.get(leader.address) ?? [];
      list.push({ q, batch: chunk.batch });
      requests.set(leader.address, list);
    }
    await Promise.all(
      [...requests].map(async ([address, parts]) => {
        try {
          const response = await unary(
            this.cluster.client(address),
            "Produce",
            {
              partitions: parts.map((p) => ({ topic, partition: p.q.partition, records: p.batch })),
              acks,
              timeoutMs: deadline.requestMs(this.requestTimeoutMs),
            },
            { deadlineMs: deadline.requestMs(this.requestTimeoutMs) + PRODUCE_DEADLINE_MARGIN_MS },
          );
          for (const { q } of parts) {
            const result = response.partitions.find(
              (r) => r.topic === topic && r.partition === q.partition,
            );
            const code =
              result === undefined ? ErrorCode.UNKNOWN : fromProtoErrorCode(result.errorCode);
            if (code === ErrorCode.NONE) settle(q, Number(result!.baseOffset));
            else
              settle(
                q,
                new SamsaError(
                  code,
                  `${topic}-${q.partition}: ${result?.errorMessage || ErrorCode[code]}`,
                ),
              );
          }
        } catch (err) {
          // A call-level failure (e.g. the broker is unreachable) fails every partition in it.
          for (const { q } of parts) settle(q, asSamsaError(err));
        }
      }),
    );
    return failures;
  }
}

/** Extra gRPC deadline over a Produce's own `timeout_ms`, so the broker's answer can arrive, ms. */
export const PRODUCE_DEADLINE_MARGIN_MS = 1_000;

function asSamsaError(err: unknown): SamsaError {
  if (err instanceof SamsaError) return err;
  return new SamsaError(ErrorCode.UNKNOWN, err instanceof Error ? err.message : String(err), {
    cause: err,
  });
}

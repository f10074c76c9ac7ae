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
import { assert, SamsaError } from "../shared/errors.js";
import {
  Acks as ProtoAcks,
  type Acks__Output as ProtoAcksValue,
} from "../shared/generated/samsa/v1/Acks.js";
import { CompressionType } from "../shared/record-batch/index.js";
import { Cluster, type ClusterOptions } from "./metadata.js";
import { Partitioner } from "../shared/partitioner.js";
import { ProduceJob, type RecordOutcome } from "./produce-job.js";
import { type AccumulatorOptions, type Delivery, RecordAccumulator } from "./record-accumulator.js";
import type { ProducerRecord, RecordMetadata } from "./records.js";
import { REQUEST_TIMEOUT_MS_DEFAULT } from "../shared/retry.js";

export type { RecordOutcome } from "./produce-job.js";

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

/** The proto Acks value of Kafka's acks setting. */
export function toProtoAcks(acks: Acks): ProtoAcksValue {
  if (acks === 0) return ProtoAcks.ACKS_NONE;
  if (acks === 1) return ProtoAcks.ACKS_LEADER;
  return ProtoAcks.ACKS_ALL;
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
  produce(
    topic: string,
    records: readonly ProducerRecord[],
    options: SendOptions,
  ): Promise<RecordOutcome[]> {
    return new ProduceJob(this.cluster, this.partitioner, topic, records, {
      acks: toProtoAcks(options.acks ?? this.acks),
      compression: this.compression,
      deliveryTimeoutMs: options.timeoutMs ?? this.deliveryTimeoutMs,
      requestTimeoutMs: this.requestTimeoutMs,
      maxRequestSizeBytes: this.maxRequestSizeBytes,
    }).run();
  }
}

/**
 * The producer: sends records straight to partition leaders. `add` + `flush` batch records in
 * the background, Kafka's way: per partition batches encoded as records arrive (linger.ms,
 * batch.size, buffer.memory; record-accumulator.ts), sent by the sender (sender.ts) with up to
 * max.in.flight.requests.per.connection calls per broker (one per partition; up to 5 with
 * idempotence and `maxInFlightRequestsPerPartition`). `send` gives the records it is given their partitions (explicit,
 * by key, or round robin), and resolves when all are written or failed.
 *
 * The producer is idempotent by default (Kafka's `enable.idempotence=true`, its default since
 * 3.0; producer-state.ts, docs/idempotence.md): the producer gets a producer id with
 * InitProducerId, each batch carries its partition's next sequence numbers, and a retry after a
 * lost answer or a leader change is written once. `send` then goes the same way as `add`: its
 * records are added to the accumulator (no linger: their batches are sealed at once) and settle
 * when their batches do, given up at the send's timeout. Without idempotence (`idempotent:
 * false`, acks other than all), or for a `send` with acks other than the producer's, `send`
 * builds its own batches and retries them itself (produce-job.ts): a retry after a lost answer
 * may then write a batch twice, as with Kafka's `enable.idempotence=false`. Records of one
 * partition in one `send` keep their order.
 */
import { assert, ErrorCode, SamsaError } from "../shared/errors.js";
import {
  Acks as ProtoAcks,
  type Acks__Output as ProtoAcksValue,
} from "../shared/generated/samsa/v1/Acks.js";
import { CompressionType } from "../shared/record-batch/index.js";
import { Cluster, type ClusterOptions } from "./metadata.js";
import { Partitioner } from "../shared/partitioner.js";
import { ProduceJob, type RecordOutcome } from "./produce-job.js";
import { unary } from "../shared/grpc/client.js";
import {
  type AccumulatorOptions,
  type Delivery,
  type DeliveryCallback,
  RecordAccumulator,
} from "./record-accumulator.js";
import {
  MAX_IN_FLIGHT_BATCHES_PER_PARTITION,
  MAX_IN_FLIGHT_REQUESTS_PER_BROKER_DEFAULT,
  Sender,
} from "./sender.js";
import { IdempotentProducerState } from "./producer-state.js";
import { asSamsaError } from "./produce-job.js";
import { PRODUCE_DEADLINE_MARGIN_MS } from "./produce-job.js";
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
  /**
   * Chooses partitions. Default: murmur2 of the key; records without a key go round robin in
   * `send`, and stick to one partition per batch in `add` (Kafka's sticky partitioner).
   */
  partitioner?: Partitioner;
  /**
   * Produce calls of `add`'s batches in flight to one broker at most. Default
   * {@link MAX_IN_FLIGHT_REQUESTS_PER_BROKER_DEFAULT}.
   */
  maxInFlightRequestsPerBroker?: number;
  /**
   * Produce calls of one partition in flight at most, 1 to 5, with idempotence (the leader's
   * sequence check keeps the order); default `MAX_IN_FLIGHT_PER_PARTITION_DEFAULT` (sender.ts).
   * Without idempotence a partition has one call in flight, so its records keep their order.
   */
  maxInFlightRequestsPerPartition?: number;
  /**
   * `add`'s batches are idempotent: written once per partition whatever the retries (Kafka's
   * `enable.idempotence`). Default true with acks "all" (-1), false otherwise; true with other
   * acks is refused (INVALID_CONFIG), as Kafka refuses it.
   */
  idempotent?: boolean;
}

/** Deadline of one InitProducerId attempt, ms. */
export const INIT_PRODUCER_ID_TIMEOUT_MS = 5_000;

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
  private readonly sender: Sender;
  private readonly idempotence: IdempotentProducerState | undefined;

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
    const cluster = this.cluster;
    const acksAll = this.acks === "all" || this.acks === -1;
    if (options.idempotent === true && !acksAll) {
      throw new SamsaError(ErrorCode.INVALID_CONFIG, "an idempotent producer needs acks all");
    }
    this.idempotence =
      (options.idempotent ?? acksAll)
        ? new IdempotentProducerState(() => initProducerId(cluster, this.requestTimeoutMs))
        : undefined;
    const perPartition = options.maxInFlightRequestsPerPartition;
    if (
      perPartition !== undefined &&
      !(Number.isInteger(perPartition) && perPartition >= 1 && perPartition <= 5)
    ) {
      throw new SamsaError(ErrorCode.INVALID_CONFIG, "maxInFlightRequestsPerPartition is 1 to 5");
    }
    const custom = options.partitioner;
    this.accumulator = new RecordAccumulator(
      {
        partitionCount: (topic) => cluster.cached(topic)?.partitions.length,
        loadPartitionCount: async (topic, timeoutMs) =>
          (await cluster.topic(topic, { timeoutMs })).partitions.length,
      },
      {
        ...options,
        maxRequestSizeBytes: this.maxRequestSizeBytes,
        backlogBatches:
          this.idempotence === undefined ? undefined : MAX_IN_FLIGHT_BATCHES_PER_PARTITION,
      },
      custom === undefined ? undefined : (topic, key, n) => custom.partition(topic, key, n),
    );
    this.sender = new Sender(
      this.accumulator,
      {
        leader: (topic, partition) => {
          const metadata = cluster.cached(topic);
          if (metadata === undefined) {
            return new SamsaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `no metadata of ${topic}`);
          }
          return cluster.leaderOf(metadata, partition);
        },
        refresh: async (topic) => {
          cluster.invalidate(topic);
          try {
            await cluster.topic(topic, { timeoutMs: this.requestTimeoutMs });
          } catch {
            // The next attempt fails retriably again, or the delivery timeout ends it.
          }
        },
        produce: async (address, partitions, acks, timeoutMs) => {
          const response = await unary(
            cluster.client(address),
            "Produce",
            { partitions, acks, timeoutMs },
            { deadlineMs: timeoutMs + PRODUCE_DEADLINE_MARGIN_MS },
          );
          return response.partitions;
        },
      },
      {
        acks: toProtoAcks(this.acks),
        compression: this.compression,
        deliveryTimeoutMs: this.deliveryTimeoutMs,
        requestTimeoutMs: this.requestTimeoutMs,
        maxRequestSizeBytes: this.maxRequestSizeBytes,
        maxInFlightPerBroker:
          options.maxInFlightRequestsPerBroker ?? MAX_IN_FLIGHT_REQUESTS_PER_BROKER_DEFAULT,
        idempotence: this.idempotence,
        maxInFlightPerPartition: options.maxInFlightRequestsPerPartition,
      },
    );
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
   * promise then resolves with where it was written. `callback` (Kafka's `send(record,
   * callback)`) hears the same outcome without a promise per record: the cheaper way for a
   * producer that tracks every record (see docs/performance.md).
   */
  add(topic: string, record: ProducerRecord, callback?: DeliveryCallback): Promise<Delivery> {
    return this.accumulator.add(topic, record, callback);
  }

  /** The idempotent producer id, -1 before InitProducerId answered or without idempotence. */
  get producerId(): bigint {
    return this.idempotence?.producerId ?? -1n;
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
      this.sender.close();
      if (this.ownsCluster) this.cluster.close();
    }
  }

  /** Sends records and gives each one's outcome; never throws for a record's error. */
  produce(
    topic: string,
    records: readonly ProducerRecord[],
    options: SendOptions,
  ): Promise<RecordOutcome[]> {
    const acks = toProtoAcks(options.acks ?? this.acks);
    if (this.idempotence !== undefined && acks === toProtoAcks(this.acks)) {
      return this.produceBuffered(topic, records, options.timeoutMs ?? this.deliveryTimeoutMs);
    }
    return new ProduceJob(this.cluster, this.partitioner, topic, records, {
      acks: toProtoAcks(options.acks ?? this.acks),
      compression: this.compression,
      deliveryTimeoutMs: options.timeoutMs ?? this.deliveryTimeoutMs,
      requestTimeoutMs: this.requestTimeoutMs,
      maxRequestSizeBytes: this.maxRequestSizeBytes,
    }).run();
  }

  private produceBuffered(
    topic: string,
    records: readonly ProducerRecord[],
    timeoutMs: number,
  ): Promise<RecordOutcome[]> {
    return produceBuffered(
      this.cluster,
      this.partitioner,
      this.accumulator,
      topic,
      records,
      timeoutMs,
    );
  }
}

/**
 * `send` of an idempotent producer: the records go through the accumulator and the sender (the
 * one idempotent way out), their batches sealed at once, given up at `timeoutMs` from now.
 */
async function produceBuffered(
  this: void,
  cluster: Cluster,
  partitioner: Partitioner,
  accumulator: RecordAccumulator,
  topic: string,
  records: readonly ProducerRecord[],
  timeoutMs: number,
): Promise<RecordOutcome[]> {
  const deadlineMs = Date.now() + timeoutMs;
  const outcomes = new Array<RecordOutcome | undefined>(records.length);
  let partitionCount: number;
  try {
    partitionCount = (await cluster.topic(topic, { timeoutMs })).partitions.length;
  } catch (err) {
    return outcomes.fill(asSamsaError(err)) as RecordOutcome[];
  }
  const timestamp = Date.now();
  let left = records.length;
  let allSettled!: () => void;
  const settled = new Promise<void>((resolve) => {
    allSettled = resolve;
  });
  const settle = (i: number, outcome: RecordOutcome) => {
    if (outcomes[i] !== undefined) return;
    outcomes[i] = outcome;
    if (--left === 0) allSettled();
  };
  const touched = new Set<number>();
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    let partition = r.partition;
    try {
      partition ??= partitioner.partition(topic, r.key, partitionCount);
      // The send's records take batches of their own (their deadline), as far as they can.
      if (!touched.has(partition) && partition < partitionCount) {
        accumulator.sealOpen(topic, partition);
        touched.add(partition);
      }
      await accumulator.add(
        topic,
        { ...r, partition, timestamp: r.timestamp ?? timestamp },
        (err, metadata) => settle(i, err ?? metadata!),
        deadlineMs,
      );
    } catch (err) {
      settle(i, asSamsaError(err));
    }
  }
  // No linger: what this send buffered goes at once.
  for (const p of touched) accumulator.sealOpen(topic, p);
  if (left > 0) await settled;
  return outcomes as RecordOutcome[];
}

/** InitProducerId on the first broker that answers. */
async function initProducerId(cluster: Cluster, requestTimeoutMs: number): Promise<bigint> {
  let last: SamsaError = new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "no broker known");
  for (const address of cluster.brokerAddresses()) {
    try {
      const res = await unary(
        cluster.client(address),
        "InitProducerId",
        {},
        {
          deadlineMs: Math.min(requestTimeoutMs, INIT_PRODUCER_ID_TIMEOUT_MS),
        },
      );
      return BigInt(res.producerId);
    } catch (err) {
      last = asSamsaError(err);
      if (!last.retriable) throw last;
    }
  }
  throw last;
}

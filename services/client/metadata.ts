/**
 * What a direct client knows of the cluster: brokers, topics, partitions and their leaders, from
 * `BrokerService.Metadata` on any broker (bootstrap addresses first, then the brokers it
 * learned). Answers are cached per topic and refreshed when they age past `metadata.max.age.ms`,
 * or at once after an error that means "your metadata is stale" ({@link needsMetadataRefresh}:
 * NOT_LEADER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE (also what a connection failure
 * maps to), fenced or unknown leader epochs, storage errors). {@link Cluster} also owns the pool
 * of broker channels the producer and consumer call through.
 */
import { ErrorCode, isSamsaError, SamsaError } from "../shared/errors.js";
import type { BrokerInfo__Output } from "../shared/generated/samsa/v1/BrokerInfo.js";
import type { MetadataResponse__Output } from "../shared/generated/samsa/v1/MetadataResponse.js";
import type { PartitionInfo__Output } from "../shared/generated/samsa/v1/PartitionInfo.js";
import type { ClientOptions } from "../shared/grpc/client.js";
import { unary } from "../shared/grpc/client.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import { type BrokerServiceClient, brokerService } from "../shared/grpc/proto.js";
import { formatAddress, parseAddressList } from "../shared/grpc/addresses.js";
import { ConnectionPool } from "../shared/grpc/connection-pool.js";
import {
  API_TIMEOUT_MS_DEFAULT,
  backoffMs,
  Deadline,
  REQUEST_TIMEOUT_MS_DEFAULT,
  sleep,
} from "../shared/retry.js";

/** Longest a topic's metadata is used before it is fetched again, ms (Kafka's `metadata.max.age.ms`). */
export const METADATA_MAX_AGE_MS_DEFAULT = 300_000;
/**
 * Longest one Metadata call to one broker may take before the next broker is asked, ms. The
 * answer comes from the broker's memory: a broker that takes longer is hung (e.g. SIGSTOPped) or
 * cut off, and a client must not wait its whole request timeout on it.
 */
export const METADATA_ATTEMPT_TIMEOUT_MS = 3_000;
/** Most topics whose metadata is cached; the least recently fetched is dropped past it. */
export const METADATA_TOPICS_CACHED_MAX = 10_000;
/** The leader id of a partition without a leader. */
export const NO_LEADER_ID = -1;

/** Error codes after which a client refreshes its metadata before retrying. */
export const METADATA_REFRESH_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.NOT_LEADER,
  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
  ErrorCode.LEADER_NOT_AVAILABLE,
  ErrorCode.FENCED_LEADER_EPOCH,
  ErrorCode.UNKNOWN_LEADER_EPOCH,
  ErrorCode.KAFKA_STORAGE_ERROR,
]);

/** True when `code` means the client's metadata is stale (see {@link METADATA_REFRESH_CODES}). */
export function needsMetadataRefresh(code: ErrorCode): boolean {
  return METADATA_REFRESH_CODES.has(code);
}

/** A live broker as Metadata describes it. */
export interface BrokerNode {
  readonly id: number;
  readonly host: string;
  readonly port: number;
  readonly rack: string;
  /** `host:port` to dial. */
  readonly address: string;
}

/** One partition of a topic. */
export interface PartitionMetadata {
  readonly partition: number;
  /** NONE, or e.g. LEADER_NOT_AVAILABLE. */
  readonly error: ErrorCode;
  /** {@link NO_LEADER_ID} when the partition has no leader. */
  readonly leaderId: number;
  readonly leaderEpoch: number;
  readonly replicas: readonly number[];
  readonly isr: readonly number[];
  readonly offlineReplicas: readonly number[];
}

/** One topic; `partitions` is indexed by partition number. */
export interface TopicMetadata {
  readonly name: string;
  readonly topicId: string;
  /** NONE, or e.g. UNKNOWN_TOPIC_OR_PARTITION when the topic does not exist (yet). */
  readonly error: ErrorCode;
  readonly partitions: readonly PartitionMetadata[];
  /** When this was fetched, ms since the epoch. */
  readonly fetchedAtMs: number;
}

/** Where to send a partition's requests. */
export interface LeaderInfo {
  readonly brokerId: number;
  readonly address: string;
  readonly leaderEpoch: number;
}

/** Options of {@link Cluster}. */
export interface ClusterOptions {
  /** Bootstrap brokers, `host:port` each (or comma-separated lists). Required. */
  bootstrapServers: string | readonly string[];
  /** Metadata age limit, ms. Default {@link METADATA_MAX_AGE_MS_DEFAULT}. */
  metadataMaxAgeMs?: number;
  /** Deadline of one Metadata call, ms. Default {@link REQUEST_TIMEOUT_MS_DEFAULT}. */
  requestTimeoutMs?: number;
  /** Channel options of every broker client. */
  clientOptions?: ClientOptions;
}

/** Options of a metadata wait ({@link Cluster.topic}). */
export interface WaitOptions {
  /** Give up after this, ms. Default {@link API_TIMEOUT_MS_DEFAULT}. */
  timeoutMs?: number;
  /** Stops waiting; the wait then rejects with the last error. */
  signal?: AbortSignal;
}

interface CachedTopic extends TopicMetadata {
  stale: boolean;
}

/** The cluster as seen by a client: cached metadata plus one channel per broker. */
export class Cluster {
  /** One BrokerService client per broker address. */
  readonly pool: ConnectionPool<BrokerServiceClient>;
  private readonly bootstrap: readonly string[];
  private readonly maxAgeMs: number;
  private readonly requestTimeoutMs: number;
  private brokersById = new Map<number, BrokerNode>();
  private readonly topics = new Map<string, CachedTopic>();
  private lastGoodAddress: string | undefined;
  private inflight: { topics: ReadonlySet<string>; promise: Promise<void> } | undefined;
  private clusterIdValue = "";

  constructor(options: ClusterOptions) {
    this.bootstrap = parseAddressList(options.bootstrapServers);
    this.maxAgeMs = options.metadataMaxAgeMs ?? METADATA_MAX_AGE_MS_DEFAULT;
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.pool = new ConnectionPool(brokerService.Client, options.clientOptions);
  }

  /** The cluster id of the last Metadata answer ("" before the first). */
  get clusterId(): string {
    return this.clusterIdValue;
  }

  /** The live brokers of the last Metadata answer. */
  get brokers(): readonly BrokerNode[] {
    return [...this.brokersById.values()];
  }

  /** Addresses to try, in order, for a call any broker answers (InitProducerId). */
  brokerAddresses(): string[] {
    return this.candidates();
  }

  /** The BrokerService client of `address`. */
  client(address: string): BrokerServiceClient {
    return this.pool.get(address);
  }

  /** Marks `topic`'s metadata (every topic's, without an argument) stale: the next use refreshes. */
  invalidate(topic?: string): void {
    if (topic === undefined) for (const t of this.topics.values()) t.stale = true;
    else {
      const cached = this.topics.get(topic);
      if (cached !== undefined) cached.stale = true;
    }
  }

  /**
   * The metadata of `topic`, from the cache when fresh, else fetched. Retriable failures (no
   * broker reachable, topic not known yet) are retried with backoff until the timeout; then the
   * last error is thrown.
   * @throws SamsaError UNKNOWN_TOPIC_OR_PARTITION when the topic does not exist by the deadline,
   *   INVALID_TOPIC, or the error of the last Metadata call.
   */
  async topic(topic: string, options: WaitOptions = {}): Promise<TopicMetadata> {
    const timeoutMs = options.timeoutMs ?? API_TIMEOUT_MS_DEFAULT;
    const deadline = new Deadline(timeoutMs);
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      const cached = this.topics.get(topic);
      if (cached !== undefined && cached.error === ErrorCode.NONE && !this.isStale(cached)) {
        return cached;
      }
      try {
        await this.refresh([topic], deadline);
        const fetched = this.topics.get(topic);
        if (fetched !== undefined && fetched.error === ErrorCode.NONE) return fetched;
        last = topicError(topic, fetched?.error ?? ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
      } catch (err) {
        // A call cut short by this wait's own deadline says less than the answer before it
        // (e.g. "topic t does not exist"), which is then kept.
        const cutShort = isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT) && deadline.expired;
        if (!cutShort || last === undefined) last = err;
      }
      if (!(last instanceof SamsaError) || !last.retriable) throw last;
      if (deadline.expired || options.signal?.aborted) throw last;
      await sleep(backoffMs(attempt), options.signal, deadline);
      if (deadline.expired || options.signal?.aborted) throw last;
    }
  }

  /**
   * The cached metadata of `topic` when it is known (even if due for a refresh), without waiting:
   * the producer's hot path. Undefined when never fetched or last seen with an error.
   */
  cached(topic: string): TopicMetadata | undefined {
    const t = this.topics.get(topic);
    return t !== undefined && t.error === ErrorCode.NONE ? t : undefined;
  }

  /** Whether `topic`'s metadata is missing, marked stale or older than the age limit. */
  needsRefresh(topic: string): boolean {
    const t = this.topics.get(topic);
    return t === undefined || t.error !== ErrorCode.NONE || this.isStale(t);
  }

  /**
   * The leader of `partition` in `metadata`, or a retriable SamsaError (LEADER_NOT_AVAILABLE)
   * when it has none or the leader is not among the live brokers; INVALID_REQUEST when the
   * topic has no such partition.
   */
  leaderOf(metadata: TopicMetadata, partition: number): LeaderInfo | SamsaError {
    const p = metadata.partitions[partition];
    if (p === undefined) {
      return new SamsaError(
        ErrorCode.INVALID_REQUEST,
        `topic ${metadata.name} has no partition ${partition} (it has ${metadata.partitions.length})`,
      );
    }
    const broker = this.brokersById.get(p.leaderId);
    if (p.leaderId === NO_LEADER_ID || broker === undefined) {
      return new SamsaError(
        ErrorCode.LEADER_NOT_AVAILABLE,
        `${metadata.name}-${partition} has no live leader`,
      );
    }
    return { brokerId: broker.id, address: broker.address, leaderEpoch: p.leaderEpoch };
  }

  /**
   * Fetches metadata of `topics` plus every cached topic in one call (calls for the same topics
   * already in flight are shared). Tries the last broker that answered, then the bootstrap
   * addresses, then the known brokers; a retriable failure moves on to the next one.
   * @throws SamsaError of the last failed call when none answered.
   */
  refresh(topics: readonly string[], deadline?: Deadline): Promise<void> {
    const wanted = new Set([...this.topics.keys(), ...topics]);
    const current = this.inflight;
    if (current !== undefined && [...wanted].every((t) => current.topics.has(t))) {
      return current.promise;
    }
    const promise = this.fetchMetadata([...wanted], deadline).finally(() => {
      if (this.inflight?.promise === promise) this.inflight = undefined;
    });
    this.inflight = { topics: wanted, promise };
    return promise;
  }

  /** Closes every broker channel. */
  close(): void {
    this.pool.close();
  }

  private isStale(t: CachedTopic): boolean {
    return t.stale || Date.now() - t.fetchedAtMs > this.maxAgeMs;
  }

  private candidates(): string[] {
    const all = [
      ...(this.lastGoodAddress === undefined ? [] : [this.lastGoodAddress]),
      ...this.bootstrap,
      ...[...this.brokersById.values()].map((b) => b.address),
    ];
    return [...new Set(all)];
  }

  private async fetchMetadata(topics: string[], deadline?: Deadline): Promise<void> {
    let last: unknown;
    for (const address of this.candidates()) {
      const attemptMs = Math.min(this.requestTimeoutMs, METADATA_ATTEMPT_TIMEOUT_MS);
      const deadlineMs = deadline?.requestMs(attemptMs) ?? attemptMs;
      try {
        const response = await unary(
          this.pool.get(address),
          "Metadata",
          { topics },
          { deadlineMs },
        );
        this.lastGoodAddress = address;
        this.apply(response, topics);
        return;
      } catch (err) {
        last = err;
        if (!(err instanceof SamsaError) || !err.retriable) throw err;
        if (this.lastGoodAddress === address) this.lastGoodAddress = undefined;
        if (deadline?.expired) break;
      }
    }
    throw last;
  }

  private apply(response: MetadataResponse__Output, requested: readonly string[]): void {
    const now = Date.now();
    this.clusterIdValue = response.clusterId;
    if (response.brokers.length > 0) {
      this.brokersById = new Map(response.brokers.map((b) => [b.id, toBrokerNode(b)]));
    }
    const wanted = new Set(requested);
    for (const t of response.topics) {
      // Asking for no topic means all of them; only what was asked for is cached.
      if (!wanted.has(t.name)) continue;
      const partitions: PartitionMetadata[] = [];
      for (const p of t.partitions) partitions[p.partition] = toPartitionMetadata(p);
      this.topics.delete(t.name);
      this.topics.set(t.name, {
        name: t.name,
        topicId: t.topicId,
        error: fromProtoErrorCode(t.errorCode),
        partitions: Array.from(partitions, (p, i) => p ?? missingPartition(i)),
        fetchedAtMs: now,
        stale: false,
      });
    }
    while (this.topics.size > METADATA_TOPICS_CACHED_MAX) {
      this.topics.delete(this.topics.keys().next().value as string);
    }
  }
}

/** A partition as the wire describes it, with its error code as an {@link ErrorCode}. */
export function toPartitionMetadata(p: PartitionInfo__Output): PartitionMetadata {
  return {
    partition: p.partition,
    error: fromProtoErrorCode(p.errorCode),
    leaderId: p.leaderId,
    leaderEpoch: p.leaderEpoch,
    replicas: p.replicas,
    isr: p.isr,
    offlineReplicas: p.offlineReplicas,
  };
}

/** A broker as the wire describes it, with its dialable address. */
export function toBrokerNode(b: BrokerInfo__Output): BrokerNode {
  return {
    id: b.id,
    host: b.host,
    port: b.port,
    rack: b.rack,
    address: formatAddress(b.host, b.port),
  };
}

/** A partition number the answer skipped: treated as leaderless until the next refresh. */
function missingPartition(partition: number): PartitionMetadata {
  return {
    partition,
    error: ErrorCode.LEADER_NOT_AVAILABLE,
    leaderId: NO_LEADER_ID,
    leaderEpoch: -1,
    replicas: [],
    isr: [],
    offlineReplicas: [],
  };
}

function topicError(topic: string, code: ErrorCode): SamsaError {
  const reason =
    code === ErrorCode.UNKNOWN_TOPIC_OR_PARTITION ? "does not exist" : "is not available";
  return new SamsaError(code, `topic ${topic} ${reason}`);
}

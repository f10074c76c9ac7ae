/**
 * A process's view of the cluster: live brokers, topics and partition states, mirrored from etcd
 * by four watched prefix caches (brokers, topics, partitions, controller candidates). Brokers,
 * gateways and controllers all read metadata through this one class; only the controller (and
 * partition leaders, for the ISR) write it.
 */
import type { Etcd3 } from "etcd3";
import {
  type BrokerRegistration,
  type ControllerInfo,
  decodeBrokerRegistration,
  decodeControllerInfo,
  decodePartitionState,
  decodeTopicRecord,
  type EtcdKeys,
  type PartitionState,
  type TopicRecord,
} from "../etcd/keys.js";
import { type CacheEvent, PrefixCache } from "../etcd/prefix-cache.js";
import type { Logger } from "../logger.js";

/** What changed, for listeners that react to metadata (partition hosting, routing). */
export type MetadataChange =
  | { kind: "broker"; event: CacheEvent<BrokerRegistration> }
  | { kind: "topic"; event: CacheEvent<TopicRecord> }
  | { kind: "partition"; topic: string; partition: number; event: CacheEvent<PartitionState> };

/** A partition's state together with its identity. */
export interface PartitionView {
  topic: string;
  partition: number;
  state: PartitionState;
}

export class ClusterMetadata {
  private readonly brokerCache: PrefixCache<BrokerRegistration>;
  private readonly topicCache: PrefixCache<TopicRecord>;
  private readonly partitionCache: PrefixCache<PartitionState>;
  private readonly controllerCache: PrefixCache<ControllerInfo>;
  private readonly listeners = new Set<(change: MetadataChange) => void>();

  constructor(
    client: Etcd3,
    private readonly keys: EtcdKeys,
    logger: Logger,
  ) {
    this.brokerCache = new PrefixCache({
      client,
      prefix: keys.brokersPrefix(),
      decode: decodeBrokerRegistration,
      logger,
    });
    this.topicCache = new PrefixCache({
      client,
      prefix: keys.topicsPrefix(),
      decode: decodeTopicRecord,
      logger,
    });
    this.partitionCache = new PrefixCache({
      client,
      prefix: keys.partitionsPrefix(),
      decode: decodePartitionState,
      logger,
    });
    this.controllerCache = new PrefixCache({
      client,
      prefix: keys.controllerPrefix(),
      decode: decodeControllerInfo,
      logger,
    });
    this.brokerCache.onChange((event) => this.emit({ kind: "broker", event }));
    this.topicCache.onChange((event) => this.emit({ kind: "topic", event }));
    this.partitionCache.onChange((event) => {
      const id = this.parsePartitionKey(event.key);
      if (id) this.emit({ kind: "partition", topic: id[0], partition: id[1], event });
    });
  }

  /** Lists and starts watching all three prefixes; resolves once each has its first list. */
  async start(): Promise<void> {
    await Promise.all([
      this.brokerCache.start(),
      this.topicCache.start(),
      this.partitionCache.start(),
      this.controllerCache.start(),
    ]);
  }

  /** Stops watching. */
  async close(): Promise<void> {
    await Promise.all([
      this.brokerCache.close(),
      this.topicCache.close(),
      this.partitionCache.close(),
      this.controllerCache.close(),
    ]);
  }

  /** Calls `listener` on every change; returns an unsubscribe function. */
  onChange(listener: (change: MetadataChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` after any cache re-listed (a compaction or a lost watch). */
  onResync(listener: () => void): void {
    this.brokerCache.onResync(listener);
    this.topicCache.onResync(listener);
    this.partitionCache.onResync(listener);
  }

  private emit(change: MetadataChange): void {
    for (const l of this.listeners) l(change);
  }

  private parsePartitionKey(key: string): [string, number] | undefined {
    const rest = key.slice(this.keys.partitionsPrefix().length);
    const slash = rest.lastIndexOf("/");
    if (slash < 0) return undefined;
    const partition = Number(rest.slice(slash + 1));
    if (!Number.isSafeInteger(partition)) return undefined;
    return [decodeURIComponent(rest.slice(0, slash)), partition];
  }

  /** The active controller: the candidate with the oldest election key (smallest epoch). */
  activeController(): ControllerInfo | undefined {
    let oldest: ControllerInfo | undefined;
    for (const [, info] of this.controllerCache.entries()) {
      if (!oldest || info.epoch < oldest.epoch) oldest = info;
    }
    return oldest;
  }

  /** Live brokers, by id. */
  brokers(): BrokerRegistration[] {
    return [...this.brokerCache.entries()].map(([, b]) => b).sort((a, b) => a.id - b.id);
  }

  /** A live broker, if registered. */
  broker(id: number): BrokerRegistration | undefined {
    return this.brokerCache.get(this.keys.broker(id));
  }

  /** All topics, by name. */
  topics(): TopicRecord[] {
    return [...this.topicCache.entries()]
      .map(([, t]) => t)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** A topic, if it exists. */
  topic(name: string): TopicRecord | undefined {
    return this.topicCache.get(this.keys.topic(name));
  }

  /** A partition's state, if known. */
  partition(topic: string, partition: number): PartitionState | undefined {
    return this.partitionCache.get(this.keys.partition(topic, partition));
  }

  /** All partitions with their states (of one topic, or all). */
  partitions(topic?: string): PartitionView[] {
    const out: PartitionView[] = [];
    for (const [key, state] of this.partitionCache.entries()) {
      const id = this.parsePartitionKey(key);
      if (!id || (topic !== undefined && id[0] !== topic)) continue;
      out.push({ topic: id[0], partition: id[1], state });
    }
    return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  }
}

/**
 * Which partitions this broker hosts, and in which role. It follows the partition states in etcd:
 * a partition whose replicas include this broker gets its log opened (with its topic's configs)
 * and becomes leader or follower as the state says; a partition reassigned away or whose topic is
 * deleted is closed and its data removed. Changes are applied one partition at a time, in order.
 * A follower partition is handed to the replica fetcher of its leader (fetcher-manager.ts); led
 * partitions are checked every half `replica.lag.time.max.ms` for followers to drop from the ISR.
 */
import { type LogConfig, topicConfigOf, topicLogConfig } from "../shared/config/index.js";
import type { Etcd3 } from "etcd3";
import {
  type EtcdKeys,
  noLeader,
  type PartitionState,
  type TopicRecord,
} from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import type { LogManager } from "./log/log-manager.js";
import { Partition, type PartitionEvents } from "./partition.js";
import type { FetcherSettings } from "./replication/fetcher.js";
import { FetcherManager } from "./replication/fetcher-manager.js";
import { updateIsr } from "./replication/isr-updater.js";

function key(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

/** What the replica manager needs from the broker. */
export interface ReplicaManagerOptions {
  brokerId: number;
  logManager: LogManager;
  metadata: ClusterMetadata;
  /** The broker's log defaults (log.* settings), under each topic's overrides. */
  baseLogConfig: LogConfig;
  logger: Logger;
  /** etcd, for the leader's ISR writes. */
  etcd: Etcd3;
  keys: EtcdKeys;
  /** This broker's current broker epoch (its registration's; -1 before it registered). */
  brokerEpoch: () => number;
  /** The broker's `min.insync.replicas`, under each topic's own. */
  minInsyncReplicas: number;
  /** `replica.lag.time.max.ms`. */
  replicaLagTimeMsMax: number;
  /** `replica.fetch.*`. */
  fetcher: FetcherSettings;
  /** Replication events, for metrics. */
  events?: PartitionEvents;
  /** Called with the bytes of each replica fetch answer. */
  onReplicaFetched?: (bytes: number) => void;
  /** Called after a partition is opened, changes role, or is removed. */
  onPartitionsChanged?: () => void;
}

export class ReplicaManager {
  private readonly partitions = new Map<string, Partition>();
  private readonly topicIds = new Map<string, string>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly logger: Logger;
  private readonly fetchers: FetcherManager;
  private unsubscribe: (() => void) | undefined;
  private shrinkTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: ReplicaManagerOptions) {
    this.logger = options.logger.child({ component: "replica-manager" });
    this.fetchers = new FetcherManager({
      brokerId: options.brokerId,
      brokerEpoch: options.brokerEpoch,
      metadata: options.metadata,
      settings: options.fetcher,
      logger: options.logger,
      onFetched: options.onReplicaFetched,
    });
  }

  /** Applies the current metadata and follows its changes. Call after metadata.start(). */
  async start(): Promise<void> {
    const { metadata, logManager } = this.options;
    this.unsubscribe = metadata.onChange((change) => {
      if (change.kind === "partition") this.schedule(change.topic, change.partition);
      if (change.kind === "topic") this.scheduleTopic(change.event.key);
      // A leader that registered again (restart, new address) is fetched from anew.
      if (change.kind === "broker") this.scheduleFollowersOf(change.event.key);
    });
    const shrinkCheckMs = Math.max(1, Math.floor(this.options.replicaLagTimeMsMax / 2));
    this.shrinkTimer = setInterval(() => {
      const now = Date.now();
      for (const p of this.partitions.values()) p.maybeShrinkIsr(now);
    }, shrinkCheckMs);
    this.shrinkTimer.unref();
    metadata.onResync(() => this.reconcileAll());
    // Logs on disk whose partition no longer exists (deleted while this broker was down).
    for (const log of logManager.allLogs()) this.schedule(log.topic, log.partition);
    this.reconcileAll();
    await Promise.all([...this.chains.values()]);
  }

  /** A topic appeared, changed or went: revisit its partitions in etcd and those hosted here. */
  private scheduleTopic(topicKey: string): void {
    const name = decodeURIComponent(topicKey.slice(topicKey.lastIndexOf("/") + 1));
    for (const p of this.options.metadata.partitions(name)) this.schedule(name, p.partition);
    for (const p of this.partitions.values())
      if (p.topic === name) this.schedule(name, p.partition);
  }

  private scheduleFollowersOf(brokerKey: string): void {
    const id = Number(brokerKey.slice(brokerKey.lastIndexOf("/") + 1));
    for (const p of this.partitions.values()) {
      const state = this.options.metadata.partition(p.topic, p.partition);
      if (state?.leader === id && !p.isLeader) this.schedule(p.topic, p.partition);
    }
  }

  private reconcileAll(): void {
    for (const p of this.options.metadata.partitions()) this.schedule(p.topic, p.partition);
    for (const p of this.partitions.values()) this.schedule(p.topic, p.partition);
  }

  /** Queues a reconcile of one partition behind any in flight for it. */
  private schedule(topic: string, partition: number): void {
    if (this.stopped) return;
    const k = key(topic, partition);
    const prev = this.chains.get(k) ?? Promise.resolve();
    const next = prev
      .then(() => this.reconcile(topic, partition))
      .catch((err) =>
        this.logger.error("partition reconcile failed", {
          topic,
          partition,
          error: (err as Error).message,
        }),
      )
      .finally(() => {
        if (this.chains.get(k) === next) this.chains.delete(k);
      });
    this.chains.set(k, next);
  }

  private async reconcile(topic: string, partition: number): Promise<void> {
    if (this.stopped) return;
    const { metadata, brokerId } = this.options;
    const record = metadata.topic(topic);
    const state = metadata.partition(topic, partition);
    const k = key(topic, partition);
    const hosted = this.partitions.get(k);
    const recreated =
      hosted !== undefined && record !== undefined && this.topicIds.get(k) !== record.id;
    const assigned = record !== undefined && state?.replicas.includes(brokerId) === true;
    if (!assigned || recreated) {
      if (hosted || this.options.logManager.getLog(topic, partition)) {
        await this.remove(topic, partition, record ? "reassigned or recreated" : "topic deleted");
      }
      if (!assigned) return;
    }
    // An offline log dir: neither leader nor follower here until the broker restarts.
    if (this.options.logManager.isOffline(topic, partition)) {
      this.fetchers.unfollow(topic, partition);
      return;
    }
    const p = this.partitions.get(k) ?? (await this.open(record!, partition));
    await this.applyState(p, state!);
  }

  private async open(record: TopicRecord, partition: number): Promise<Partition> {
    // Only log settings shape the log; others (min.insync.replicas, ...) are read elsewhere.
    const config = topicLogConfig(this.options.baseLogConfig, topicConfigOf(record));
    const log = await this.options.logManager.getOrCreateLog(record.name, partition, config);
    const { brokerId, etcd, keys } = this.options;
    const name = record.name;
    const p = new Partition(name, partition, log, {
      brokerId,
      minInsyncReplicas: () => {
        const current = this.options.metadata.topic(name);
        const own = current && topicConfigOf(current).minInsyncReplicas;
        return own ?? this.options.minInsyncReplicas;
      },
      replicaLagTimeMsMax: this.options.replicaLagTimeMsMax,
      writeIsr: (change) => updateIsr(etcd, keys, change),
      logger: this.logger,
      events: this.options.events,
    });
    this.partitions.set(key(record.name, partition), p);
    this.topicIds.set(key(record.name, partition), record.id);
    this.logger.info("hosting partition", {
      topic: record.name,
      partition,
      logEndOffset: log.logEndOffset,
    });
    return p;
  }

  /** Applies a state: the role, then the fetcher (followers fetch from a live leader). */
  private async applyState(p: Partition, state: PartitionState): Promise<void> {
    const { brokerId } = this.options;
    const wasLeader = p.isLeader;
    const oldEpoch = p.leaderEpoch;
    // Fetching stops before a leadership starts, so no old leader's answer lands after it.
    if (state.leader === brokerId || state.leader === noLeader) {
      this.fetchers.unfollow(p.topic, p.partition);
    }
    const role = await p.applyState(state);
    if (role === "follower" && state.leader !== noLeader) this.fetchers.follow(p, state.leader);
    if (wasLeader !== p.isLeader || oldEpoch !== p.leaderEpoch) {
      this.logger.info(p.isLeader ? "became leader" : "became follower", {
        topic: p.topic,
        partition: p.partition,
        leaderEpoch: state.leaderEpoch,
        leader: state.leader,
        isr: state.isr,
      });
      this.options.onPartitionsChanged?.();
    }
  }

  private async remove(topic: string, partition: number, reason: string): Promise<void> {
    const k = key(topic, partition);
    const p = this.partitions.get(k);
    this.partitions.delete(k);
    this.topicIds.delete(k);
    this.fetchers.unfollow(topic, partition);
    p?.close();
    await this.options.logManager.deleteLog(topic, partition);
    this.logger.info("removed partition", { topic, partition, reason });
    this.options.onPartitionsChanged?.();
  }

  /**
   * The hosted partition, or UNKNOWN_TOPIC_OR_PARTITION / NOT_LEADER as the metadata says. With
   * the caller's `currentLeaderEpoch` (-1: none), the epoch is checked before the leadership, as
   * Kafka does: a caller that already knows a newer epoch than this broker gets
   * UNKNOWN_LEADER_EPOCH (this broker is about to take it: retry soon), not NOT_LEADER.
   */
  partitionFor(
    topic: string,
    partition: number,
    requireLeader: boolean,
    currentLeaderEpoch = -1,
  ): Partition {
    const p = this.partitions.get(key(topic, partition));
    if (!p) {
      const state = this.options.metadata.partition(topic, partition);
      if (!state) {
        throw new SamsaError(
          ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
          `unknown topic-partition ${topic}-${partition}`,
        );
      }
      throw new SamsaError(
        ErrorCode.NOT_LEADER,
        `broker ${this.options.brokerId} does not host ${topic}-${partition}`,
      );
    }
    p.checkEpoch(currentLeaderEpoch);
    if (requireLeader) p.requireLeader();
    return p;
  }

  /**
   * Partitions whose log dir went offline: they stop fetching and step down (a waiting acks=all
   * produce is answered NOT_LEADER, so that the producer looks for the new leader). They stay
   * hosted, so requests for them get NOT_LEADER or the log's KAFKA_STORAGE_ERROR, and are left
   * alone by later metadata changes until the broker restarts.
   */
  takeOffline(partitions: ReadonlyArray<{ topic: string; partition: number }>): void {
    for (const { topic, partition } of partitions) {
      this.fetchers.unfollow(topic, partition);
      this.partitions.get(key(topic, partition))?.close();
    }
    this.options.onPartitionsChanged?.();
  }

  /** All hosted partitions. */
  hosted(): Partition[] {
    return [...this.partitions.values()];
  }

  /**
   * Stops replicating from leaders (controlled shutdown, once the leaderships moved): the broker
   * then cannot rejoin an ISR, and so cannot be handed a leadership again, before it goes.
   */
  stopFetching(): Promise<void> {
    return this.fetchers.stop();
  }

  /** Stops following metadata and waits for in-flight reconciles. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    clearInterval(this.shrinkTimer);
    await Promise.all([...this.chains.values()]);
    await this.fetchers.stop();
    for (const p of this.partitions.values()) p.close();
  }
}

/**
 * The replica fetchers of a broker (Kafka's `ReplicaFetcherManager`): one {@link ReplicaFetcher}
 * per leader broker incarnation, keyed by the leader's id, its address on the inter-broker
 * listener and its broker epoch, each with a channel of its own: a leader that restarted (a new
 * broker epoch) is dialled afresh at once instead of after the old channel's reconnect backoff,
 * which could outlast `replica.lag.time.max.ms`. The
 * replica manager calls {@link follow} when a partition's state says this broker follows leader
 * L in epoch E, and {@link unfollow} when it leads, has no leader or is no longer a replica. A
 * fetcher left with no partition is stopped; a leader that moved (restarted elsewhere) gets a new
 * fetcher with a new connection.
 */
import type { ClusterMetadata } from "../../shared/metadata/cluster-metadata.js";
import { formatAddress } from "../../shared/grpc/addresses.js";
import { createClient } from "../../shared/grpc/client.js";
import { replicationService, type ReplicationServiceClient } from "../../shared/grpc/proto.js";
import type { Logger } from "../../shared/logger.js";
import { type FetcherSettings, type FollowedPartition, ReplicaFetcher } from "./fetcher.js";

/** What the manager needs from the broker. */
export interface FetcherManagerOptions {
  readonly brokerId: number;
  readonly brokerEpoch: () => number;
  readonly metadata: ClusterMetadata;
  readonly settings: FetcherSettings;
  readonly logger: Logger;
  readonly onFetched?: (bytes: number) => void;
}

const key = (topic: string, partition: number) => `${topic}\u0000${partition}`;

export class FetcherManager {
  /** Fetchers (with their channel) by `<leaderId>@<address>#<brokerEpoch>`. */
  private readonly fetchers = new Map<
    string,
    { fetcher: ReplicaFetcher; client: ReplicationServiceClient }
  >();
  /** Which fetcher each followed partition is in. */
  private readonly placement = new Map<string, string>();
  private stopped = false;

  constructor(private readonly options: FetcherManagerOptions) {}

  /** Partitions followed, for metrics. */
  get followedCount(): number {
    return this.placement.size;
  }

  /**
   * Fetches `part` from broker `leaderId` (moving it off any other fetcher). A leader that is
   * not registered (dead, or not yet seen) leaves the partition unfetched until the metadata
   * changes again.
   */
  follow(part: FollowedPartition, leaderId: number): void {
    if (this.stopped) return;
    const leader = this.options.metadata.broker(leaderId);
    const k = key(part.topic, part.partition);
    if (leader === undefined) {
      this.unfollow(part.topic, part.partition);
      return;
    }
    const address = formatAddress(leader.host, leader.port);
    const fetcherKey = `${leaderId}@${address}#${leader.brokerEpoch}`;
    const current = this.placement.get(k);
    if (current !== undefined && current !== fetcherKey) this.unfollow(part.topic, part.partition);
    let entry = this.fetchers.get(fetcherKey);
    if (entry === undefined) {
      const client = createClient(replicationService.Client, address);
      const fetcher = new ReplicaFetcher({
        brokerId: this.options.brokerId,
        brokerEpoch: this.options.brokerEpoch,
        leaderId,
        client,
        settings: this.options.settings,
        logger: this.options.logger,
        onFetched: this.options.onFetched,
      });
      entry = { fetcher, client };
      this.fetchers.set(fetcherKey, entry);
    }
    entry.fetcher.add(part);
    this.placement.set(k, fetcherKey);
  }

  /** Stops fetching the partition. */
  unfollow(topic: string, partition: number): void {
    const k = key(topic, partition);
    const fetcherKey = this.placement.get(k);
    if (fetcherKey === undefined) return;
    this.placement.delete(k);
    const entry = this.fetchers.get(fetcherKey);
    if (entry === undefined) return;
    entry.fetcher.remove(topic, partition);
    if (entry.fetcher.size === 0) {
      this.fetchers.delete(fetcherKey);
      void entry.fetcher.stop().finally(() => entry.client.close());
    }
  }

  /** Stops every fetcher and closes the connections; later {@link follow} calls do nothing. */
  async stop(): Promise<void> {
    this.stopped = true;
    const all = [...this.fetchers.values()];
    this.fetchers.clear();
    this.placement.clear();
    await Promise.all(all.map((e) => e.fetcher.stop()));
    for (const e of all) e.client.close();
  }
}

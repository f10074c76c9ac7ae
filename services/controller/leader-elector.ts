/**
 * Partition leader election by the active controller (docs/replication.md). Whenever the set of
 * live brokers changes, and once on becoming active, every partition is checked:
 *
 * - leader dead (or none): the new leader is the first replica, in replica order, that is in the
 *   ISR and alive; dead brokers leave the ISR; the leader epoch goes up by one. With no live ISR
 *   member the partition goes offline (leader -1, ISR kept, so the last in-sync replica can come
 *   back as leader) — unless `unclean.leader.election.enable`, which takes any live replica.
 * - leader alive: dead followers are removed from the ISR.
 *
 * A broker that lists the partition in its registration's `offlinePartitions` (its log dir
 * went offline: disk full, I/O error) counts as dead for that partition only.
 *
 * Every change is a compare-and-swap on the partition's mod revision, fenced by the controller
 * epoch; a lost race re-reads and re-decides, a bounded number of times.
 *
 * Beside the failover decision ({@link nextPartitionState}) live the other pure election
 * decisions: an operator's preferred or unclean election ({@link electionOutcome}) and the
 * automatic rebalance's choice ({@link preferredElectionsDue}); `leader-balancer.ts` runs them.
 */
import type { Etcd3 } from "etcd3";
import { casPartitionState, readPartitionState } from "../shared/etcd/cas.js";
import type { ControllerLeadership } from "../shared/etcd/election.js";
import { brokerServes, type EtcdKeys, noLeader, type PartitionState } from "../shared/etcd/keys.js";
import { ErrorCode } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata, PartitionView } from "../shared/metadata/cluster-metadata.js";

/** CAS attempts per partition and sweep before giving up until the next sweep. */
export const ELECTION_CAS_ATTEMPTS_MAX = 5;

/** Decides a partition's next state given the live brokers; undefined when nothing changes. */
export function nextPartitionState(
  state: PartitionState,
  live: ReadonlySet<number>,
  unclean: boolean,
): PartitionState | undefined {
  const isrLive = state.isr.filter((r) => live.has(r));
  if (state.leader !== noLeader && live.has(state.leader)) {
    if (isrLive.length === state.isr.length) return undefined;
    return { ...state, isr: isrLive, partitionEpoch: state.partitionEpoch + 1 };
  }
  let leader = state.replicas.find((r) => isrLive.includes(r)) ?? noLeader;
  let isr = isrLive.length > 0 ? isrLive : state.isr;
  if (leader === noLeader && unclean) {
    leader = state.replicas.find((r) => live.has(r)) ?? noLeader;
    if (leader !== noLeader) isr = [leader];
  }
  if (leader === noLeader && state.leader === noLeader) return undefined;
  return {
    ...state,
    leader,
    isr,
    leaderEpoch: state.leaderEpoch + 1,
    partitionEpoch: state.partitionEpoch + 1,
  };
}

/** Kafka's election types (KIP-460), as ElectLeaders asks for them. */
export type ElectionType = "preferred" | "unclean";

/** What an election decides for one partition: the state to write, or why there is none. */
export type ElectionOutcome =
  | { readonly next: PartitionState; readonly error?: undefined }
  | { readonly next?: undefined; readonly error: ErrorCode; readonly reason: string };

/**
 * Kafka's leader election of an operator (ElectLeaders) for one partition, given the brokers
 * that may lead (live, minus any being shut down):
 *
 * - `preferred`: the preferred replica (the first of `replicas`) becomes leader when it is live
 *   and in the ISR: leader epoch + 1, ISR unchanged. ELECTION_NOT_NEEDED when it already leads;
 *   PREFERRED_LEADER_NOT_AVAILABLE when it is dead or out of the ISR.
 * - `unclean`: for a partition without a live leader, the first live ISR member in replica
 *   order, else the first live replica even outside the ISR (then the ISR is that replica
 *   alone), as {@link nextPartitionState} with unclean allowed. ELECTION_NOT_NEEDED when a live
 *   replica leads; ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica lives.
 */
export function electionOutcome(
  state: PartitionState,
  live: ReadonlySet<number>,
  type: ElectionType,
): ElectionOutcome {
  const leaderLive = state.leader !== noLeader && live.has(state.leader);
  if (type === "unclean") {
    if (leaderLive) {
      return { error: ErrorCode.ELECTION_NOT_NEEDED, reason: `broker ${state.leader} leads` };
    }
    const next = nextPartitionState(state, live, true);
    if (next === undefined || next.leader === noLeader) {
      return {
        error: ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
        reason: `no replica of ${state.replicas.join(",")} is alive`,
      };
    }
    return { next };
  }
  const preferred = state.replicas[0] ?? noLeader;
  if (leaderLive && state.leader === preferred) {
    return {
      error: ErrorCode.ELECTION_NOT_NEEDED,
      reason: `the preferred replica ${preferred} leads`,
    };
  }
  if (!live.has(preferred) || !state.isr.includes(preferred)) {
    const why = live.has(preferred) ? "is not in the ISR" : "is not alive";
    return {
      error: ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
      reason: `the preferred replica ${preferred} ${why}`,
    };
  }
  return {
    next: {
      ...state,
      leader: preferred,
      leaderEpoch: state.leaderEpoch + 1,
      partitionEpoch: state.partitionEpoch + 1,
    },
  };
}

/**
 * Kafka's auto leader rebalance decision (`auto.leader.rebalance.enable`): the partitions that
 * a preferred election should give back to their preferred replica. A partition is *due* when
 * its preferred replica is live (in `live`), in the ISR and not the leader. For each broker,
 * when its due partitions are more than `imbalancePercentage` percent of the partitions it is
 * the preferred replica of (Kafka's `leader.imbalance.per.broker.percentage`), all of them are
 * returned; a broker at or under the threshold keeps its imbalance (so one stray partition does
 * not move leaders around the cluster). Sorted by topic, then partition.
 */
export function preferredElectionsDue(
  partitions: readonly PartitionView[],
  live: ReadonlySet<number>,
  imbalancePercentage: number,
): PartitionView[] {
  const preferredOf = new Map<number, number>();
  const due = new Map<number, PartitionView[]>();
  for (const p of partitions) {
    const preferred = p.state.replicas[0];
    if (preferred === undefined || !live.has(preferred)) continue;
    preferredOf.set(preferred, (preferredOf.get(preferred) ?? 0) + 1);
    if (p.state.leader !== preferred && p.state.isr.includes(preferred)) {
      const list = due.get(preferred) ?? [];
      list.push(p);
      due.set(preferred, list);
    }
  }
  const out: PartitionView[] = [];
  for (const [broker, list] of due) {
    const total = preferredOf.get(broker) ?? list.length;
    if (list.length * 100 > imbalancePercentage * total) out.push(...list);
  }
  return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
}

/** What the elector needs. */
export interface LeaderElectorOptions {
  client: Etcd3;
  keys: EtcdKeys;
  metadata: ClusterMetadata;
  logger: Logger;
  /** Whether unclean election is allowed for a topic (topic config over cluster default). */
  uncleanAllowed: (topic: string) => boolean;
  /** Called with each leader change made. */
  onLeaderChange?: (topic: string, partition: number, state: PartitionState) => void;
}

export class LeaderElector {
  private running = false;
  private again = false;
  private readonly logger: Logger;

  constructor(private readonly options: LeaderElectorOptions) {
    this.logger = options.logger.child({ component: "leader-elector" });
  }

  /** Runs a sweep now, or once more after the one in progress. */
  trigger(leadership: ControllerLeadership): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void (async () => {
      try {
        do {
          this.again = false;
          await this.sweep(leadership);
        } while (this.again);
      } catch (err) {
        this.logger.warn("leader election sweep failed", { error: (err as Error).message });
      } finally {
        this.running = false;
      }
    })();
  }

  /** One pass over every partition. Throws NOT_CONTROLLER if deposed meanwhile. */
  async sweep(leadership: ControllerLeadership): Promise<number> {
    const { metadata } = this.options;
    let changed = 0;
    for (const { topic, partition } of metadata.partitions()) {
      if (!metadata.topic(topic)) continue;
      if (await this.electOne(leadership, topic, partition)) changed++;
    }
    return changed;
  }

  private async electOne(
    leadership: ControllerLeadership,
    topic: string,
    partition: number,
  ): Promise<boolean> {
    const { client, keys, metadata } = this.options;
    for (let attempt = 0; attempt < ELECTION_CAS_ATTEMPTS_MAX; attempt++) {
      const current = await readPartitionState(client, keys, topic, partition);
      if (!current) return false;
      // A broker whose log dir holding this partition went offline counts as dead for it.
      const live = new Set(
        metadata
          .brokers()
          .filter((b) => brokerServes(b, topic, partition))
          .map((b) => b.id),
      );
      const next = nextPartitionState(current.state, live, this.options.uncleanAllowed(topic));
      if (!next) return false;
      const res = await casPartitionState(client, keys, {
        topic,
        partition,
        expected: current,
        next,
        fence: leadership,
      });
      if (res.won) {
        if (
          next.leader !== current.state.leader ||
          next.leaderEpoch !== current.state.leaderEpoch
        ) {
          this.logger.info("partition leader changed", {
            topic,
            partition,
            leader: next.leader,
            previousLeader: current.state.leader,
            leaderEpoch: next.leaderEpoch,
            isr: next.isr,
          });
          this.options.onLeaderChange?.(topic, partition, next);
        }
        return true;
      }
    }
    this.logger.warn("partition state kept changing; will retry on the next sweep", {
      topic,
      partition,
    });
    return false;
  }
}

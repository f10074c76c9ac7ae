/**
 * The consumer group metrics of a gateway (prefix `samsa_`), for the groups it coordinates:
 * lag per group/topic/partition, members per group, groups per state (all three computed when
 * scraped), rebalances (target assignments computed) and commits with their latency.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** Name of the lag gauge. */
export const GROUP_LAG_METRIC = "samsa_consumer_group_lag";
/** Name of the members gauge. */
export const GROUP_MEMBERS_METRIC = "samsa_consumer_group_members";
/** Name of the groups-by-state gauge. */
export const GROUP_STATES_METRIC = "samsa_consumer_groups";
/** Name of the rebalances counter. */
export const GROUP_REBALANCES_METRIC = "samsa_consumer_group_rebalances_total";
/** Name of the commits counter. */
export const GROUP_COMMITS_METRIC = "samsa_consumer_group_commits_total";
/** Name of the commit latency histogram. */
export const GROUP_COMMIT_DURATION_METRIC = "samsa_consumer_group_commit_duration_seconds";
/** Commit latency buckets, seconds (one etcd txn, plus a wait for the rate bound). */
const COMMIT_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** One partition's lag as the scrape computes it. */
export interface LagSample {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
  readonly lag: number;
}

/** What the scrape-time gauges read. */
export interface GroupMetricsSource {
  /** Members and state of every owned group. */
  groups(): { group: string; members: number; state: string }[];
  /** Lag of every partition of every owned group (asks the leaders). */
  lags(): Promise<LagSample[]>;
}

export class GroupMetrics {
  private readonly rebalances: Counter<"group">;
  private readonly commits: Counter<"group" | "result">;
  private readonly commitDuration: Histogram<"group">;
  private source: GroupMetricsSource | undefined;

  constructor(registry: Registry) {
    const metrics = this;
    new Gauge({
      name: GROUP_LAG_METRIC,
      help: "Records between a group's committed offset and the log end offset, per partition, for the groups this gateway coordinates.",
      labelNames: ["group", "topic", "partition"],
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of (await metrics.source?.lags()) ?? []) {
          this.set({ group: s.group, topic: s.topic, partition: String(s.partition) }, s.lag);
        }
      },
    });
    new Gauge({
      name: GROUP_MEMBERS_METRIC,
      help: "Members of each group this gateway coordinates.",
      labelNames: ["group"],
      registers: [registry],
      collect() {
        this.reset();
        for (const g of metrics.source?.groups() ?? []) this.set({ group: g.group }, g.members);
      },
    });
    new Gauge({
      name: GROUP_STATES_METRIC,
      help: "Groups this gateway coordinates, by state.",
      labelNames: ["state"],
      registers: [registry],
      collect() {
        this.reset();
        const byState = new Map<string, number>();
        for (const g of metrics.source?.groups() ?? [])
          byState.set(g.state, (byState.get(g.state) ?? 0) + 1);
        for (const [state, n] of byState) this.set({ state }, n);
      },
    });
    this.rebalances = new Counter({
      name: GROUP_REBALANCES_METRIC,
      help: "Target assignments computed (a membership, subscription or partition count changed), per group.",
      labelNames: ["group"],
      registers: [registry],
    });
    this.commits = new Counter({
      name: GROUP_COMMITS_METRIC,
      help: "CommitOffsets requests handled by this coordinator, per group and result (an ErrorCode name, NONE = ok).",
      labelNames: ["group", "result"],
      registers: [registry],
    });
    this.commitDuration = new Histogram({
      name: GROUP_COMMIT_DURATION_METRIC,
      help: "CommitOffsets latency at the coordinator (rate wait plus the etcd txn), seconds.",
      labelNames: ["group"],
      buckets: COMMIT_BUCKETS_SECONDS,
      registers: [registry],
    });
  }

  /** Sets where the scrape-time gauges read from. */
  setSource(source: GroupMetricsSource): void {
    this.source = source;
  }

  /** Counts a computed target assignment. */
  rebalance(group: string): void {
    this.rebalances.inc({ group });
  }

  /** Counts a commit and its latency. */
  commit(group: string, result: string, seconds: number): void {
    this.commits.inc({ group, result });
    this.commitDuration.observe({ group }, seconds);
  }
}

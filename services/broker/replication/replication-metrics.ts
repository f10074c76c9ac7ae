/**
 * Replication metrics of a broker (docs/replication.md#metrics): under-replicated and
 * under-min-ISR partitions (of those led here), ISR shrinks and expands, truncations,
 * per-follower lag in records, acks=all answers waiting, bytes fetched from leaders. Gauges are
 * computed at scrape time from the replica manager; counters are bumped by partition events.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { PartitionEvents } from "../partition.js";
import type { ReplicaManager } from "../replica-manager.js";

export class ReplicationMetrics {
  private readonly shrinks: Counter<"topic">;
  private readonly expands: Counter<"topic">;
  private readonly truncations: Counter<"topic">;
  private readonly fetchedBytes: Counter;
  /** The events partitions report. */
  readonly events: PartitionEvents;

  constructor(registry: Registry, replicas: () => ReplicaManager | undefined) {
    const counter = (name: string, help: string) =>
      new Counter({ name, help, labelNames: ["topic"], registers: [registry] });
    this.shrinks = counter("samsa_isr_shrinks_total", "ISR shrinks written by this leader.");
    this.expands = counter("samsa_isr_expands_total", "ISR expands written by this leader.");
    this.truncations = counter(
      "samsa_replica_truncations_total",
      "Follower logs truncated by leader epoch (or reset to the leader's log).",
    );
    this.fetchedBytes = new Counter({
      name: "samsa_replica_fetch_bytes_total",
      help: "Record batch bytes this broker fetched from partition leaders.",
      registers: [registry],
    });
    const led = () => (replicas()?.hosted() ?? []).filter((p) => p.isLeader);
    new Gauge({
      name: "samsa_under_replicated_partitions",
      help: "Partitions led here whose ISR is smaller than their replica set.",
      registers: [registry],
      collect() {
        this.set(led().filter((p) => p.inSyncReplicas.length < p.assignedReplicas.length).length);
      },
    });
    new Gauge({
      name: "samsa_under_min_isr_partitions",
      help: "Partitions led here whose ISR is smaller than min.insync.replicas.",
      registers: [registry],
      collect() {
        this.set(led().filter((p) => p.underMinIsr).length);
      },
    });
    new Gauge({
      name: "samsa_produce_acks_all_waiting",
      help: "acks=all answers waiting for the in-sync replicas.",
      registers: [registry],
      collect() {
        this.set(led().reduce((n, p) => n + p.pendingAcks, 0));
      },
    });
    new Gauge({
      name: "samsa_follower_lag_records",
      help: "Records a follower is behind this leader's log end, by partition and follower.",
      labelNames: ["topic", "partition", "follower"],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of led()) {
          for (const [id, end] of p.followerEndOffsets()) {
            const lag = end < 0 ? p.log.logEndOffset : Math.max(0, p.log.logEndOffset - end);
            this.set({ topic: p.topic, partition: String(p.partition), follower: String(id) }, lag);
          }
        }
      },
    });
    this.events = {
      isrShrink: (topic) => this.shrinks.inc({ topic }),
      isrExpand: (topic) => this.expands.inc({ topic }),
      truncation: (topic) => this.truncations.inc({ topic }),
    };
  }

  /** Counts the bytes of a replica fetch answer. */
  recordReplicaFetch(bytes: number): void {
    if (bytes > 0) this.fetchedBytes.inc(bytes);
  }
}

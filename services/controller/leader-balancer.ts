/**
 * Preferred leader elections by the active controller (Kafka's): the operator's ElectLeaders,
 * and the automatic rebalance of `auto.leader.rebalance.enable`. After a broker failure its
 * leaderships went to other replicas; once it is back and in the ISR again, giving them back to
 * their preferred replica (the first of `replicas`, which placement spread evenly) restores the
 * balance of load across brokers.
 *
 * The automatic check runs every `leader.imbalance.check.interval.seconds`, when a broker
 * registers (again), and as soon as a broker that registered again (a restart) rejoins the ISR
 * of a partition it is the preferred replica of, after catching up: so a returning broker gets
 * its leaderships back without waiting for the next interval. It elects what {@link preferredElectionsDue} says, per broker over
 * `leader.imbalance.per.broker.percentage`.
 *
 * Every change is a compare-and-swap on the partition's mod revision, fenced by the controller
 * epoch, decided again on the state read from etcd (never on the possibly stale mirror alone).
 */
import type { Etcd3 } from "etcd3";
import { casPartitionState, readPartitionState } from "../shared/etcd/cas.js";
import type { ControllerLeadership } from "../shared/etcd/election.js";
import type { EtcdKeys, PartitionState } from "../shared/etcd/keys.js";
import { ErrorCode } from "../shared/errors.js";
import { CoalescingRunner } from "../shared/coalescing-runner.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata, MetadataChange } from "../shared/metadata/cluster-metadata.js";
import {
  ELECTION_CAS_ATTEMPTS_MAX,
  type ElectionType,
  electionOutcome,
  preferredElectionsDue,
} from "./leader-elector.js";

/**
 * How long a broker that registered again counts as returning, ms: its rejoining the ISR of a
 * partition it prefers triggers a check at once. Bounds the bookkeeping; later the periodic
 * check alone gives leaderships back.
 */
export const RETURNING_BROKER_WATCH_MS = 10 * 60_000;

/** A partition named in an election request. */
export interface TopicPartitionRef {
  readonly topic: string;
  readonly partition: number;
}

/** The outcome of an election for one partition. */
export interface ElectionResult extends TopicPartitionRef {
  /** NONE when the election moved the leader. */
  readonly error: ErrorCode;
  /** Why, when `error` is not NONE; "" otherwise. */
  readonly message: string;
  /** The partition's state after the call (undefined for an unknown partition). */
  readonly state: PartitionState | undefined;
}

/** What the balancer needs. */
export interface LeaderBalancerOptions {
  client: Etcd3;
  keys: EtcdKeys;
  metadata: ClusterMetadata;
  logger: Logger;
  /** This controller's leadership while it is the active one. */
  leadership: () => ControllerLeadership | undefined;
  /** `auto.leader.rebalance.enable`: run the automatic check. ElectLeaders works either way. */
  autoRebalance: boolean;
  /** `leader.imbalance.check.interval.seconds`, in ms. */
  checkIntervalMs: number;
  /** `leader.imbalance.per.broker.percentage`: 0..100. */
  imbalancePercentage: number;
  /**
   * Live brokers that must not be given leaderships (e.g. in a controlled shutdown). Default:
   * none.
   */
  excluded?: () => ReadonlySet<number>;
  /** Called with each leader change made. */
  onLeaderChange?: (topic: string, partition: number, state: PartitionState) => void;
}

export class LeaderBalancer {
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private readonly runner: CoalescingRunner;
  /** Brokers whose registration went away (seen by this controller): a new one is a return. */
  private readonly departed = new Set<number>();
  /** Brokers that registered again and do not lead all they prefer yet: id → since, ms. */
  private readonly returning = new Map<number, number>();

  constructor(private readonly options: LeaderBalancerOptions) {
    this.logger = options.logger.child({ component: "leader-balancer" });
    this.runner = new CoalescingRunner(
      async () => {
        await this.check();
      },
      (err) => this.logger.warn("leader balance check failed", { error: (err as Error).message }),
    );
  }

  /** Starts the automatic check (when enabled). */
  start(): void {
    if (!this.options.autoRebalance || this.stopped || this.timer) return;
    this.unsubscribe = this.options.metadata.onChange((change) => this.onMetadata(change));
    this.schedule();
  }

  /** Stops the automatic check and waits for a check in progress. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    await this.runner.stop();
  }

  /** Runs a check now, or once more after the one in progress. */
  trigger(): void {
    this.runner.trigger();
  }

  /**
   * One automatic check: preferred elections for the partitions due. Does nothing unless this
   * controller is active. Returns the leaders moved. Throws NOT_CONTROLLER if deposed meanwhile.
   */
  async check(): Promise<number> {
    const leadership = this.options.leadership();
    if (leadership === undefined) return 0;
    const { metadata } = this.options;
    const partitions = metadata.partitions().filter((p) => metadata.topic(p.topic) !== undefined);
    const due = preferredElectionsDue(
      partitions,
      this.eligible(),
      this.options.imbalancePercentage,
    );
    let moved = 0;
    for (const p of due) {
      const r = await this.electOne(leadership, p, "preferred");
      if (r.error === ErrorCode.NONE) moved++;
    }
    if (due.length > 0) {
      this.logger.info("preferred leader rebalance", { due: due.length, moved });
    }
    this.forgetReturned();
    return moved;
  }

  /**
   * ElectLeaders: runs a `type` election for each of `partitions`, or for every partition when
   * undefined (then the partitions that need none, by this controller's mirror, are left out of
   * the results, as Kafka does). Results in request order (all: by topic, then partition).
   * Throws NOT_CONTROLLER if this controller is deposed meanwhile.
   */
  async elect(
    leadership: ControllerLeadership,
    type: ElectionType,
    partitions?: readonly TopicPartitionRef[],
  ): Promise<ElectionResult[]> {
    const { metadata } = this.options;
    const results: ElectionResult[] = [];
    if (partitions === undefined) {
      const live = this.eligible();
      for (const p of metadata.partitions()) {
        if (metadata.topic(p.topic) === undefined) continue;
        const cached = electionOutcome(p.state, live, type);
        if (cached.error === ErrorCode.ELECTION_NOT_NEEDED) continue;
        const r = await this.electOne(leadership, p, type);
        if (r.error !== ErrorCode.ELECTION_NOT_NEEDED) results.push(r);
      }
      return results;
    }
    for (const p of partitions) {
      const topic = metadata.topic(p.topic);
      if (topic === undefined || p.partition < 0 || p.partition >= topic.partitions) {
        results.push({
          ...p,
          error: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
          message: `partition ${p.partition} of topic ${p.topic} does not exist`,
          state: undefined,
        });
        continue;
      }
      results.push(await this.electOne(leadership, p, type));
    }
    return results;
  }

  /** Live brokers that may be given leaderships. */
  private eligible(): Set<number> {
    const excluded = this.options.excluded?.() ?? new Set<number>();
    return new Set(
      this.options.metadata
        .brokers()
        .map((b) => b.id)
        .filter((id) => !excluded.has(id)),
    );
  }

  /** One partition's election: decide on the state in etcd, CAS, retry a lost race (bounded). */
  private async electOne(
    leadership: ControllerLeadership,
    p: TopicPartitionRef,
    type: ElectionType,
  ): Promise<ElectionResult> {
    const { client, keys } = this.options;
    const { topic, partition } = p;
    let state: PartitionState | undefined;
    for (let attempt = 0; attempt < ELECTION_CAS_ATTEMPTS_MAX; attempt++) {
      const current = await readPartitionState(client, keys, topic, partition);
      state = current?.state;
      if (current === undefined) {
        const message = `partition ${partition} of topic ${topic} does not exist`;
        return { topic, partition, error: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message, state };
      }
      const outcome = electionOutcome(current.state, this.eligible(), type);
      if (outcome.next === undefined) {
        return { topic, partition, error: outcome.error, message: outcome.reason, state };
      }
      const next = outcome.next;
      const res = await casPartitionState(client, keys, {
        topic,
        partition,
        expected: current,
        next,
        fence: leadership,
      });
      if (res.won) {
        this.logger.info("leader elected", {
          election: type,
          topic,
          partition,
          leader: next.leader,
          previousLeader: current.state.leader,
          leaderEpoch: next.leaderEpoch,
          isr: next.isr,
        });
        this.options.onLeaderChange?.(topic, partition, next);
        return { topic, partition, error: ErrorCode.NONE, message: "", state: next };
      }
    }
    const message = `the state of partition ${partition} of ${topic} kept changing; try again`;
    return { topic, partition, error: ErrorCode.REQUEST_TIMED_OUT, message, state };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.trigger();
      this.schedule();
    }, this.options.checkIntervalMs);
    this.timer.unref();
  }

  /**
   * A broker registering again (after its registration went) starts being watched, and triggers
   * a check; a watched broker rejoining the ISR of a partition it is the preferred replica of
   * (and does not lead) triggers one too. Brokers seen for the first time (a cluster starting)
   * are not watched: only the periodic check balances them.
   */
  private onMetadata(change: MetadataChange): void {
    if (change.kind === "broker") {
      const { event } = change;
      if (event.type === "delete") {
        this.departed.add(event.prev.id);
        this.returning.delete(event.prev.id);
      } else if (event.prev === undefined && this.departed.delete(event.value.id)) {
        this.returning.set(event.value.id, Date.now());
        this.trigger();
      }
      return;
    }
    if (change.kind !== "partition" || change.event.type !== "put") return;
    const { value, prev } = change.event;
    const preferred = value.replicas[0];
    if (preferred === undefined || !this.returning.has(preferred)) return;
    const joined = value.isr.includes(preferred) && !(prev?.isr.includes(preferred) ?? false);
    if (joined && value.leader !== preferred) this.trigger();
  }

  /** Stops watching brokers that lead every partition they prefer, or returned long ago. */
  private forgetReturned(): void {
    if (this.returning.size === 0) return;
    const now = Date.now();
    const pending = new Set<number>();
    for (const { state } of this.options.metadata.partitions()) {
      const preferred = state.replicas[0];
      if (preferred !== undefined && state.leader !== preferred) pending.add(preferred);
    }
    for (const [id, since] of this.returning) {
      if (!pending.has(id) || now - since > RETURNING_BROKER_WATCH_MS) this.returning.delete(id);
    }
  }
}

/**
 * Partition reassignments by the active controller (Kafka's AlterPartitionReassignments and
 * ListPartitionReassignments, KIP-455). A request writes the start of each reassignment into the
 * partition state in etcd (`addingReplicas`, `removingReplicas`; the decisions are in
 * `partition-reassignment.ts`); from there the active controller drives it step by step: once
 * every adding replica is in the ISR (the partition leader lets it in after it caught up), the
 * leadership moves to a target replica when the leader is not one, then the old replicas are
 * dropped. Brokers follow the replica list (their replica manager opens the log of a partition
 * they were added to and follows the leader, and deletes the log of one they were dropped from).
 *
 * Nothing is kept in memory: the controller that becomes active after a failover finds the
 * reassignments in its etcd mirror and continues them. The driver runs on every change of a
 * reassigning partition and of the brokers, on becoming active, and every
 * {@link REASSIGNMENT_CHECK_INTERVAL_MS}. Every write is a compare-and-swap on the partition's
 * mod revision fenced by the controller epoch, decided on the state read from etcd.
 */
import type { Etcd3 } from "etcd3";
import { casPartitionState, readPartitionState } from "../shared/etcd/cas.js";
import type { ControllerLeadership } from "../shared/etcd/election.js";
import { type EtcdKeys, isReassigning, type PartitionState } from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { CoalescingRunner } from "../shared/coalescing-runner.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata, MetadataChange } from "../shared/metadata/cluster-metadata.js";
import {
  cancelReassignment,
  type ReassignmentOutcome,
  reassignmentStep,
  startReassignment,
  validateTarget,
} from "./partition-reassignment.js";

/** How often the active controller checks reassignments in progress without a trigger, ms. */
export const REASSIGNMENT_CHECK_INTERVAL_MS = 1_000;
/** CAS attempts per partition for one request or one step before giving up (until later). */
export const REASSIGNMENT_CAS_ATTEMPTS_MAX = 5;
/** Steps taken for one partition in one pass at most (a reassignment has two). */
export const REASSIGNMENT_STEPS_PER_PASS_MAX = 4;

/** One partition's requested reassignment: the target replicas, or null to cancel. */
export interface ReassignmentRequest {
  readonly topic: string;
  readonly partition: number;
  readonly replicas: readonly number[] | null;
}

/** The outcome of one requested reassignment (or cancel). */
export interface ReassignmentResult {
  readonly topic: string;
  readonly partition: number;
  /** NONE when it started (or was cancelled, or nothing was needed). */
  readonly error: ErrorCode;
  /** Why, when `error` is not NONE; "" otherwise. */
  readonly message: string;
}

/** A reassignment in progress. */
export interface OngoingReassignment {
  readonly topic: string;
  readonly partition: number;
  /** Every replica: the target first, then those being removed. */
  readonly replicas: readonly number[];
  readonly addingReplicas: readonly number[];
  readonly removingReplicas: readonly number[];
}

/** What the reassigner needs. */
export interface PartitionReassignerOptions {
  client: Etcd3;
  keys: EtcdKeys;
  metadata: ClusterMetadata;
  logger: Logger;
  /** This controller's leadership while it is the active one. */
  leadership: () => ControllerLeadership | undefined;
  /** Between two checks without a trigger, ms. Default {@link REASSIGNMENT_CHECK_INTERVAL_MS}. */
  checkIntervalMs?: number;
  /** Called with each leader change a step made. */
  onLeaderChange?: (topic: string, partition: number, state: PartitionState) => void;
}

export class PartitionReassigner {
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private readonly runner: CoalescingRunner;

  constructor(private readonly options: PartitionReassignerOptions) {
    this.logger = options.logger.child({ component: "partition-reassigner" });
    this.runner = new CoalescingRunner(
      () => this.advanceAll(),
      (err) => this.logger.warn("reassignment pass failed", { error: (err as Error).message }),
    );
  }

  /** Starts following the metadata and the periodic check. */
  start(): void {
    if (this.stopped || this.timer) return;
    this.unsubscribe = this.options.metadata.onChange((change) => this.onMetadata(change));
    this.timer = setInterval(
      () => this.trigger(),
      this.options.checkIntervalMs ?? REASSIGNMENT_CHECK_INTERVAL_MS,
    );
    this.timer.unref();
  }

  /** Stops and waits for a pass in progress. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.unsubscribe?.();
    await this.runner.stop();
  }

  /** Runs a pass now, or once more after the one in progress. */
  trigger(): void {
    this.runner.trigger();
  }

  /** The reassignments in progress (of `partitions`, or all), by this controller's mirror. */
  list(partitions?: ReadonlyMap<string, ReadonlySet<number> | undefined>): OngoingReassignment[] {
    const { metadata } = this.options;
    const out: OngoingReassignment[] = [];
    for (const p of metadata.partitions()) {
      if (!isReassigning(p.state) || metadata.topic(p.topic) === undefined) continue;
      if (partitions !== undefined) {
        if (!partitions.has(p.topic)) continue;
        const wanted = partitions.get(p.topic);
        if (wanted !== undefined && !wanted.has(p.partition)) continue;
      }
      out.push({
        topic: p.topic,
        partition: p.partition,
        replicas: p.state.replicas,
        addingReplicas: p.state.addingReplicas ?? [],
        removingReplicas: p.state.removingReplicas ?? [],
      });
    }
    return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  }

  /**
   * Starts (or, with null replicas, cancels) each requested reassignment; one result per
   * request, in order. Throws NOT_CONTROLLER if this controller is deposed meanwhile.
   */
  async alter(
    leadership: ControllerLeadership,
    requests: readonly ReassignmentRequest[],
  ): Promise<ReassignmentResult[]> {
    const results: ReassignmentResult[] = [];
    for (const r of requests) {
      try {
        results.push(await this.alterOne(leadership, r));
      } catch (err) {
        if (!(err instanceof SamsaError) || err.code === ErrorCode.NOT_CONTROLLER) throw err;
        results.push({
          topic: r.topic,
          partition: r.partition,
          error: err.code,
          message: err.message,
        });
      }
    }
    this.trigger();
    return results;
  }

  private async alterOne(
    leadership: ControllerLeadership,
    request: ReassignmentRequest,
  ): Promise<ReassignmentResult> {
    const { client, keys, metadata } = this.options;
    const { topic, partition, replicas } = request;
    const record = metadata.topic(topic);
    if (record === undefined || partition < 0 || partition >= record.partitions) {
      throw new SamsaError(
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        `partition ${partition} of topic ${topic} does not exist`,
      );
    }
    const live = new Set(metadata.brokers().map((b) => b.id));
    if (replicas !== null) validateTarget(replicas, live);
    for (let attempt = 0; attempt < REASSIGNMENT_CAS_ATTEMPTS_MAX; attempt++) {
      const current = await readPartitionState(client, keys, topic, partition);
      if (current === undefined) {
        throw new SamsaError(
          ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
          `partition ${partition} of topic ${topic} does not exist`,
        );
      }
      const outcome: ReassignmentOutcome =
        replicas === null
          ? cancelReassignment(current.state, live)
          : startReassignment(current.state, replicas, live);
      if (outcome.error !== undefined) throw new SamsaError(outcome.error, outcome.reason);
      const next = outcome.next;
      if (next === undefined) return { topic, partition, error: ErrorCode.NONE, message: "" };
      const res = await casPartitionState(client, keys, {
        topic,
        partition,
        expected: current,
        next,
        fence: leadership,
      });
      if (res.won) {
        this.logger.info(replicas === null ? "reassignment cancelled" : "reassignment started", {
          topic,
          partition,
          from: current.state.replicas,
          replicas: next.replicas,
          addingReplicas: next.addingReplicas ?? [],
          removingReplicas: next.removingReplicas ?? [],
          leader: next.leader,
          leaderEpoch: next.leaderEpoch,
        });
        if (next.leaderEpoch !== current.state.leaderEpoch) {
          this.options.onLeaderChange?.(topic, partition, next);
        }
        return { topic, partition, error: ErrorCode.NONE, message: "" };
      }
    }
    throw new SamsaError(
      ErrorCode.REQUEST_TIMED_OUT,
      `the state of partition ${partition} of ${topic} kept changing; try again`,
    );
  }

  /** One pass: every reassigning partition of the mirror is advanced as far as it can go now. */
  private async advanceAll(): Promise<void> {
    const leadership = this.options.leadership();
    if (leadership === undefined) return;
    const { metadata } = this.options;
    for (const p of metadata.partitions()) {
      if (!isReassigning(p.state) || metadata.topic(p.topic) === undefined) continue;
      await this.advanceOne(leadership, p.topic, p.partition);
    }
  }

  /** Takes the steps one partition can take now, each decided on the state read from etcd. */
  private async advanceOne(
    leadership: ControllerLeadership,
    topic: string,
    partition: number,
  ): Promise<void> {
    const { client, keys, metadata } = this.options;
    let attempts = 0;
    for (let steps = 0; steps < REASSIGNMENT_STEPS_PER_PASS_MAX; ) {
      const current = await readPartitionState(client, keys, topic, partition);
      if (current === undefined) return;
      const live = new Set(metadata.brokers().map((b) => b.id));
      const step = reassignmentStep(current.state, live);
      if (step === undefined) return;
      const { next } = step;
      const res = await casPartitionState(client, keys, {
        topic,
        partition,
        expected: current,
        next,
        fence: leadership,
      });
      if (!res.won) {
        if (++attempts >= REASSIGNMENT_CAS_ATTEMPTS_MAX) return;
        continue;
      }
      steps++;
      if (step.kind === "leader") {
        this.logger.info("reassignment moved the leadership to a target replica", {
          topic,
          partition,
          leader: next.leader,
          previousLeader: current.state.leader,
          leaderEpoch: next.leaderEpoch,
        });
        this.options.onLeaderChange?.(topic, partition, next);
      } else {
        this.logger.info("reassignment completed", {
          topic,
          partition,
          replicas: next.replicas,
          removed: current.state.removingReplicas ?? [],
          isr: next.isr,
        });
      }
    }
  }

  /** A reassigning partition changed (an adding replica joined the ISR, ...) or brokers did. */
  private onMetadata(change: MetadataChange): void {
    if (change.kind === "broker") {
      this.trigger();
      return;
    }
    if (change.kind !== "partition" || change.event.type !== "put") return;
    if (isReassigning(change.event.value)) this.trigger();
  }
}

/**
 * A partition hosted by this broker: its log plus its replication role (docs/replication.md).
 *
 *              applyState(leader = me, epoch E)
 *   follower ─────────────────────────────────────▶ leader(E)
 *      ▲  ◀─────────── applyState(leader ≠ me) ────────┤
 *      │                                               │ ISR write finds another leader/epoch
 *      └──────── applyState(any newer state) ◀──── fenced (answers NOT_LEADER)
 *
 * As **leader** it appends producers' batches stamped with its epoch, tracks each follower's log
 * end offset from their fetches (leader-state.ts), keeps the high watermark at the smallest log
 * end offset in the ISR (never lower than before, and not moved at all while the ISR is smaller
 * than `min.insync.replicas`: KIP-966), answers acks=all once the high watermark passes the batch
 * (delayed-produce.ts), and shrinks or grows the ISR through a compare-and-swap in etcd before it
 * acts on the new ISR (isr-updater.ts). As **follower** it is driven by a replica fetcher:
 * appends the leader's batches as they are, truncates where the leader says the logs diverge
 * (divergence.ts), and takes the leader's high watermark, bounded by its own log end.
 *
 * Readers waiting for data (long-poll fetches, subscriptions, replica fetches) park on
 * {@link waitForData} and are woken whenever the high watermark or the log end moves.
 */
import { assert, ErrorCode, SamsaError } from "../shared/errors.js";
import type { PartitionState } from "../shared/etcd/keys.js";
import type { ReplicaFetchPartitionResult__Output } from "../shared/generated/samsa/internal/v1/ReplicaFetchPartitionResult.js";
import type { Logger } from "../shared/logger.js";
import type { AppendResult, PartitionLog } from "./log/partition-log.js";
import { DelayedProduce } from "./replication/delayed-produce.js";
import { type Divergence, divergingEpoch, truncationOffset } from "./replication/divergence.js";
import type { FollowedPartition } from "./replication/fetcher.js";
import type { IsrChange, IsrUpdateOutcome } from "./replication/isr-updater.js";
import { LeaderState } from "./replication/leader-state.js";

/** Parked readers per partition at most (each holds a timer and a closure). */
export const DATA_WAITERS_MAX = 10_000;
/** How long a reader beyond {@link DATA_WAITERS_MAX} waits before it reads again, ms. */
export const DATA_WAITERS_FULL_POLL_MS = 100;

/** What a partition needs from its broker. */
export interface PartitionContext {
  readonly brokerId: number;
  /** The topic's `min.insync.replicas`. */
  readonly minInsyncReplicas: () => number;
  /** `replica.lag.time.max.ms`: a follower not caught up this long leaves the ISR. */
  readonly replicaLagTimeMsMax: number;
  /** Writes an ISR change to etcd (isr-updater.ts). */
  readonly writeIsr: (change: IsrChange) => Promise<IsrUpdateOutcome>;
  readonly logger: Logger;
  /** Told of every ISR change this leader wrote, and of truncations. */
  readonly events?: PartitionEvents;
}

/** Replication events, for metrics. */
export interface PartitionEvents {
  isrShrink?(topic: string, partition: number): void;
  isrExpand?(topic: string, partition: number): void;
  truncation?(topic: string, partition: number): void;
}

/** Which log end a reader waits on: consumers the high watermark, followers the log end. */
export type WaitBound = "highWatermark" | "logEnd";

type Role = "follower" | "leader" | "fenced";

export class Partition implements FollowedPartition {
  private role: Role = "follower";
  private epoch = -1;
  private replicas: readonly number[] = [];
  private isr: readonly number[] = [];
  private leaderState: LeaderState | undefined;
  /** The log end when this leadership began: a joining follower must reach it. */
  private epochStartOffset = 0;
  /** The ISR change being written, if any (one at a time). */
  private isrChange: { readonly isr: readonly number[] } | undefined;
  private readonly delayed = new DelayedProduce();
  private readonly waiters = new Set<() => void>();
  private readonly logger: Logger;

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly log: PartitionLog,
    private readonly ctx: PartitionContext,
  ) {
    this.logger = ctx.logger.child({ topic, partition });
  }

  /** Whether this broker leads the partition (and was not fenced). */
  get isLeader(): boolean {
    return this.role === "leader";
  }

  /** The leader epoch this broker knows. */
  get leaderEpoch(): number {
    return this.epoch;
  }

  /** The in-sync replicas, as written in etcd. */
  get inSyncReplicas(): readonly number[] {
    return this.isr;
  }

  /** The assigned replicas. */
  get assignedReplicas(): readonly number[] {
    return this.replicas;
  }

  /** Whether the ISR is smaller than the topic's `min.insync.replicas`. */
  get underMinIsr(): boolean {
    return this.isr.length < this.ctx.minInsyncReplicas();
  }

  /** acks=all answers waiting for replication. */
  get pendingAcks(): number {
    return this.delayed.size;
  }

  /** Each follower's log end offset as this leader last heard it (empty unless leading). */
  followerEndOffsets(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [id, f] of this.leaderState?.entries() ?? []) out.set(id, f.logEndOffset);
    return out;
  }

  /**
   * Takes the state etcd holds for the partition. Returns the role it ends up in. A state of an
   * older leader epoch than the one known is ignored (the watch is ordered; this only happens
   * for a stale read).
   */
  async applyState(state: PartitionState): Promise<"leader" | "follower"> {
    if (state.leaderEpoch < this.epoch) return this.isLeader ? "leader" : "follower";
    const me = this.ctx.brokerId;
    if (state.leader === me) {
      if (this.role === "leader" && state.leaderEpoch === this.epoch) this.updateLeading(state);
      else await this.becomeLeader(state);
      return "leader";
    }
    this.becomeFollower(state);
    return "follower";
  }

  private async becomeLeader(state: PartitionState): Promise<void> {
    this.stepDown(new SamsaError(ErrorCode.NOT_LEADER, `${this.name} changes leader epoch`));
    // Neither leader nor follower until the epoch is in the log: requests get NOT_LEADER
    // (retriable) and a fetch answer in flight from the old leader is dropped.
    this.role = "fenced";
    // The new epoch starts at the log end (Kafka assigns it at election): a follower whose last
    // epoch is older learns exactly where that epoch ended here.
    await this.log.beginLeaderEpoch(state.leaderEpoch);
    this.epoch = state.leaderEpoch;
    this.replicas = state.replicas;
    this.isr = state.isr;
    this.epochStartOffset = this.log.logEndOffset;
    this.leaderState = new LeaderState(this.ctx.brokerId, state.replicas, state.isr, Date.now());
    this.role = "leader";
    this.maybeAdvanceHighWatermark();
  }

  /** A newer state of the same leadership (an ISR change by the controller or by us). */
  private updateLeading(state: PartitionState): void {
    if (state.replicas.join() !== this.replicas.join()) {
      this.leaderState = new LeaderState(this.ctx.brokerId, state.replicas, state.isr, Date.now());
    }
    this.replicas = state.replicas;
    this.isr = state.isr;
    this.maybeAdvanceHighWatermark();
  }

  private becomeFollower(state: PartitionState): void {
    if (this.role !== "follower") {
      this.stepDown(
        new SamsaError(ErrorCode.NOT_LEADER, `${this.name} is led by broker ${state.leader}`),
      );
    }
    this.role = "follower";
    this.epoch = state.leaderEpoch;
    this.replicas = state.replicas;
    this.isr = state.isr;
    this.wake();
  }

  /** Ends a leadership: pending acks=all answers fail with `reason`. */
  private stepDown(reason: SamsaError): void {
    this.leaderState = undefined;
    this.isrChange = undefined;
    this.delayed.failAll(reason);
    this.wake();
  }

  /** Stops acting as leader after etcd named another leader or epoch (until the next state). */
  private fence(current: PartitionState | undefined): void {
    if (this.role !== "leader") return;
    this.logger.warn("fenced: etcd names another leader or epoch; no longer answering as leader", {
      leaderEpoch: this.epoch,
      currentLeader: current?.leader,
      currentLeaderEpoch: current?.leaderEpoch,
    });
    this.role = "fenced";
    this.stepDown(new SamsaError(ErrorCode.NOT_LEADER, `${this.name}: this broker was deposed`));
  }

  /** Marks the partition as no longer hosted (removed). */
  close(): void {
    this.role = "follower";
    this.stepDown(new SamsaError(ErrorCode.NOT_LEADER, `${this.name} is no longer hosted here`));
  }

  /**
   * Fences a request carrying the client's idea of the leader epoch: older → FENCED_LEADER_EPOCH,
   * newer → UNKNOWN_LEADER_EPOCH (this broker has not heard of it yet); -1 skips the check.
   */
  checkEpoch(requestEpoch: number): void {
    if (requestEpoch < 0 || requestEpoch === this.epoch) return;
    if (requestEpoch < this.epoch) {
      throw new SamsaError(
        ErrorCode.FENCED_LEADER_EPOCH,
        `leader epoch ${requestEpoch} is older than ${this.epoch}`,
      );
    }
    throw new SamsaError(
      ErrorCode.UNKNOWN_LEADER_EPOCH,
      `leader epoch ${requestEpoch} is newer than ${this.epoch}`,
    );
  }

  /** Throws NOT_LEADER unless this broker leads the partition. */
  requireLeader(): void {
    if (this.role !== "leader") {
      throw new SamsaError(
        ErrorCode.NOT_LEADER,
        `broker ${this.ctx.brokerId} does not lead ${this.name}`,
      );
    }
  }

  /**
   * Appends as leader, stamping the current epoch. With `acksAll`, refuses with
   * NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`, and resolves only
   * once the high watermark passes the batch (REQUEST_TIMED_OUT after `timeoutMs`, NOT_LEADER
   * if the leadership ends first).
   */
  async appendAsLeader(
    records: Buffer,
    options: { acksAll: boolean; timeoutMs: number },
  ): Promise<AppendResult> {
    this.requireLeader();
    const epoch = this.epoch;
    if (options.acksAll) {
      const minIsr = this.ctx.minInsyncReplicas();
      if (this.isr.length < minIsr) {
        throw new SamsaError(
          ErrorCode.NOT_ENOUGH_REPLICAS,
          `ISR of ${this.name} is [${this.isr.join(",")}], min.insync.replicas is ${minIsr}`,
        );
      }
    }
    const result = await this.log.append(records, { leaderEpoch: epoch });
    if (this.role !== "leader" || this.epoch !== epoch) {
      throw new SamsaError(ErrorCode.NOT_LEADER, `${this.name} changed leader during the append`);
    }
    this.maybeAdvanceHighWatermark();
    if (options.acksAll) {
      await this.delayed.wait(result.lastOffset + 1, this.log.highWatermark, options.timeoutMs);
    }
    return result;
  }

  /**
   * Leader side of a follower's fetch at `fetchOffset` whose last batch has `lastFetchedEpoch`:
   * the divergence when its log parted from ours (then nothing else is recorded), else records
   * its log end offset, lets it into the ISR when it caught up, and advances the high watermark.
   */
  recordFollowerFetch(
    replicaId: number,
    brokerEpoch: number,
    fetchOffset: number,
    lastFetchedEpoch: number,
  ): Divergence | undefined {
    this.requireLeader();
    const diverged = divergingEpoch(
      fetchOffset,
      lastFetchedEpoch,
      this.log.endOffsetForEpoch(lastFetchedEpoch),
    );
    if (diverged !== undefined) return diverged;
    const leo = this.log.logEndOffset;
    if (fetchOffset < this.log.logStartOffset || fetchOffset > leo) {
      throw new SamsaError(
        ErrorCode.OFFSET_OUT_OF_RANGE,
        `fetch offset ${fetchOffset} is outside [${this.log.logStartOffset}, ${leo}] of ${this.name}`,
      );
    }
    const known = this.leaderState!.recordFetch(
      replicaId,
      fetchOffset,
      leo,
      brokerEpoch,
      Date.now(),
    );
    if (!known) {
      throw new SamsaError(
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        `broker ${replicaId} is not a replica of ${this.name}`,
      );
    }
    this.maybeExpandIsr(replicaId);
    this.maybeAdvanceHighWatermark();
    return undefined;
  }

  /** ISR shrink check (the replica manager calls it periodically for led partitions). */
  maybeShrinkIsr(nowMs: number): void {
    if (this.role !== "leader" || this.isrChange !== undefined) return;
    const lagging = this.leaderState!.laggingReplicas(
      this.isr,
      nowMs,
      this.ctx.replicaLagTimeMsMax,
    );
    if (lagging.length === 0) return;
    this.logger.info("shrinking ISR: followers not caught up", {
      lagging,
      isr: this.isr,
      replicaLagTimeMsMax: this.ctx.replicaLagTimeMsMax,
    });
    this.proposeIsr(
      this.isr.filter((id) => !lagging.includes(id)),
      (isr) => isr.filter((id) => !lagging.includes(id)),
      "shrink",
    );
  }

  private maybeExpandIsr(replicaId: number): void {
    if (this.isrChange !== undefined || this.isr.includes(replicaId)) return;
    const hw = this.log.highWatermark;
    if (!this.leaderState!.canJoinIsr(replicaId, hw, this.epochStartOffset)) return;
    this.logger.info("expanding ISR: follower caught up", { replicaId, isr: this.isr });
    this.proposeIsr([...this.isr, replicaId], (isr) => [...isr, replicaId], "expand");
  }

  /** Writes an ISR change to etcd first; acts on it only once written (one at a time). */
  private proposeIsr(
    proposed: readonly number[],
    apply: (isr: readonly number[]) => readonly number[],
    kind: "shrink" | "expand",
  ): void {
    const epoch = this.epoch;
    const change = { isr: proposed };
    this.isrChange = change;
    const { brokerId } = this.ctx;
    const write = this.ctx.writeIsr({
      topic: this.topic,
      partition: this.partition,
      leaderId: brokerId,
      leaderEpoch: epoch,
      apply,
    });
    write
      .then((outcome) => {
        if (this.isrChange !== change) return;
        this.isrChange = undefined;
        if (this.role !== "leader" || this.epoch !== epoch) return;
        if (outcome.kind === "fenced") return this.fence(outcome.state);
        if (outcome.kind === "written") {
          this.isr = outcome.state.isr;
          this.logger.info("ISR changed", { kind, isr: this.isr, leaderEpoch: epoch });
          if (kind === "shrink") this.ctx.events?.isrShrink?.(this.topic, this.partition);
          else this.ctx.events?.isrExpand?.(this.topic, this.partition);
          this.maybeAdvanceHighWatermark();
        }
      })
      .catch((err) => {
        if (this.isrChange === change) this.isrChange = undefined;
        this.logger.warn("ISR change not written", { kind, error: (err as Error).message });
      });
  }

  /**
   * HW = the smallest log end offset in the ISR (while an ISR change is being written, in the
   * union of the old and the new ISR); never backwards; not moved while the ISR (as written in
   * etcd) is smaller than `min.insync.replicas`, so nothing is committed with fewer copies.
   */
  private maybeAdvanceHighWatermark(): void {
    if (this.role !== "leader") return;
    const current = this.log.highWatermark;
    if (this.isr.length >= this.ctx.minInsyncReplicas()) {
      const maximal = this.isrChange
        ? [...new Set([...this.isr, ...this.isrChange.isr])]
        : this.isr;
      const hw = this.leaderState!.highWatermarkCandidate(maximal, this.log.logEndOffset, current);
      if (hw > current) {
        this.log.setHighWatermark(hw);
        this.delayed.complete(hw);
      }
    }
    this.wake();
  }

  // ---- follower side (driven by the replica fetcher) ----

  /** {@link FollowedPartition.fetchPosition}. */
  fetchPosition(): { fetchOffset: number; lastFetchedEpoch: number } {
    return { fetchOffset: this.log.logEndOffset, lastFetchedEpoch: this.log.latestEpoch };
  }

  private following(epoch: number): boolean {
    return this.role === "follower" && this.epoch === epoch;
  }

  /** {@link FollowedPartition.applyFetch}. */
  async applyFetch(epoch: number, r: ReplicaFetchPartitionResult__Output): Promise<void> {
    if (!this.following(epoch)) return;
    if (r.divergingEpoch) {
      const divergence = {
        epoch: r.divergingEpoch.epoch,
        endOffset: Number(r.divergingEpoch.endOffset),
      };
      await this.truncateDiverged(epoch, divergence);
      return;
    }
    if (r.records.length > 0) await this.log.appendAsFollower(r.records);
    if (!this.following(epoch)) return;
    const leaderLogStart = Number(r.logStartOffset);
    const hw = Math.min(Number(r.highWatermark), this.log.logEndOffset);
    if (hw > this.log.highWatermark) this.log.setHighWatermark(hw);
    if (leaderLogStart > this.log.logStartOffset && leaderLogStart <= this.log.highWatermark) {
      await this.log.deleteRecordsBefore(leaderLogStart);
    }
    this.wake();
  }

  private async truncateDiverged(epoch: number, divergence: Divergence): Promise<void> {
    const own = this.log.endOffsetForEpoch(divergence.epoch);
    const t = truncationOffset(divergence, own, this.log.logEndOffset);
    if (!this.following(epoch)) return;
    this.logger.info("truncating by leader epoch", {
      leaderEpoch: epoch,
      divergingEpoch: divergence.epoch,
      leaderEndOffset: divergence.endOffset,
      truncateTo: t.offset,
      logEndOffset: this.log.logEndOffset,
      complete: t.complete,
    });
    await this.log.truncateTo(t.offset);
    this.ctx.events?.truncation?.(this.topic, this.partition);
  }

  /** {@link FollowedPartition.resetToLeader}. */
  async resetToLeader(epoch: number, leaderLogStart: number, leaderLogEnd: number): Promise<void> {
    if (!this.following(epoch)) return;
    const leo = this.log.logEndOffset;
    assert(leaderLogStart <= leaderLogEnd, "leader log start <= log end");
    if (leo > leaderLogEnd) {
      this.logger.warn("follower ahead of the leader's log end: truncating", { leo, leaderLogEnd });
      await this.log.truncateTo(leaderLogEnd);
    } else {
      this.logger.warn("follower below the leader's log start: starting over there", {
        leo,
        leaderLogStart,
      });
      await this.log.truncateFullyAndStartAt(leaderLogStart);
    }
    this.ctx.events?.truncation?.(this.topic, this.partition);
  }

  // ---- readers ----

  /**
   * Resolves when data may be readable past `offset` (below the high watermark, or for
   * `bound` "logEnd" below the log end), on `signal`, or after `timeoutMs`.
   */
  waitForData(
    offset: number,
    timeoutMs: number,
    signal?: AbortSignal,
    bound: WaitBound = "highWatermark",
  ): Promise<void> {
    const end = bound === "logEnd" ? this.log.logEndOffset : this.log.highWatermark;
    if (end > offset || timeoutMs <= 0 || signal?.aborted) return Promise.resolve();
    // Past the cap a reader is not woken by appends, only by a short timer: bounded memory,
    // and still no busy loop for a subscription that finds nothing new.
    const parked = this.waiters.size < DATA_WAITERS_MAX;
    const waitMs = parked ? timeoutMs : Math.min(timeoutMs, DATA_WAITERS_FULL_POLL_MS);
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      signal?.addEventListener("abort", done, { once: true });
      if (parked) this.waiters.add(done);
    });
  }

  /** Wakes every parked reader. */
  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private get name(): string {
    return `${this.topic}-${this.partition}`;
  }
}

/**
 * A partition hosted by this broker: its log plus its replication state (leader or follower,
 * leader epoch, ISR). The high watermark is the smallest log end offset among the in-sync
 * replicas; followers report theirs when they fetch (replication), so a partition whose ISR is
 * this broker alone commits as soon as it appends.
 *
 *   follower ──becomeLeader(epoch)──▶ leader ──becomeFollower(epoch)──▶ follower
 *
 * Readers waiting for data (long-poll fetches, subscriptions) park on {@link waitForData} and are
 * woken whenever the high watermark or the log end moves.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { AppendResult, PartitionLog } from "./log/partition-log.js";

/** Parked readers per partition at most (each holds a timer and a closure). */
export const DATA_WAITERS_MAX = 10_000;
/** How long a reader beyond {@link DATA_WAITERS_MAX} waits before it reads again, ms. */
export const DATA_WAITERS_FULL_POLL_MS = 100;

export class Partition {
  private leader = false;
  private epoch = -1;
  private isr: readonly number[] = [];
  private readonly followerEndOffsets = new Map<number, number>();
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly log: PartitionLog,
    private readonly brokerId: number,
  ) {}

  /** Whether this broker leads the partition. */
  get isLeader(): boolean {
    return this.leader;
  }

  /** The leader epoch this broker knows. */
  get leaderEpoch(): number {
    return this.epoch;
  }

  /** The in-sync replicas this broker knows. */
  get inSyncReplicas(): readonly number[] {
    return this.isr;
  }

  /** Takes over as leader in `epoch` with the given ISR. */
  becomeLeader(epoch: number, isr: readonly number[]): void {
    this.leader = true;
    this.epoch = epoch;
    this.isr = isr;
    for (const id of [...this.followerEndOffsets.keys()])
      if (!isr.includes(id)) this.followerEndOffsets.delete(id);
    this.maybeAdvanceHighWatermark();
  }

  /** Steps down (or stays) a follower in `epoch`. */
  becomeFollower(epoch: number, isr: readonly number[]): void {
    this.leader = false;
    this.epoch = epoch;
    this.isr = isr;
    this.followerEndOffsets.clear();
    this.wake();
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
    if (!this.leader) {
      throw new SamsaError(
        ErrorCode.NOT_LEADER,
        `broker ${this.brokerId} does not lead ${this.topic}-${this.partition}`,
      );
    }
  }

  /** Appends as leader, stamping the current epoch; advances the high watermark if it can. */
  async appendAsLeader(
    records: Buffer,
    minInsyncReplicas: number,
    requireIsr: boolean,
  ): Promise<AppendResult> {
    this.requireLeader();
    if (requireIsr && this.isr.length < minInsyncReplicas) {
      throw new SamsaError(
        ErrorCode.NOT_ENOUGH_REPLICAS,
        `ISR of ${this.topic}-${this.partition} has ${this.isr.length} replicas, min.insync.replicas is ${minInsyncReplicas}`,
      );
    }
    const result = await this.log.append(records, { leaderEpoch: this.epoch });
    this.maybeAdvanceHighWatermark();
    return result;
  }

  /** Records a follower's log end offset (from its fetch) and advances the high watermark. */
  updateFollowerEndOffset(brokerId: number, logEndOffset: number): void {
    this.followerEndOffsets.set(brokerId, logEndOffset);
    this.maybeAdvanceHighWatermark();
  }

  /** HW = min log end offset over the ISR; it never goes backwards while leading. */
  private maybeAdvanceHighWatermark(): void {
    if (!this.leader) return;
    let hw = this.log.logEndOffset;
    for (const id of this.isr) {
      if (id === this.brokerId) continue;
      hw = Math.min(hw, this.followerEndOffsets.get(id) ?? this.log.highWatermark);
    }
    if (hw > this.log.highWatermark) this.log.setHighWatermark(hw);
    this.wake();
  }

  /** Resolves when new data may be readable past `offset`, on `signal`, or after `timeoutMs`. */
  waitForData(offset: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.log.highWatermark > offset || timeoutMs <= 0 || signal?.aborted) {
      return Promise.resolve();
    }
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
}

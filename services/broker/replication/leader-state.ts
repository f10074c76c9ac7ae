/**
 * What a partition leader knows of its followers (Kafka's `Replica` state in `Partition.scala`):
 * each follower's log end offset (the offset of its last fetch), when it was last caught up, and
 * from those the high watermark candidate, the followers that lag (ISR shrink) and the ones that
 * may join the ISR (expand). Pure bookkeeping: the partition decides, the ISR updater writes.
 *
 * "Caught up" follows Kafka exactly: a fetch at or past the leader's log end offset *at the time
 * of the fetch* means the follower was caught up then; a fetch at or past the log end offset of
 * the follower's *previous* fetch means it was caught up at that previous fetch. So a follower
 * that keeps up with a busy leader is never counted as lagging, though it is always a little
 * behind the very latest append.
 */

/** A follower's log end offset before its first fetch in this leadership: unknown. */
export const UNKNOWN_END_OFFSET = -1;

/** One follower as its leader sees it. */
export interface FollowerState {
  /** Its log end offset: the fetch offset of its last fetch; {@link UNKNOWN_END_OFFSET} before. */
  logEndOffset: number;
  /** When it was last caught up with the leader, ms since the epoch. */
  lastCaughtUpTimeMs: number;
  /** When it last fetched, ms since the epoch. */
  lastFetchTimeMs: number;
  /** The leader's log end offset at that fetch. */
  lastFetchLeaderLogEndOffset: number;
  /** Its broker epoch as of its last fetch (a restarted follower has a newer one). */
  brokerEpoch: number;
}

/** The followers of one partition while this broker leads it. */
export class LeaderState {
  private readonly followers = new Map<number, FollowerState>();

  /**
   * @param selfId This broker's id (never a follower).
   * @param replicas The assigned replicas.
   * @param isr The ISR at the start of the leadership: its followers start as caught up now,
   *   so that a new leader does not shrink them before they had a chance to fetch (Kafka resets
   *   `lastCaughtUpTimeMs` the same way).
   */
  constructor(
    private readonly selfId: number,
    replicas: readonly number[],
    isr: readonly number[],
    nowMs: number,
  ) {
    for (const id of replicas) {
      if (id === selfId) continue;
      this.followers.set(id, {
        logEndOffset: UNKNOWN_END_OFFSET,
        lastCaughtUpTimeMs: isr.includes(id) ? nowMs : 0,
        lastFetchTimeMs: 0,
        lastFetchLeaderLogEndOffset: UNKNOWN_END_OFFSET,
        brokerEpoch: -1,
      });
    }
  }

  /** The follower's state; undefined for a broker that is not an assigned follower. */
  follower(id: number): Readonly<FollowerState> | undefined {
    return this.followers.get(id);
  }

  /** Every follower id with its state. */
  entries(): IterableIterator<[number, Readonly<FollowerState>]> {
    return this.followers.entries();
  }

  /**
   * Records a fetch of follower `id` at `fetchOffset` while the leader's log ended at
   * `leaderLogEndOffset`. Returns false when `id` is not an assigned follower.
   */
  recordFetch(
    id: number,
    fetchOffset: number,
    leaderLogEndOffset: number,
    brokerEpoch: number,
    nowMs: number,
  ): boolean {
    const f = this.followers.get(id);
    if (f === undefined) return false;
    if (fetchOffset >= leaderLogEndOffset) {
      f.lastCaughtUpTimeMs = Math.max(f.lastCaughtUpTimeMs, nowMs);
    } else if (fetchOffset >= f.lastFetchLeaderLogEndOffset && f.lastFetchLeaderLogEndOffset >= 0) {
      f.lastCaughtUpTimeMs = Math.max(f.lastCaughtUpTimeMs, f.lastFetchTimeMs);
    }
    f.logEndOffset = fetchOffset;
    f.lastFetchLeaderLogEndOffset = leaderLogEndOffset;
    f.lastFetchTimeMs = nowMs;
    f.brokerEpoch = brokerEpoch;
    return true;
  }

  /**
   * The high watermark the ISR allows: the smallest log end offset among `isr` (the leader's
   * own is `leaderLogEndOffset`). A follower that has not fetched yet in this leadership holds it
   * at `currentHighWatermark` (it may have less; it has at least what was committed).
   */
  highWatermarkCandidate(
    isr: readonly number[],
    leaderLogEndOffset: number,
    currentHighWatermark: number,
  ): number {
    let hw = leaderLogEndOffset;
    for (const id of isr) {
      if (id === this.selfId) continue;
      const end = this.followers.get(id)?.logEndOffset ?? UNKNOWN_END_OFFSET;
      hw = Math.min(hw, end === UNKNOWN_END_OFFSET ? currentHighWatermark : end);
    }
    return hw;
  }

  /** Followers in `isr` not caught up for longer than `lagTimeMsMax` (to shrink out of it). */
  laggingReplicas(isr: readonly number[], nowMs: number, lagTimeMsMax: number): number[] {
    return isr.filter((id) => {
      if (id === this.selfId) return false;
      const f = this.followers.get(id);
      return f === undefined || nowMs - f.lastCaughtUpTimeMs > lagTimeMsMax;
    });
  }

  /**
   * Whether follower `id`, outside the ISR, may join it: its log reaches the high watermark
   * and the start of the current leader epoch (Kafka's `isFollowerInSync`: a follower that has
   * not yet fetched anything of this epoch could still hold a diverging tail).
   */
  canJoinIsr(id: number, highWatermark: number, epochStartOffset: number): boolean {
    const f = this.followers.get(id);
    if (f === undefined || f.logEndOffset === UNKNOWN_END_OFFSET) return false;
    return f.logEndOffset >= highWatermark && f.logEndOffset >= epochStartOffset;
  }
}

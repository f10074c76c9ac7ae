/**
 * Where a follower's log and its leader's part, by leader epoch (KIP-101, KIP-279, KIP-320),
 * never by the follower's own high watermark (which may be behind what was committed, and
 * truncating to it loses committed records once the leader fails too: KIP-101's first case).
 *
 * Leader side ({@link divergingEpoch}): given the follower's fetch offset and the epoch of its
 * last batch, the leader looks that epoch up in its own epoch cache. If the leader's log has a
 * smaller epoch there (the follower wrote batches in an epoch the leader never saw) or the epoch
 * ends earlier on the leader than the follower's log does, the logs diverge at that end offset.
 *
 * Follower side ({@link truncationOffset}): given the leader's answer (epoch E ending at O), the
 * follower looks E up in its own cache. When it has E too, the logs agree up to min(O, its own
 * end of E): truncate there, done. When it does not (its largest epoch ≤ E is smaller), it
 * truncates to its own end of that smaller epoch and asks again with it (KIP-279: two
 * rounds may be needed when leaders changed more than once while it was away).
 */
import type { EpochEndOffset } from "../log/leader-epoch-cache.js";
import { UNDEFINED_EPOCH } from "../log/leader-epoch-cache.js";

/** A leader's answer that a follower's log diverged: where its epoch `epoch` ends. */
export interface Divergence {
  readonly epoch: number;
  readonly endOffset: number;
}

/**
 * Leader side: the divergence of a follower at `fetchOffset` whose last batch has epoch
 * `lastFetchedEpoch`, given the leader's own answer for that epoch (`leaderEnd =
 * endOffsetForEpoch(lastFetchedEpoch)`); undefined when the logs agree up to `fetchOffset`.
 * A follower with an empty log (`lastFetchedEpoch` −1) never diverges.
 */
export function divergingEpoch(
  fetchOffset: number,
  lastFetchedEpoch: number,
  leaderEnd: EpochEndOffset,
): Divergence | undefined {
  if (lastFetchedEpoch === UNDEFINED_EPOCH) return undefined;
  if (leaderEnd.epoch < lastFetchedEpoch || leaderEnd.endOffset < fetchOffset) {
    return { epoch: leaderEnd.epoch, endOffset: leaderEnd.endOffset };
  }
  return undefined;
}

/** What a follower does with a divergence. */
export interface Truncation {
  /** Truncate the log to this offset (exclusive end). */
  readonly offset: number;
  /** False: fetch again with the new last epoch; the leader may answer another divergence. */
  readonly complete: boolean;
}

/**
 * Follower side: where to truncate, given the leader's divergence, the follower's own answer
 * for the leader's epoch (`ownEnd = endOffsetForEpoch(divergence.epoch)`) and its log end offset.
 * A leader without any epoch ≤ the follower's (epoch −1) has nothing in common with it: the
 * follower truncates to the leader's end offset, which is then the leader's log start.
 */
export function truncationOffset(
  divergence: Divergence,
  ownEnd: EpochEndOffset,
  logEndOffset: number,
): Truncation {
  if (divergence.epoch === UNDEFINED_EPOCH || ownEnd.epoch === UNDEFINED_EPOCH) {
    return { offset: Math.max(0, Math.min(divergence.endOffset, logEndOffset)), complete: true };
  }
  if (ownEnd.epoch !== divergence.epoch) {
    return { offset: Math.min(ownEnd.endOffset, logEndOffset), complete: false };
  }
  return { offset: Math.min(divergence.endOffset, ownEnd.endOffset, logEndOffset), complete: true };
}

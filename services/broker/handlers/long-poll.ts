/**
 * What the consumer Fetch and the follower ReplicaFetch share: reading the asked partitions in
 * request order within a byte budget, and the long poll around it — answer at once when
 * `min_bytes` are there or a partition must be answered now (an error, a divergence), else park
 * on the partitions' data waiters (no polling loop) until one moves, the wait ends or the caller
 * goes away, and read again.
 */
import {
  FETCH_BYTES_MAX_DEFAULT,
  FETCH_PARTITION_BYTES_MAX_DEFAULT,
  FETCH_WAIT_MS_MAX,
} from "../../shared/protocol-limits.js";
import { limit } from "../../shared/request-parsing.js";
import type { Partition, WaitBound } from "../partition.js";

/** One partition's read, as the long poll sees it. */
export interface BudgetedRead {
  /** Record bytes read. */
  readonly bytes: number;
  /** Answer at once (an error or a divergence), whatever the bytes. */
  readonly answerNow: boolean;
  /** The partition to wait on and the offset read from (absent when it failed). */
  readonly wait?: { readonly part: Partition; readonly offset: number };
  /** Drops the bytes read (the budget was spent before this partition). */
  dropBytes(): void;
}

/** The byte limits and wait of one fetch request. */
export interface PollLimits {
  /** `max_bytes` of the request (0 = the default). */
  readonly maxBytes: number;
  /** `min_bytes` (at least 1 is waited for). */
  readonly minBytes: number;
  /** `max_wait_ms`, capped at {@link FETCH_WAIT_MS_MAX}. */
  readonly maxWaitMs: number;
  /** Which log end the waits are on: consumers the high watermark, followers the log end. */
  readonly bound: WaitBound;
}

/**
 * Reads `queries` in order within the total budget (`max_bytes`, capped at
 * {@link FETCH_BYTES_MAX_DEFAULT}) and each partition's own (`partition_max_bytes`). Once the
 * budget is spent the rest get no bytes, but still their offsets and errors.
 */
async function readWithinBudget<Q extends { partitionMaxBytes: number }, R extends BudgetedRead>(
  queries: readonly Q[],
  maxBytes: number,
  read: (q: Q, maxBytes: number) => Promise<R>,
): Promise<R[]> {
  let budget = limit(maxBytes, FETCH_BYTES_MAX_DEFAULT, 1, FETCH_BYTES_MAX_DEFAULT);
  const out: R[] = [];
  for (const q of queries) {
    const partMax = limit(
      q.partitionMaxBytes,
      FETCH_PARTITION_BYTES_MAX_DEFAULT,
      1,
      FETCH_BYTES_MAX_DEFAULT,
    );
    const r = await read(q, budget > 0 ? Math.min(partMax, budget) : 0);
    if (budget <= 0) r.dropBytes();
    else budget -= r.bytes;
    out.push(r);
  }
  return out;
}

/** Reads, and long-polls when there is not enough to answer yet; resolves with the last reads. */
export async function longPoll<Q extends { partitionMaxBytes: number }, R extends BudgetedRead>(
  queries: readonly Q[],
  limits: PollLimits,
  read: (q: Q, maxBytes: number) => Promise<R>,
  callSignal: AbortSignal,
): Promise<R[]> {
  const minBytes = Math.max(limits.minBytes, 1);
  const deadline = Date.now() + Math.min(Math.max(limits.maxWaitMs, 0), FETCH_WAIT_MS_MAX);
  for (;;) {
    const reads = await readWithinBudget(queries, limits.maxBytes, read);
    const bytes = reads.reduce((n, r) => n + r.bytes, 0);
    const waitMs = deadline - Date.now();
    if (bytes >= minBytes || reads.some((r) => r.answerNow) || waitMs <= 0 || callSignal.aborted) {
      return reads;
    }
    // Park until any partition moves past what was read; then release the other partitions'
    // waiters at once rather than at their timeout.
    const woken = new AbortController();
    const signal = AbortSignal.any([callSignal, woken.signal]);
    await Promise.race(
      reads.map((r) => r.wait!.part.waitForData(r.wait!.offset, waitMs, signal, limits.bound)),
    );
    woken.abort();
  }
}

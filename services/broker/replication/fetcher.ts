/**
 * One replica fetcher per (this follower broker, leader broker) pair (Kafka's
 * `ReplicaFetcherThread`): a loop that long-polls the leader with one ReplicaFetch carrying every
 * partition this broker follows there, hands each partition's answer to the partition (append,
 * truncate on divergence, high watermark), and sends the next fetch from the new log end. Only
 * one fetch is in flight, so a partition's answers are applied in order. A partition whose answer
 * is an error is held back for the backoff and fetched again (its leader may have changed: the
 * replica manager then moves it to another fetcher); a failed call backs off every partition.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { ReplicaFetchPartitionResult__Output } from "../../shared/generated/samsa/internal/v1/ReplicaFetchPartitionResult.js";
import { unary } from "../../shared/grpc/client.js";
import { fromProtoErrorCode } from "../../shared/grpc/errors.js";
import type { ReplicationServiceClient } from "../../shared/grpc/proto.js";
import type { Logger } from "../../shared/logger.js";

/** A fetch call's deadline beyond its long-poll wait, ms. */
export const REPLICA_FETCH_CALL_MARGIN_MS = 5_000;
/**
 * Pause after UNKNOWN_LEADER_EPOCH, ms: the leader has not yet applied the epoch this follower
 * already knows (both learn it from the same etcd watch), so it will in a moment; waiting the full
 * `replica.fetch.backoff.ms` there would hold the high watermark (and every acks=all write) after
 * each leader change.
 */
export const REPLICA_FETCH_UNKNOWN_EPOCH_BACKOFF_MS = 20;
/** Partitions one fetcher carries at most (the request limit of the protocol). */
export const FETCHER_PARTITIONS_MAX = 10_000;

/** The fetcher's settings (broker config `replica.fetch.*`). */
export interface FetcherSettings {
  /** `replica.fetch.wait.max.ms`: the long-poll wait. */
  readonly fetchWaitMsMax: number;
  /** `replica.fetch.max.bytes`: bytes per partition per fetch. */
  readonly fetchPartitionBytesMax: number;
  /** `replica.fetch.response.max.bytes`: bytes per fetch. */
  readonly fetchResponseBytesMax: number;
  /** `replica.fetch.backoff.ms`: pause after an error. */
  readonly fetchBackoffMs: number;
}

/** The follower side of a partition, as a fetcher drives it. */
export interface FollowedPartition {
  readonly topic: string;
  readonly partition: number;
  /** The epoch this broker follows the partition's leader in. */
  readonly leaderEpoch: number;
  /** The next fetch's offset (the log end) and the epoch of the last batch held. */
  fetchPosition(): { fetchOffset: number; lastFetchedEpoch: number };
  /**
   * Applies the leader's answer, if the partition still follows in `epoch` (else ignores it).
   * Throws a SamsaError when the answer cannot be applied (e.g. a storage error).
   */
  applyFetch(epoch: number, result: ReplicaFetchPartitionResult__Output): Promise<void>;
  /** Handles OFFSET_OUT_OF_RANGE: restart from the leader's log (start or end). */
  resetToLeader(
    epoch: number,
    leaderLogStartOffset: number,
    leaderLogEndOffset: number,
  ): Promise<void>;
}

interface Entry {
  readonly part: FollowedPartition;
  readonly epoch: number;
  /** Not fetched before this time, ms since the epoch (error backoff). */
  delayedUntilMs: number;
}

/** What a fetcher needs from the broker. */
export interface FetcherOptions {
  readonly brokerId: number;
  /** This broker's current broker epoch (its registration's). */
  readonly brokerEpoch: () => number;
  readonly leaderId: number;
  readonly client: ReplicationServiceClient;
  readonly settings: FetcherSettings;
  readonly logger: Logger;
  /** Called after each answer applied, with the partitions' count and the bytes received. */
  readonly onFetched?: (bytes: number) => void;
}

const key = (topic: string, partition: number) => `${topic}\u0000${partition}`;

export class ReplicaFetcher {
  private readonly entries = new Map<string, Entry>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  /** Aborts the in-flight long poll (a partition joined: fetch it without waiting the poll out). */
  private poll = new AbortController();
  /** Wakes the loop when it has nothing to fetch. */
  private wakeIdle: (() => void) | undefined;
  private readonly logger: Logger;
  private failures = 0;

  constructor(private readonly options: FetcherOptions) {
    this.logger = options.logger.child({ component: "replica-fetcher", leader: options.leaderId });
  }

  /** Partitions fetched here. */
  get size(): number {
    return this.entries.size;
  }

  /** Starts (or keeps) following `part` in its current epoch. */
  add(part: FollowedPartition): void {
    const k = key(part.topic, part.partition);
    const existing = this.entries.get(k);
    if (existing?.part === part && existing.epoch === part.leaderEpoch) return;
    if (this.entries.size >= FETCHER_PARTITIONS_MAX && !existing) {
      throw new SamsaError(
        ErrorCode.UNKNOWN,
        `a fetcher follows ${FETCHER_PARTITIONS_MAX} partitions at most`,
      );
    }
    this.entries.set(k, { part, epoch: part.leaderEpoch, delayedUntilMs: 0 });
    this.poll.abort();
    this.wakeIdle?.();
    this.loop ??= this.run();
  }

  /** Stops following the partition (its answers in flight are dropped). */
  remove(topic: string, partition: number): void {
    this.entries.delete(key(topic, partition));
  }

  /** Stops the loop; resolves once the in-flight fetch ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.poll.abort();
    this.wakeIdle?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const now = Date.now();
      const ready = [...this.entries.values()].filter((e) => e.delayedUntilMs <= now);
      if (ready.length === 0) {
        await this.idle(now);
        continue;
      }
      this.poll = new AbortController();
      try {
        await this.fetchOnce(ready);
        this.failures = 0;
      } catch (err) {
        if (this.stopped) break;
        if (this.poll.signal.aborted) continue; // a partition joined: fetch again at once
        this.failures++;
        if (this.failures === 1 || this.failures % 30 === 0) {
          this.logger.warn("replica fetch failed", {
            error: (err as Error).message,
            failures: this.failures,
          });
        }
        const until = Date.now() + this.options.settings.fetchBackoffMs;
        for (const e of ready) e.delayedUntilMs = until;
      }
    }
  }

  /** Waits until a partition joins or the first backoff ends. */
  private idle(now: number): Promise<void> {
    const next = Math.min(...[...this.entries.values()].map((e) => e.delayedUntilMs));
    const waitMs = Number.isFinite(next) ? Math.max(1, next - now) : undefined;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeIdle = undefined;
        resolve();
      };
      const timer = waitMs === undefined ? undefined : setTimeout(done, waitMs);
      this.wakeIdle = done;
    });
  }

  private async fetchOnce(ready: Entry[]): Promise<void> {
    const { settings } = this.options;
    const partitions = ready.map((e) => {
      const { fetchOffset, lastFetchedEpoch } = e.part.fetchPosition();
      return {
        topic: e.part.topic,
        partition: e.part.partition,
        fetchOffset: String(fetchOffset),
        currentLeaderEpoch: e.epoch,
        lastFetchedEpoch,
        partitionMaxBytes: settings.fetchPartitionBytesMax,
      };
    });
    const response = await unary(
      this.options.client,
      "ReplicaFetch",
      {
        replicaId: this.options.brokerId,
        brokerEpoch: String(this.options.brokerEpoch()),
        maxWaitMs: settings.fetchWaitMsMax,
        minBytes: 1,
        maxBytes: settings.fetchResponseBytesMax,
        partitions,
      },
      {
        deadlineMs: settings.fetchWaitMsMax + REPLICA_FETCH_CALL_MARGIN_MS,
        signal: this.poll.signal,
      },
    );
    let bytes = 0;
    await Promise.all(
      response.partitions.map(async (r) => {
        bytes += r.records.length;
        await this.apply(r);
      }),
    );
    this.options.onFetched?.(bytes);
  }

  /** Applies one partition's answer, if the partition is still fetched here in that epoch. */
  private async apply(r: ReplicaFetchPartitionResult__Output): Promise<void> {
    const entry = this.entries.get(key(r.topic, r.partition));
    if (entry === undefined) return;
    const code = fromProtoErrorCode(r.errorCode);
    try {
      if (code === ErrorCode.NONE) {
        await entry.part.applyFetch(entry.epoch, r);
        return;
      }
      if (code === ErrorCode.OFFSET_OUT_OF_RANGE) {
        await entry.part.resetToLeader(
          entry.epoch,
          Number(r.logStartOffset),
          Number(r.logEndOffset),
        );
        return;
      }
      throw new SamsaError(code, r.errorMessage || ErrorCode[code]);
    } catch (err) {
      // UNKNOWN_LEADER_EPOCH: the leader is about to take the epoch; retried shortly. NOT_LEADER,
      // FENCED_LEADER_EPOCH: the metadata will move the partition; other errors are retried after
      // the backoff.
      const backoffMs =
        err instanceof SamsaError && err.code === ErrorCode.UNKNOWN_LEADER_EPOCH
          ? Math.min(REPLICA_FETCH_UNKNOWN_EPOCH_BACKOFF_MS, this.options.settings.fetchBackoffMs)
          : this.options.settings.fetchBackoffMs;
      entry.delayedUntilMs = Date.now() + backoffMs;
      const level = err instanceof SamsaError && err.retriable ? "debug" : "warn";
      this.logger[level]("replica fetch of a partition failed", {
        topic: r.topic,
        partition: r.partition,
        error: (err as Error).message,
      });
    }
  }
}

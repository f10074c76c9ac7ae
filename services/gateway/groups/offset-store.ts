/**
 * Committed offsets in etcd (`offsets/<group>/<topic>/<p>`, docs/groups.md#offsets). Only a
 * group's coordinator writes them, and each CommitOffsets request is one etcd txn fenced by the
 * coordinator's ownership epoch ({@link GroupStore.fenced}). Commits of one group are rate
 * bounded by a token bucket ({@link CommitRateLimiter}) so that a busy group cannot make etcd
 * the bottleneck of the cluster: a commit over the rate waits its turn up to
 * {@link COMMIT_WAIT_MS_MAX}, and is refused with THROTTLING_QUOTA_EXCEEDED (retriable) after.
 */
import type { Etcd3 } from "etcd3";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { decodeOffset, encodeOffset, type OffsetRecord } from "../../shared/etcd/group-records.js";
import { type EtcdKeys, revisionNumber, toEtcdKeyValue } from "../../shared/etcd/keys.js";
import type { Logger } from "../../shared/logger.js";
import { sleep } from "../../shared/retry.js";
import { tpKey } from "./assignment.js";
import { etcdCall, type GroupStore } from "./group-store.js";

/**
 * Commit requests one group may make per second (each is one etcd txn). At 50/s per group, a
 * consumer committing every second can have 50 members per group before it waits; etcd takes a
 * few thousand small txns per second on one SSD, so some dozens of busy groups fit.
 */
export const GROUP_COMMITS_PER_SECOND_MAX = 50;
/** Commits a group may make at once before the rate applies (the bucket's size). */
export const GROUP_COMMIT_BURST_MAX = 50;
/** Longest a commit waits for the rate before THROTTLING_QUOTA_EXCEEDED, ms. */
export const COMMIT_WAIT_MS_MAX = 2_000;
/** Partitions one CommitOffsets request may carry (etcd's txn has a limit of 128 ops by default). */
export const COMMIT_PARTITIONS_MAX = 120;

/** A token bucket: {@link GROUP_COMMITS_PER_SECOND_MAX} per second, bursts of {@link GROUP_COMMIT_BURST_MAX}. */
export class CommitRateLimiter {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly perSecond = GROUP_COMMITS_PER_SECOND_MAX,
    private readonly burst = GROUP_COMMIT_BURST_MAX,
    nowMs = Date.now(),
  ) {
    this.tokens = burst;
    this.lastMs = nowMs;
  }

  /** How long to wait before a commit may go, ms; 0 = now (and the token is taken). */
  reserve(nowMs: number): number {
    this.tokens = Math.min(
      this.burst,
      this.tokens + ((nowMs - this.lastMs) * this.perSecond) / 1000,
    );
    this.lastMs = nowMs;
    this.tokens -= 1;
    if (this.tokens >= 0) return 0;
    return Math.ceil((-this.tokens * 1000) / this.perSecond);
  }

  /** Gives a reserved token back (the commit was refused). */
  refund(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }
}

/** Waits for the rate; throws THROTTLING_QUOTA_EXCEEDED when the wait would be too long. */
export async function awaitCommitTurn(limiter: CommitRateLimiter, group: string): Promise<void> {
  const waitMs = limiter.reserve(Date.now());
  if (waitMs === 0) return;
  if (waitMs > COMMIT_WAIT_MS_MAX) {
    limiter.refund();
    throw new SamsaError(
      ErrorCode.THROTTLING_QUOTA_EXCEEDED,
      `group ${group} commits more than ${GROUP_COMMITS_PER_SECOND_MAX} times per second`,
    );
  }
  await sleep(waitMs);
}

/** One offset to write. */
export interface OffsetWrite {
  readonly topic: string;
  readonly partition: number;
  readonly record: OffsetRecord;
}

export class OffsetStore {
  constructor(
    private readonly etcd: Etcd3,
    private readonly keys: EtcdKeys,
    private readonly store: GroupStore,
    private readonly logger: Logger,
  ) {}

  /** Writes the offsets in one txn fenced by the ownership `epoch`. */
  async commit(group: string, epoch: number, writes: readonly OffsetWrite[]): Promise<void> {
    if (writes.length === 0) return;
    const ops = writes.map((w) =>
      this.etcd.put(this.keys.offset(group, w.topic, w.partition)).value(encodeOffset(w.record)),
    );
    await this.store.fenced(group, epoch, ops);
  }

  /** Every committed offset of a group, by {@link tpKey}. */
  async load(group: string): Promise<Map<string, OffsetRecord>> {
    const prefix = this.keys.offsetsPrefix(group);
    const res = await etcdCall(`read the offsets of group ${group}`, () =>
      this.etcd.getAll().prefix(prefix).exec(),
    );
    const out = new Map<string, OffsetRecord>();
    for (const raw of res.kvs) {
      const kv = toEtcdKeyValue(raw);
      const parsed = this.keys.parse(kv.key);
      if (parsed?.kind !== "offset") continue;
      try {
        out.set(tpKey(parsed.topic, parsed.partition), decodeOffset(kv));
      } catch (err) {
        this.logger.warn("skipping an unreadable committed offset", {
          key: kv.key,
          error: String(err),
        });
      }
    }
    return out;
  }

  /**
   * Deletes every group's offsets of a deleted topic that were written before `revision` (the
   * topic's deletion), so a topic created again under the same name starts without them.
   * Any gateway may run it: deletes are idempotent.
   */
  async deleteTopic(topic: string, revision: number): Promise<number> {
    const res = await this.etcd.getAll().prefix(this.keys.offsetsPrefix()).exec();
    let deleted = 0;
    for (const raw of res.kvs) {
      const kv = toEtcdKeyValue(raw);
      const parsed = this.keys.parse(kv.key);
      if (parsed?.kind !== "offset" || parsed.topic !== topic || kv.modRevision >= revision)
        continue;
      const r = await this.etcd
        .if(kv.key, "Mod", "==", kv.modRevision)
        .then(this.etcd.delete().key(kv.key))
        .commit();
      if (r.succeeded) deleted++;
    }
    return deleted;
  }

  /** The current etcd revision (for {@link deleteTopic} when no event revision is known). */
  async revision(): Promise<number> {
    const res = await this.etcd.get(this.keys.topicsPrefix()).exec();
    return revisionNumber(res.header.revision);
  }
}

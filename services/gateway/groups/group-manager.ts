/**
 * The groups this gateway coordinates: one {@link GroupRuntime} per owned group (its
 * {@link GroupCoordinator}, its ownership epoch, its committed offsets), loaded from etcd when
 * the group is first claimed here. Every operation on a group runs through
 * {@link GroupManager.run}, one at a time per group, and persists the group's record (fenced by
 * the ownership epoch) before its answer goes out, so a new owner never resumes from a state
 * older than what members were told. A timer ticks every group (sessions, deferred
 * assignments); a lost lease drops every runtime.
 */
import { ErrorCode, isSamsaError, SamsaError } from "../../shared/errors.js";
import type { OffsetRecord } from "../../shared/etcd/group-records.js";
import type { VersionedGroupOwner } from "../../shared/etcd/group-records.js";
import type { Logger } from "../../shared/logger.js";
import type { ClusterMetadata } from "../../shared/metadata/cluster-metadata.js";
import { GroupCoordinator, type GroupSettings, type PartitionCounts } from "./coordinator.js";
import type { GroupMetrics } from "./group-metrics.js";
import type { GroupStore } from "./group-store.js";
import { CommitRateLimiter, type OffsetStore } from "./offset-store.js";

/** How often every owned group is ticked (session expiry resolution), ms. */
export const GROUP_TICK_INTERVAL_MS = 200;
/** Longest group id, characters (Kafka has none; etcd keys should stay short). */
export const GROUP_ID_LENGTH_MAX = 255;

/** One owned group. */
export class GroupRuntime {
  /** The tail of this group's operation queue. */
  chain: Promise<unknown> = Promise.resolve();
  persistedVersion: number;
  /** The assignment epoch last seen, to count rebalances. */
  seenAssignmentEpoch: number;
  readonly limiter = new CommitRateLimiter();

  constructor(
    readonly group: string,
    /** The ownership epoch (create revision of the owner key). */
    readonly epoch: number,
    readonly coordinator: GroupCoordinator,
    /** Committed offsets by tpKey. */
    readonly offsets: Map<string, OffsetRecord>,
    /** Whether the group has a state record in etcd. */
    public stored: boolean,
  ) {
    this.persistedVersion = coordinator.version;
    this.seenAssignmentEpoch = coordinator.targetEpoch;
  }
}

/** Where a group is: here, or at another gateway. */
export type Located = { readonly runtime: GroupRuntime } | { readonly owner: VersionedGroupOwner };

/** What the manager needs. */
export interface GroupManagerDeps {
  readonly store: GroupStore;
  readonly offsets: OffsetStore;
  readonly metadata: ClusterMetadata;
  readonly settings: GroupSettings;
  readonly metrics: GroupMetrics;
  readonly logger: Logger;
}

/** Checks a group id: non-empty, at most {@link GROUP_ID_LENGTH_MAX}. */
export function checkGroupId(group: string): void {
  if (typeof group !== "string" || group.length === 0 || group.length > GROUP_ID_LENGTH_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_GROUP_ID,
      `group id must be 1..${GROUP_ID_LENGTH_MAX} characters`,
    );
  }
}

export class GroupManager {
  private readonly runtimes = new Map<string, GroupRuntime>();
  private readonly loading = new Map<string, Promise<Located>>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(readonly deps: GroupManagerDeps) {}

  /** Starts the tick timer and the topic-deletion cleanup. */
  start(): void {
    this.deps.store.onLost(() => this.runtimes.clear());
    this.timer = setInterval(() => this.tickAll(), GROUP_TICK_INTERVAL_MS);
    this.timer.unref();
    this.unsubscribe = this.deps.metadata.onChange((change) => {
      if (change.kind === "topic" && change.event.type === "delete") {
        const topic = decodeURIComponent(
          change.event.key.slice(change.event.key.lastIndexOf("/") + 1),
        );
        void this.topicDeleted(topic, change.event.revision);
      }
    });
  }

  /** Stops ticking; the runtimes are dropped (the lease revocation frees the groups). */
  stop(): void {
    clearInterval(this.timer);
    this.unsubscribe?.();
    this.runtimes.clear();
  }

  /** The runtimes of the groups owned here. */
  owned(): GroupRuntime[] {
    return [...this.runtimes.values()];
  }

  /** The partition counts as the metadata has them. */
  readonly counts: PartitionCounts = (topic) => this.deps.metadata.topic(topic)?.partitions;

  /**
   * The runtime of `group` (claiming and loading it when it has no owner), or its owner.
   * @throws SamsaError COORDINATOR_NOT_AVAILABLE when etcd cannot be reached.
   */
  locate(group: string): Promise<Located> {
    const runtime = this.runtimes.get(group);
    if (runtime !== undefined) return Promise.resolve({ runtime });
    let pending = this.loading.get(group);
    if (pending === undefined) {
      pending = this.load(group).finally(() => this.loading.delete(group));
      this.loading.set(group, pending);
    }
    return pending;
  }

  private async load(group: string): Promise<Located> {
    const { store, offsets, settings } = this.deps;
    try {
      const where = await store.locate(group);
      if (!where.mine) return { owner: where.owner };
      const [record, committed] = await Promise.all([store.loadState(group), offsets.load(group)]);
      const coordinator = new GroupCoordinator(group, settings, Date.now(), record);
      const runtime = new GroupRuntime(
        group,
        where.epoch,
        coordinator,
        committed,
        record !== undefined,
      );
      this.runtimes.set(group, runtime);
      this.deps.logger.info("coordinating group", {
        group,
        ownershipEpoch: where.epoch,
        members: coordinator.memberCount,
      });
      return { runtime };
    } catch (err) {
      if (isSamsaError(err)) throw err;
      throw new SamsaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, `cannot load group ${group}`, {
        cause: err,
      });
    }
  }

  /**
   * Runs `fn` on the group's coordinator after every earlier operation on it, then persists the
   * record if `fn` changed it.
   * @throws SamsaError NOT_COORDINATOR when the group was lost meanwhile (or its write was fenced).
   */
  run<T>(runtime: GroupRuntime, fn: (c: GroupCoordinator) => T | Promise<T>): Promise<T> {
    const next = runtime.chain.then(async () => {
      if (this.runtimes.get(runtime.group) !== runtime) throw this.lost(runtime.group);
      const result = await fn(runtime.coordinator);
      await this.persist(runtime);
      return result;
    });
    runtime.chain = next.catch(() => undefined);
    return next;
  }

  /** Drops a runtime (its ownership is gone, or the group was deleted). */
  drop(runtime: GroupRuntime): void {
    if (this.runtimes.get(runtime.group) === runtime) this.runtimes.delete(runtime.group);
  }

  private async persist(runtime: GroupRuntime): Promise<void> {
    const c = runtime.coordinator;
    if (c.targetEpoch !== runtime.seenAssignmentEpoch) {
      runtime.seenAssignmentEpoch = c.targetEpoch;
      this.deps.metrics.rebalance(runtime.group);
    }
    if (c.version === runtime.persistedVersion) return;
    const version = c.version;
    try {
      await this.deps.store.saveState(runtime.group, runtime.epoch, c.record());
      runtime.persistedVersion = version;
      runtime.stored = true;
    } catch (err) {
      // Fenced (another gateway owns the group now) or etcd failed: what this runtime holds may
      // be newer than etcd, so it is dropped; the group is loaded again from etcd next time.
      this.drop(runtime);
      if (isSamsaError(err, ErrorCode.NOT_COORDINATOR)) throw err;
      throw new SamsaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "cannot persist the group", {
        cause: err,
      });
    }
  }

  private lost(group: string): SamsaError {
    return new SamsaError(
      ErrorCode.NOT_COORDINATOR,
      `this gateway no longer coordinates group ${group}`,
    );
  }

  private tickAll(): void {
    const now = Date.now();
    for (const runtime of this.runtimes.values()) {
      this.run(runtime, (c) => c.tick(now, this.counts)).catch((err: unknown) => {
        this.deps.logger.warn("group tick failed", { group: runtime.group, error: String(err) });
      });
    }
  }

  /** Removes a deleted topic's offsets (every group's, in etcd and in the owned runtimes). */
  private async topicDeleted(topic: string, revision: number): Promise<void> {
    for (const runtime of this.runtimes.values()) {
      for (const key of [...runtime.offsets.keys()]) {
        if (key.slice(0, key.lastIndexOf(":")) === topic) runtime.offsets.delete(key);
      }
    }
    try {
      const deleted = await this.deps.offsets.deleteTopic(topic, revision);
      if (deleted > 0)
        this.deps.logger.info("deleted the offsets of a deleted topic", { topic, deleted });
    } catch (err) {
      this.deps.logger.warn("cannot delete a deleted topic's offsets", {
        topic,
        error: String(err),
      });
    }
  }
}

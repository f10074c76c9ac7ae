/**
 * Group ownership and group state in etcd (docs/groups.md#ownership).
 *
 * A gateway holds one lease (TTL `gateway.session.timeout.ms`). The first gateway asked about a
 * group that has no owner claims it: a create-only txn puts `groups/<group>/owner` (its id and
 * address) with that lease. The key's create revision is the ownership's **epoch**; every write
 * of the owner (group state, offsets, deletes) goes through {@link GroupStore.fenced}, whose txn
 * also compares that create revision, so a gateway whose lease expired (it was paused, or cut
 * off from etcd) cannot write once another has claimed the group. When a gateway dies its lease
 * expires and its owner keys vanish; the next request for each group, at any gateway, claims it
 * there, and the new owner resumes from `groups/<group>/state`.
 *
 *     no owner ──claim (create-only txn)──▶ owned by G ──G's lease expires / G stops──▶ no owner
 *
 * When this gateway's lease is lost it drops every group ({@link GroupStore.onLost}) and grants
 * a new lease: its groups are claimed again (by it or another gateway) on their next request.
 *
 * Every etcd call here that fails (etcd unreachable, no quorum, its deadline passed) throws
 * COORDINATOR_NOT_AVAILABLE (retriable), never the etcd client's own error, which would reach
 * the client as an unexpected server error ({@link etcdCall}).
 */
import type { Etcd3, IOperation, IRequestOp, Lease } from "etcd3";
import { ErrorCode, isSamsaError, SamsaError } from "../../shared/errors.js";
import {
  decodeGroupOwner,
  encodeGroupOwner,
  type GroupOwnerRecord,
  type VersionedGroupOwner,
} from "../../shared/etcd/group-records.js";
import { type EtcdKeys, revisionNumber, toEtcdKeyValue } from "../../shared/etcd/keys.js";
import type { Logger } from "../../shared/logger.js";
import type { GroupRecord } from "./coordinator.js";

/** Pause before granting a new lease after one was lost or a grant failed, ms. */
export const LEASE_REGRANT_BACKOFF_MS = 500;

/** Where a group is coordinated. */
export type GroupLocation =
  | { readonly mine: true; readonly epoch: number }
  | { readonly mine: false; readonly owner: VersionedGroupOwner };

/** What a {@link GroupStore} needs. */
export interface GroupStoreOptions {
  readonly etcd: Etcd3;
  readonly keys: EtcdKeys;
  /** This gateway, as the owner key announces it (its address is known once it listens). */
  readonly self: () => GroupOwnerRecord;
  /** Lease TTL, ms (rounded up to whole seconds by etcd). */
  readonly ttlMs: number;
  readonly logger: Logger;
}

type TxnOp = IRequestOp | IOperation;

export class GroupStore {
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private granting: Promise<string> | undefined;
  private stopped = false;
  private readonly lostListeners = new Set<() => void>();

  constructor(private readonly o: GroupStoreOptions) {}

  /** Grants the lease. */
  async start(): Promise<void> {
    await this.currentLease();
  }

  /** Calls `listener` when the lease is lost: every ownership of this gateway is gone. */
  onLost(listener: () => void): void {
    this.lostListeners.add(listener);
  }

  /** Revokes the lease: this gateway's groups are free for others at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    await lease?.revoke().catch((err: unknown) => {
      this.o.logger.warn("cannot revoke the group lease; it expires by its TTL", {
        error: String(err),
      });
    });
  }

  /**
   * Where `group` is coordinated: claims it when it has no owner.
   * @throws SamsaError COORDINATOR_NOT_AVAILABLE when etcd or the lease is not available.
   */
  async locate(group: string): Promise<GroupLocation> {
    const leaseId = await this.currentLease();
    const { etcd, keys, self } = this.o;
    const key = keys.groupOwner(group);
    const res = await etcdCall(`claim group ${group}`, () =>
      etcd
        .if(key, "Create", "==", 0)
        .then(etcd.put(key).value(encodeGroupOwner(self())).lease(leaseId))
        .else(etcd.get(key))
        .commit(),
    );
    if (res.succeeded) return { mine: true, epoch: revisionNumber(res.header.revision) };
    const kv = res.responses[0]?.response_range?.kvs[0];
    if (kv === undefined) return this.locate(group); // the owner vanished meanwhile: claim again
    const owner = decodeGroupOwner(toEtcdKeyValue(kv));
    if (owner.lease === leaseId) return { mine: true, epoch: owner.epoch };
    return { mine: false, owner };
  }

  /** The owner of `group` as etcd has it, without claiming. */
  async owner(group: string): Promise<VersionedGroupOwner | undefined> {
    const res = await etcdCall(`read the owner of group ${group}`, () =>
      this.o.etcd.get(this.o.keys.groupOwner(group)).exec(),
    );
    const kv = res.kvs[0];
    return kv === undefined ? undefined : decodeGroupOwner(toEtcdKeyValue(kv));
  }

  /** Reads a group's persisted state. */
  async loadState(group: string): Promise<GroupRecord | undefined> {
    const text = await etcdCall(`read the state of group ${group}`, () =>
      this.o.etcd.get(this.o.keys.groupState(group)).string(),
    );
    if (text === null) return undefined;
    try {
      const record = JSON.parse(text) as GroupRecord;
      if (typeof record.groupEpoch !== "number" || typeof record.members !== "object")
        throw new Error("not a group record");
      return record;
    } catch (err) {
      // A record this gateway cannot read starts the group over: members rejoin.
      this.o.logger.error("dropping an unreadable group state", { group, error: String(err) });
      return undefined;
    }
  }

  /** Writes a group's state, fenced by the ownership epoch. */
  async saveState(group: string, epoch: number, record: GroupRecord): Promise<void> {
    const put = this.o.etcd.put(this.o.keys.groupState(group)).value(JSON.stringify(record));
    await this.fenced(group, epoch, [put]);
  }

  /**
   * Runs `ops` in one txn that holds only while this gateway still owns `group` at `epoch`.
   * @throws SamsaError NOT_COORDINATOR (with the owner's address when there is one) otherwise,
   *   COORDINATOR_NOT_AVAILABLE when etcd failed (the txn may or may not have been applied).
   */
  async fenced(group: string, epoch: number, ops: TxnOp[]): Promise<void> {
    const { etcd, keys } = this.o;
    const key = keys.groupOwner(group);
    const res = await etcdCall(`write group ${group}`, () =>
      etcd
        .if(key, "Create", "==", epoch)
        .then(...ops)
        .else(etcd.get(key))
        .commit(),
    );
    if (res.succeeded) return;
    const kv = res.responses[0]?.response_range?.kvs[0];
    const owner = kv === undefined ? undefined : decodeGroupOwner(toEtcdKeyValue(kv));
    throw notCoordinator(group, owner);
  }

  /** Deletes a group: its state, committed offsets and owner key, in one fenced txn. */
  async deleteGroup(group: string, epoch: number): Promise<void> {
    const { etcd, keys } = this.o;
    await this.fenced(group, epoch, [
      etcd.delete().key(keys.groupState(group)),
      etcd.delete().prefix(keys.offsetsPrefix(group)),
      etcd.delete().key(keys.groupOwner(group)),
    ]);
  }

  /** Every group with a state, an owner or a committed offset in etcd. */
  async listGroupIds(): Promise<string[]> {
    const { etcd, keys } = this.o;
    const ids = new Set<string>();
    const [groups, offsets] = await etcdCall("list the groups", () =>
      Promise.all([
        etcd.getAll().prefix(keys.groupsPrefix()).keys(),
        etcd.getAll().prefix(keys.offsetsPrefix()).keys(),
      ]),
    );
    for (const key of [...groups, ...offsets]) {
      const parsed = keys.parse(key);
      if (parsed !== undefined && "group" in parsed) ids.add(parsed.group);
    }
    return [...ids].sort();
  }

  /** The lease id, granting a new lease if there is none. */
  private currentLease(): Promise<string> {
    if (this.stopped)
      return Promise.reject(
        new SamsaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "the gateway is stopping"),
      );
    if (this.leaseId !== undefined) return Promise.resolve(this.leaseId);
    this.granting ??= this.grant().finally(() => {
      this.granting = undefined;
    });
    return this.granting;
  }

  private async grant(): Promise<string> {
    const ttlSeconds = Math.max(1, Math.ceil(this.o.ttlMs / 1000));
    const lease = this.o.etcd.lease(ttlSeconds);
    lease.on("lost", (err) => this.lost(lease, err));
    try {
      const id = await lease.grant();
      this.lease = lease;
      this.leaseId = id;
      this.o.logger.info("group lease granted", { leaseId: id, ttlSeconds });
      return id;
    } catch (err) {
      lease.release();
      throw new SamsaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "cannot grant the group lease", {
        cause: err,
      });
    }
  }

  private lost(lease: Lease, err: Error): void {
    if (lease !== this.lease) return;
    this.lease = undefined;
    this.leaseId = undefined;
    this.o.logger.warn("group lease lost: dropping every group", { error: err.message });
    for (const listener of this.lostListeners) listener();
  }
}

/**
 * Runs the etcd call(s) `op`; a failure that is not already a SamsaError (the etcd client's
 * errors: unreachable, no quorum, deadline passed, circuit open) becomes COORDINATOR_NOT_AVAILABLE
 * naming `what` and the cause.
 */
export async function etcdCall<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (isSamsaError(err)) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new SamsaError(
      ErrorCode.COORDINATOR_NOT_AVAILABLE,
      `cannot ${what}: etcd is not available (${why})`,
      { cause: err },
    );
  }
}

/** NOT_COORDINATOR naming the owner, if any. */
export function notCoordinator(group: string, owner: GroupOwnerRecord | undefined): SamsaError {
  return new SamsaError(
    ErrorCode.NOT_COORDINATOR,
    owner === undefined
      ? `this gateway no longer coordinates group ${group}`
      : `group ${group} is coordinated by ${owner.gatewayId} at ${owner.address}`,
    { metadata: owner === undefined ? {} : { "samsa-coordinator": owner.address } },
  );
}

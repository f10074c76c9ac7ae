/**
 * Compare-and-swap of `partitions/<topic>/<p>` (docs/architecture.md#etcd-keys,
 * docs/replication.md). Two writers touch a partition state: the controller (leader, leader
 * epoch; through its fence) and the partition leader (ISR only). Each reads the state with its
 * `mod_revision`, decides, and writes back only if the key is still at that revision and holds
 * the leader epoch the writer acts under.
 *
 * etcd compares revisions, not JSON fields: the txn compares `mod_revision`, and since an
 * unchanged `mod_revision` means an unchanged value, checking the leader epoch of the value
 * that was read (before sending) is the same as checking the stored one.
 *
 * A lost race is a normal outcome, returned (with the current state, read in the same txn so
 * the caller can retry without another round trip), never thrown. Only a stale controller's
 * write throws: SamsaError(NOT_CONTROLLER), from the fence.
 */
import type { Etcd3, ITxnResponse } from "etcd3";
import { assert } from "../errors.js";
import { type ControllerLeadership, fencedTxn } from "./election.js";
import {
  decodePartitionState,
  decodeVersionedPartitionState,
  type EtcdKeys,
  encodePartitionState,
  type PartitionState,
  revisionNumber,
  toEtcdKeyValue,
  type VersionedPartitionState,
} from "./keys.js";

/** Why a CAS lost. */
export type CasLossReason =
  /** The key changed since it was read (or was deleted). */
  | "revision"
  /** The state read carries another leader epoch than the writer acts under (no write sent). */
  | "leader-epoch"
  /** A create found the key already there. */
  | "exists";

/** Outcome of {@link casPartitionState}. */
export type CasResult =
  | { readonly won: true; readonly state: VersionedPartitionState }
  | {
      readonly won: false;
      readonly reason: CasLossReason;
      /** The state now in etcd (undefined if the key is gone). */
      readonly current: VersionedPartitionState | undefined;
    };

/** One compare-and-swap of a partition state. */
export interface PartitionCasRequest {
  topic: string;
  partition: number;
  /** The state as read; undefined to create the key (it must not exist). */
  expected: VersionedPartitionState | undefined;
  /** The leader epoch the writer acts under; must equal `expected`'s. Default: not checked. */
  expectedLeaderEpoch?: number;
  /** The new state. */
  next: PartitionState;
  /** The controller's leadership: the write is also fenced on it (controller writes). */
  fence?: ControllerLeadership;
}

/** Reads a partition state with its revisions; undefined if absent. Throws on garbage. */
export async function readPartitionState(
  client: Etcd3,
  keys: EtcdKeys,
  topic: string,
  partition: number,
): Promise<VersionedPartitionState | undefined> {
  const res = await client.get(keys.partition(topic, partition)).exec();
  const kv = res.kvs[0];
  return kv ? decodeVersionedPartitionState(toEtcdKeyValue(kv)) : undefined;
}

/**
 * Writes `next` if the key is still at `expected.modRevision` (or absent, for a create) and
 * `expected` carries `expectedLeaderEpoch`. See {@link CasResult}.
 */
export async function casPartitionState(
  client: Etcd3,
  keys: EtcdKeys,
  request: PartitionCasRequest,
): Promise<CasResult> {
  const { expected, expectedLeaderEpoch, next, fence } = request;
  const key = keys.partition(request.topic, request.partition);
  const value = encodePartitionState(next);
  // A writer producing an invalid state is a bug, not an operating condition.
  decodePartitionState({
    key,
    value: Buffer.from(value),
    createRevision: 1,
    modRevision: 1,
    lease: "0",
  });
  if (expected) {
    assert(
      next.partitionEpoch > expected.state.partitionEpoch,
      "a new partition state bumps partitionEpoch",
    );
    assert(next.leaderEpoch >= expected.state.leaderEpoch, "leaderEpoch never goes back");
    if (expectedLeaderEpoch !== undefined && expected.state.leaderEpoch !== expectedLeaderEpoch) {
      return { won: false, reason: "leader-epoch", current: expected };
    }
  }
  const compare = expected
    ? ({ column: "Mod", value: expected.modRevision } as const)
    : ({ column: "Create", value: 0 } as const);
  const put = client.put(key).value(value);
  const read = client.get(key);
  let res: Pick<ITxnResponse, "succeeded" | "responses"> & { revision: number };
  if (fence) {
    const r = await fencedTxn(client, fence)
      .and(key, compare.column, "==", compare.value)
      .do(put)
      .orElse(read)
      .commit();
    res = { succeeded: r.succeeded, responses: r.responses, revision: r.revision };
  } else {
    const r = await client
      .if(key, compare.column, "==", compare.value)
      .then(put)
      .else(read)
      .commit();
    res = { ...r, revision: revisionNumber(r.header.revision) };
  }
  if (res.succeeded) {
    const createRevision = expected?.createRevision ?? res.revision;
    return { won: true, state: { state: next, modRevision: res.revision, createRevision } };
  }
  const kv = res.responses[0]?.response_range?.kvs[0];
  const current = kv ? decodeVersionedPartitionState(toEtcdKeyValue(kv)) : undefined;
  return { won: false, reason: expected ? "revision" : "exists", current };
}

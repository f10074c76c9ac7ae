/**
 * The partition leader's ISR writes (docs/replication.md#isr-changes): the new ISR goes to etcd
 * with a compare-and-swap on the partition key's revision **and** the leader epoch the leader
 * acts under, before the leader acts on it. A write that finds another leader or a newer epoch
 * in etcd means this broker is no longer the leader: the caller stops acting as one. A write that
 * lost only to a concurrent change of the same epoch (the controller removing a dead broker)
 * re-reads and re-applies the change, a bounded number of times.
 */
import type { Etcd3 } from "etcd3";
import { casPartitionState, readPartitionState } from "../../shared/etcd/cas.js";
import type { EtcdKeys, PartitionState } from "../../shared/etcd/keys.js";

/** CAS attempts of one ISR change before giving up until the next check. */
export const ISR_CAS_ATTEMPTS_MAX = 5;

/** What an ISR change wants: the new ISR computed from the one in etcd. */
export interface IsrChange {
  readonly topic: string;
  readonly partition: number;
  /** This broker, the leader the change is made by. */
  readonly leaderId: number;
  /** The leader epoch it leads in. */
  readonly leaderEpoch: number;
  /** The new ISR from the current one (in etcd); return it unchanged for "nothing to do". */
  readonly apply: (isr: readonly number[], replicas: readonly number[]) => readonly number[];
}

/** Outcome of {@link updateIsr}. */
export type IsrUpdateOutcome =
  /** etcd now holds `state` (the change was written, or there was nothing to change). */
  | { readonly kind: "written"; readonly state: PartitionState }
  /** etcd names another leader or epoch: this broker no longer leads in `leaderEpoch`. */
  | { readonly kind: "fenced"; readonly state: PartitionState | undefined }
  /** Lost every CAS to concurrent changes of the same epoch; try again later. */
  | { readonly kind: "contended" };

/** Sets equal as ISRs (order aside). */
function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}

/** Writes an ISR change; see {@link IsrUpdateOutcome}. */
export async function updateIsr(
  client: Etcd3,
  keys: EtcdKeys,
  change: IsrChange,
): Promise<IsrUpdateOutcome> {
  const { topic, partition, leaderId, leaderEpoch } = change;
  let current = await readPartitionState(client, keys, topic, partition);
  for (let attempt = 0; attempt < ISR_CAS_ATTEMPTS_MAX; attempt++) {
    if (
      current === undefined ||
      current.state.leader !== leaderId ||
      current.state.leaderEpoch !== leaderEpoch
    ) {
      return { kind: "fenced", state: current?.state };
    }
    const { replicas } = current.state;
    const wanted = change.apply(current.state.isr, replicas);
    // Replica order, and never a broker that is not a replica.
    const isr = replicas.filter((id) => wanted.includes(id));
    if (sameMembers(isr, current.state.isr)) return { kind: "written", state: current.state };
    const next: PartitionState = {
      ...current.state,
      isr,
      partitionEpoch: current.state.partitionEpoch + 1,
    };
    const res = await casPartitionState(client, keys, {
      topic,
      partition,
      expected: current,
      expectedLeaderEpoch: leaderEpoch,
      next,
    });
    if (res.won) return { kind: "written", state: next };
    current = res.current;
  }
  return { kind: "contended" };
}

/**
 * Replica placement (the seed's algorithm): replica j of partition i goes to broker
 * (start + i + j) mod n over the live brokers, with a random start so that partition 0's leader
 * is not always the same broker. When every broker has a rack, the broker list is first
 * interleaved by rack (A1, B1, C1, A2, B2, ...), so consecutive replicas land on different racks.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";

/** A broker as placement sees it. */
export interface PlacementBroker {
  id: number;
  rack?: string;
}

/** Orders brokers by id, interleaving racks when all brokers have one. */
export function placementOrder(brokers: readonly PlacementBroker[]): number[] {
  const sorted = [...brokers].sort((a, b) => a.id - b.id);
  if (sorted.length === 0 || !sorted.every((b) => b.rack)) return sorted.map((b) => b.id);
  const byRack = new Map<string, number[]>();
  for (const b of sorted) {
    const list = byRack.get(b.rack!) ?? [];
    list.push(b.id);
    byRack.set(b.rack!, list);
  }
  const racks = [...byRack.keys()].sort();
  const out: number[] = [];
  for (let round = 0; out.length < sorted.length; round++) {
    for (const r of racks) {
      const id = byRack.get(r)![round];
      if (id !== undefined) out.push(id);
    }
  }
  return out;
}

/**
 * Assigns `replicationFactor` replicas to each of `partitions` partitions. Returns, per
 * partition, its replica list (preferred leader first).
 */
export function assignReplicas(
  brokers: readonly PlacementBroker[],
  partitions: number,
  replicationFactor: number,
  start: number = Math.floor(Math.random() * Math.max(brokers.length, 1)),
): number[][] {
  const order = placementOrder(brokers);
  const n = order.length;
  if (replicationFactor > n) {
    throw new SamsaError(
      ErrorCode.INVALID_REPLICATION_FACTOR,
      `replication factor ${replicationFactor} is larger than the ${n} live brokers`,
    );
  }
  const out: number[][] = [];
  for (let i = 0; i < partitions; i++) {
    const replicas: number[] = [];
    for (let j = 0; j < replicationFactor; j++) replicas.push(order[(start + i + j) % n]!);
    out.push(replicas);
  }
  return out;
}

/**
 * The pure decisions of a partition reassignment (Kafka's KIP-455, as its KRaft controller makes
 * them). The reassignment lives in the partition state itself (`addingReplicas`,
 * `removingReplicas` of `partitions/<topic>/<p>`), so whichever controller is active reads it
 * from etcd and carries on:
 *
 * ```
 *   replicas R, ISR I ──start(T)──▶ replicas T ++ (R − T), adding T − R, removing R − T
 *        ▲                                  │ wait: every adding replica in the ISR
 *        │                                  ▼ (the leader's own ISR expansion)
 *        │                          leader ∉ T? ──▶ leader = first of T in ISR and live, epoch + 1
 *        │                                  │
 *        └────────── complete ◀─────────────┘ replicas T, ISR I ∩ T, adding/removing cleared
 * ```
 *
 * A cancel (or a new target while one is in progress: it replaces it) first reverts: replicas
 * R' = replicas − adding, ISR minus adding, and when the leader was an adding replica the first
 * of R' in the ISR and alive leads (epoch + 1). The order of R' is that of the full replica list
 * (target first), as in Kafka. Every function returns the next state to write by compare-and-swap
 * (partition epoch + 1) or why there is none; `partition-reassigner.ts` writes them.
 */
import { type PartitionState, isReassigning, noLeader } from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";

/** What a reassignment request decides: the state to write (undefined: none needed), or why not. */
export type ReassignmentOutcome =
  | { readonly next: PartitionState | undefined; readonly error?: undefined }
  | { readonly next?: undefined; readonly error: ErrorCode; readonly reason: string };

/** One step of a reassignment in progress. */
export interface ReassignmentStep {
  /** `leader`: leadership moves to a target replica; `complete`: the old replicas go. */
  readonly kind: "leader" | "complete";
  readonly next: PartitionState;
}

/**
 * Checks a target replica list: not empty (empty means cancel, handled before), no broker named
 * twice, every broker registered.
 * @throws SamsaError INVALID_REPLICA_ASSIGNMENT otherwise.
 */
export function validateTarget(target: readonly number[], registered: ReadonlySet<number>): void {
  if (target.length === 0) {
    throw new SamsaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "the target replicas are empty");
  }
  const seen = new Set<number>();
  for (const id of target) {
    if (!Number.isSafeInteger(id) || id < 0) {
      throw new SamsaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, `${id} is not a broker id`);
    }
    if (seen.has(id)) {
      throw new SamsaError(
        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        `broker ${id} is named twice in [${target.join(",")}]`,
      );
    }
    seen.add(id);
    if (!registered.has(id)) {
      throw new SamsaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, `broker ${id} is not registered`);
    }
  }
}

/** The target replicas of a reassignment in progress (replicas minus those being removed). */
export function targetReplicas(state: PartitionState): number[] {
  const removing = state.removingReplicas ?? [];
  return state.replicas.filter((r) => !removing.includes(r));
}

/** The state without its reassignment fields. */
function settled(state: PartitionState): PartitionState {
  const { replicas, leader, leaderEpoch, isr, partitionEpoch } = state;
  return { replicas, leader, leaderEpoch, isr, partitionEpoch };
}

/**
 * The state from before the reassignment in progress (the adding replicas dropped, a leader
 * among them replaced), without bumping the partition epoch; an error when no original replica
 * is in sync and alive to lead.
 */
function reverted(
  state: PartitionState,
  live: ReadonlySet<number>,
): PartitionState | { error: ErrorCode; reason: string } {
  const adding = state.addingReplicas ?? [];
  const replicas = state.replicas.filter((r) => !adding.includes(r));
  const isr = state.isr.filter((r) => !adding.includes(r));
  let { leader, leaderEpoch } = state;
  if (leader === noLeader || adding.includes(leader)) {
    const successor = replicas.find((r) => isr.includes(r) && live.has(r));
    if (successor === undefined) {
      return {
        error: ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
        reason: `no replica of [${replicas.join(",")}] is in sync and alive to lead`,
      };
    }
    leader = successor;
    leaderEpoch++;
  }
  return { ...settled(state), replicas, isr, leader, leaderEpoch };
}

function sameOrder(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => b[i] === id);
}

/**
 * Starts a reassignment of a partition to `target` (already validated), replacing one in
 * progress. Nothing to write when the target is the current replicas with none in progress, or
 * the target of the one in progress. Same brokers in another order: the new order at once (no
 * data moves).
 */
export function startReassignment(
  state: PartitionState,
  target: readonly number[],
  live: ReadonlySet<number>,
): ReassignmentOutcome {
  let base = settled(state);
  if (isReassigning(state) && sameOrder(target, targetReplicas(state))) {
    // The same plan again: the reassignment goes on where it is (no restart, no ISR churn).
    return { next: undefined };
  }
  if (isReassigning(state)) {
    const r = reverted(state, live);
    if ("error" in r)
      return { error: r.error, reason: `cannot replace the reassignment: ${r.reason}` };
    base = r;
  } else if (sameOrder(target, state.replicas)) {
    return { next: undefined };
  }
  const partitionEpoch = state.partitionEpoch + 1;
  const adding = target.filter((r) => !base.replicas.includes(r));
  const removing = base.replicas.filter((r) => !target.includes(r));
  if (adding.length === 0 && removing.length === 0) {
    return { next: { ...base, replicas: [...target], partitionEpoch } };
  }
  return {
    next: {
      ...base,
      replicas: [...target, ...removing],
      partitionEpoch,
      addingReplicas: adding,
      removingReplicas: removing,
    },
  };
}

/** Cancels the reassignment in progress: back to the replicas from before it. */
export function cancelReassignment(
  state: PartitionState,
  live: ReadonlySet<number>,
): ReassignmentOutcome {
  if (!isReassigning(state)) {
    return {
      error: ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
      reason: "no reassignment is in progress",
    };
  }
  const r = reverted(state, live);
  if ("error" in r) return { error: r.error, reason: `cannot cancel: ${r.reason}` };
  return { next: { ...r, partitionEpoch: state.partitionEpoch + 1 } };
}

/**
 * The next step of the reassignment in progress, or undefined when there is none to take now
 * (no reassignment; an adding replica not yet in the ISR; no target replica in sync and alive to
 * take over the leadership).
 */
export function reassignmentStep(
  state: PartitionState,
  live: ReadonlySet<number>,
): ReassignmentStep | undefined {
  if (!isReassigning(state)) return undefined;
  const adding = state.addingReplicas ?? [];
  if (adding.some((r) => !state.isr.includes(r))) return undefined;
  const target = targetReplicas(state);
  const partitionEpoch = state.partitionEpoch + 1;
  if (state.leader === noLeader || !target.includes(state.leader)) {
    const leader = target.find((r) => state.isr.includes(r) && live.has(r));
    if (leader === undefined) return undefined;
    return {
      kind: "leader",
      next: { ...state, leader, leaderEpoch: state.leaderEpoch + 1, partitionEpoch },
    };
  }
  const isr = state.isr.filter((r) => target.includes(r));
  return {
    kind: "complete",
    next: { ...settled(state), replicas: target, isr, partitionEpoch },
  };
}

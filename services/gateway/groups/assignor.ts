/**
 * The server-side assignors (pure functions): given the members of a group with their
 * subscriptions, the partition counts of the topics, and the previous target assignment, each
 * computes every member's target assignment. Every partition of a subscribed topic goes to
 * exactly one member subscribed to it; members are ordered by instance id (static members), then
 * member id, so the result does not depend on the order members joined.
 *
 * - `range`: per topic, contiguous ranges of partitions to the subscribed members (Kafka's
 *   RangeAssignor): co-partitioned topics line up, but many topics pile extras on the first
 *   members.
 * - `uniform`: every partition, in topic then partition order, to the subscribed member with the
 *   fewest so far (round robin for equal subscriptions): balanced, ignores the previous one.
 * - `sticky`: keeps each partition with its previous owner where that owner is still a member
 *   and subscribed, gives the free ones to the least loaded, then moves partitions from the most
 *   to the least loaded member while they differ by 2 or more: balanced (within 1 for equal
 *   subscriptions) with as few moves as that allows. The default, because a moved partition is
 *   a pause for it (revoke, commit, release, assign).
 */
import { type Assignment, fromKeys, parseTpKey, tpKey, toKeys } from "./assignment.js";

/** One member as an assignor sees it. */
export interface AssignorMember {
  readonly memberId: string;
  readonly instanceId?: string;
  readonly rackId?: string;
  /** Subscribed topic names (topics that do not exist are ignored). */
  readonly topics: readonly string[];
}

/** What an assignor computes from. */
export interface AssignmentSpec {
  readonly members: readonly AssignorMember[];
  /** Partition count of every existing topic (at least those subscribed). */
  readonly partitionCounts: ReadonlyMap<string, number>;
  /** The previous target assignment by member id (sticky keeps it). */
  readonly previous: ReadonlyMap<string, Assignment>;
}

/** Target assignment by member id; every member of the spec has an entry (maybe empty). */
export type TargetAssignment = Map<string, Assignment>;

/** A server-side assignor. */
export interface Assignor {
  readonly name: AssignorName;
  assign(spec: AssignmentSpec): TargetAssignment;
}

/** The assignors' names, as the heartbeat's `server_assignor` names them. */
export const ASSIGNOR_NAMES = ["uniform", "range", "sticky"] as const;
export type AssignorName = (typeof ASSIGNOR_NAMES)[number];
/** The assignor a group uses when its members name none. */
export const ASSIGNOR_DEFAULT: AssignorName = "sticky";
/** Other names accepted for an assignor (Kafka's client-side names). */
const ASSIGNOR_ALIASES: Readonly<Record<string, AssignorName>> = Object.freeze({
  roundrobin: "uniform",
  "round-robin": "uniform",
  cooperative_sticky: "sticky",
  "cooperative-sticky": "sticky",
});

/** The canonical name of `name`, or undefined when no assignor goes by it. */
export function assignorName(name: string): AssignorName | undefined {
  const lower = name.toLowerCase();
  if ((ASSIGNOR_NAMES as readonly string[]).includes(lower)) return lower as AssignorName;
  return ASSIGNOR_ALIASES[lower];
}

/** The assignor called `name`. */
export function assignorFor(name: AssignorName): Assignor {
  return ASSIGNORS[name];
}

/** Members in assignment order: by instance id (static members first), then member id. */
function ordered(members: readonly AssignorMember[]): AssignorMember[] {
  const key = (m: AssignorMember) =>
    `${m.instanceId === undefined ? "1" : "0"}${m.instanceId ?? ""}\u0000${m.memberId}`;
  return [...members].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** The existing subscribed topics, sorted, with their partition counts. */
function subscribedTopics(spec: AssignmentSpec): [string, number][] {
  const topics = new Set<string>();
  for (const m of spec.members) for (const t of m.topics) topics.add(t);
  return [...topics]
    .filter((t) => (spec.partitionCounts.get(t) ?? 0) > 0)
    .sort()
    .map((t) => [t, spec.partitionCounts.get(t)!]);
}

function finish(
  members: readonly AssignorMember[],
  keys: Map<string, Set<string>>,
): TargetAssignment {
  const out: TargetAssignment = new Map();
  for (const m of members) out.set(m.memberId, fromKeys(keys.get(m.memberId) ?? []));
  return out;
}

const range: Assignor = {
  name: "range",
  assign(spec) {
    const members = ordered(spec.members);
    const keys = new Map(members.map((m) => [m.memberId, new Set<string>()]));
    for (const [topic, count] of subscribedTopics(spec)) {
      const subs = members.filter((m) => m.topics.includes(topic));
      const base = Math.floor(count / subs.length);
      const extra = count % subs.length;
      let next = 0;
      subs.forEach((m, i) => {
        const n = base + (i < extra ? 1 : 0);
        for (let k = 0; k < n; k++) keys.get(m.memberId)!.add(tpKey(topic, next++));
      });
    }
    return finish(members, keys);
  },
};

const uniform: Assignor = {
  name: "uniform",
  assign(spec) {
    const members = ordered(spec.members);
    const keys = new Map(members.map((m) => [m.memberId, new Set<string>()]));
    for (const [topic, count] of subscribedTopics(spec)) {
      const subs = members.filter((m) => m.topics.includes(topic));
      for (let p = 0; p < count; p++) leastLoaded(subs, keys)!.add(tpKey(topic, p));
    }
    return finish(members, keys);
  },
};

/** The set of the member with the fewest partitions among `candidates` (first on ties). */
function leastLoaded(
  candidates: readonly AssignorMember[],
  keys: Map<string, Set<string>>,
): Set<string> | undefined {
  let best: Set<string> | undefined;
  for (const m of candidates) {
    const set = keys.get(m.memberId)!;
    if (best === undefined || set.size < best.size) best = set;
  }
  return best;
}

const sticky: Assignor = {
  name: "sticky",
  assign(spec) {
    const members = ordered(spec.members);
    const counts = new Map(subscribedTopics(spec));
    const keys = new Map(members.map((m) => [m.memberId, new Set<string>()]));
    const taken = new Set<string>();
    // 1. Keep what each member had, where still valid and not claimed by an earlier member.
    for (const m of members) {
      for (const key of toKeys(spec.previous.get(m.memberId) ?? {})) {
        const { topic, partition } = parseTpKey(key);
        const valid = m.topics.includes(topic) && partition < (counts.get(topic) ?? 0);
        if (valid && !taken.has(key)) {
          taken.add(key);
          keys.get(m.memberId)!.add(key);
        }
      }
    }
    // 2. The free partitions to the least loaded subscribed member.
    for (const [topic, count] of counts) {
      const subs = members.filter((m) => m.topics.includes(topic));
      for (let p = 0; p < count; p++) {
        const key = tpKey(topic, p);
        if (!taken.has(key)) leastLoaded(subs, keys)!.add(key);
      }
    }
    // 3. Balance: move from the most to a least loaded eligible member while they differ by 2+.
    balance(members, keys);
    return finish(members, keys);
  },
};

/** Moves partitions until no move from a member to an eligible one 2+ lighter is left. */
function balance(members: readonly AssignorMember[], keys: Map<string, Set<string>>): void {
  let total = 0;
  for (const set of keys.values()) total += set.size;
  // Every move lowers the sum of squared loads, so this bound is never reached; it guards a bug.
  const movesMax = total * members.length + 1;
  for (let moves = 0; moves < movesMax; moves++) {
    if (!moveOne(members, keys)) return;
  }
}

function moveOne(members: readonly AssignorMember[], keys: Map<string, Set<string>>): boolean {
  const byLoad = [...members].sort(
    (a, b) => keys.get(b.memberId)!.size - keys.get(a.memberId)!.size,
  );
  for (const from of byLoad) {
    const fromSet = keys.get(from.memberId)!;
    // The highest partitions move first, so the lowest stay put (deterministic).
    for (const key of [...fromSet].sort().reverse()) {
      const { topic } = parseTpKey(key);
      const eligible = members.filter(
        (m) => m.topics.includes(topic) && keys.get(m.memberId)!.size <= fromSet.size - 2,
      );
      const to = leastLoaded(eligible, keys);
      if (to !== undefined) {
        fromSet.delete(key);
        to.add(key);
        return true;
      }
    }
  }
  return false;
}

const ASSIGNORS: Readonly<Record<AssignorName, Assignor>> = Object.freeze({
  range,
  uniform,
  sticky,
});

/**
 * Sets of topic-partitions as the coordinator keeps them: `{ topic: [sorted partitions] }`, a
 * plain JSON-friendly object (it is persisted in etcd as is), and the set operations the
 * reconciliation needs. Every function returns a new value: an assignment is never mutated once
 * built, so one can be shared between a member's record and a response.
 */

/** Partitions by topic, each list sorted ascending without duplicates; no empty lists. */
export type Assignment = Readonly<Record<string, readonly number[]>>;

/** The empty assignment. */
export const EMPTY_ASSIGNMENT: Assignment = Object.freeze({});

/** A partition's key in sets: `topic:partition` (legal topic names have no `:`). */
export function tpKey(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

/** The topic and partition of a {@link tpKey}. */
export function parseTpKey(key: string): { topic: string; partition: number } {
  const at = key.lastIndexOf(":");
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) };
}

/** The keys of an assignment's partitions. */
export function toKeys(a: Assignment): Set<string> {
  const keys = new Set<string>();
  for (const [topic, partitions] of Object.entries(a)) {
    for (const p of partitions) keys.add(tpKey(topic, p));
  }
  return keys;
}

/** An assignment from partition keys (or pairs), normalised: sorted, no duplicates. */
export function fromKeys(keys: Iterable<string>): Assignment {
  const byTopic = new Map<string, Set<number>>();
  for (const key of keys) {
    const { topic, partition } = parseTpKey(key);
    let set = byTopic.get(topic);
    if (set === undefined) {
      set = new Set();
      byTopic.set(topic, set);
    }
    set.add(partition);
  }
  const out: Record<string, number[]> = {};
  for (const topic of [...byTopic.keys()].sort()) {
    out[topic] = [...byTopic.get(topic)!].sort((x, y) => x - y);
  }
  return out;
}

/** An assignment from `{topic, partitions}` lists (the proto's TopicPartitions). */
export function fromTopicPartitions(
  list: readonly { topic: string; partitions: readonly number[] }[],
): Assignment {
  const keys: string[] = [];
  for (const { topic, partitions } of list) for (const p of partitions) keys.push(tpKey(topic, p));
  return fromKeys(keys);
}

/** The proto's TopicPartitions list of an assignment, topics sorted. */
export function toTopicPartitions(a: Assignment): { topic: string; partitions: number[] }[] {
  return Object.keys(a)
    .sort()
    .map((topic) => ({ topic, partitions: [...a[topic]!] }));
}

/** `a ∪ b`. */
export function union(a: Assignment, b: Assignment): Assignment {
  return fromKeys([...toKeys(a), ...toKeys(b)]);
}

/** `a ∩ b`. */
export function intersect(a: Assignment, b: Assignment): Assignment {
  const bk = toKeys(b);
  return fromKeys([...toKeys(a)].filter((k) => bk.has(k)));
}

/** `a − b`. */
export function subtract(a: Assignment, b: Assignment): Assignment {
  const bk = toKeys(b);
  return fromKeys([...toKeys(a)].filter((k) => !bk.has(k)));
}

/** Number of partitions. */
export function size(a: Assignment): number {
  let n = 0;
  for (const partitions of Object.values(a)) n += partitions.length;
  return n;
}

/** Whether the assignment has no partition. */
export function isEmpty(a: Assignment): boolean {
  return size(a) === 0;
}

/** Whether both hold the same partitions. */
export function sameAssignment(a: Assignment, b: Assignment): boolean {
  const ak = toKeys(a);
  const bk = toKeys(b);
  return ak.size === bk.size && [...ak].every((k) => bk.has(k));
}

/** Whether `a` holds `topic`-`partition`. */
export function contains(a: Assignment, topic: string, partition: number): boolean {
  return a[topic]?.includes(partition) ?? false;
}

/**
 * The server-side assignors (`services/gateway/groups/assignor.ts`): exact results for small
 * cases, and as properties for any group: every partition of a subscribed topic to exactly one
 * member subscribed to it, balanced within 1 for equal subscriptions (uniform, sticky), and
 * sticky keeps every partition whose owner is still there when that stays balanced.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type Assignment, size, toKeys } from "../../services/gateway/groups/assignment.js";
import {
  ASSIGNOR_NAMES,
  type AssignmentSpec,
  type AssignorMember,
  assignorFor,
  assignorName,
  type TargetAssignment,
} from "../../services/gateway/groups/assignor.js";

const members = (n: number, topics: string[]): AssignorMember[] =>
  Array.from({ length: n }, (_, i) => ({ memberId: `m${i}`, topics }));

const spec = (
  ms: AssignorMember[],
  counts: Record<string, number>,
  previous: Record<string, Assignment> = {},
): AssignmentSpec => ({
  members: ms,
  partitionCounts: new Map(Object.entries(counts)),
  previous: new Map(Object.entries(previous)),
});

const asObject = (t: TargetAssignment) => Object.fromEntries(t);

/** Checks that each subscribed partition has exactly one owner, subscribed to its topic. */
function assertComplete(s: AssignmentSpec, result: TargetAssignment): void {
  const owners = new Map<string, string>();
  for (const m of s.members) {
    const a = result.get(m.memberId);
    assert.ok(a !== undefined, `every member has an entry (${m.memberId})`);
    for (const key of toKeys(a)) {
      const topic = key.slice(0, key.lastIndexOf(":"));
      assert.ok(m.topics.includes(topic), `${m.memberId} subscribes to ${topic}`);
      assert.equal(owners.get(key), undefined, `${key} has one owner`);
      owners.set(key, m.memberId);
    }
  }
  for (const [topic, count] of s.partitionCounts) {
    if (!s.members.some((m) => m.topics.includes(topic))) continue;
    for (let p = 0; p < count; p++) assert.ok(owners.has(`${topic}:${p}`), `${topic}:${p} owned`);
  }
}

const loads = (t: TargetAssignment) => [...t.values()].map(size);
const spread = (values: number[]) => Math.max(...values) - Math.min(...values);

describe("assignorName", () => {
  it("accepts the names and Kafka's aliases, case-insensitively", () => {
    assert.equal(assignorName("range"), "range");
    assert.equal(assignorName("Uniform"), "uniform");
    assert.equal(assignorName("roundrobin"), "uniform");
    assert.equal(assignorName("cooperative-sticky"), "sticky");
    assert.equal(assignorName("nope"), undefined);
  });
});

describe("range", () => {
  it("gives contiguous ranges per topic, extras to the first members", () => {
    const r = assignorFor("range").assign(spec(members(3, ["a", "b"]), { a: 7, b: 2 }));
    assert.deepEqual(asObject(r), {
      m0: { a: [0, 1, 2], b: [0] },
      m1: { a: [3, 4], b: [1] },
      m2: { a: [5, 6] },
    });
  });
});

describe("uniform", () => {
  it("deals partitions round robin over equal subscriptions", () => {
    const r = assignorFor("uniform").assign(spec(members(3, ["t"]), { t: 6 }));
    assert.deepEqual(asObject(r), { m0: { t: [0, 3] }, m1: { t: [1, 4] }, m2: { t: [2, 5] } });
  });

  it("orders static members by instance id, whatever their member ids", () => {
    const ms = [
      { memberId: "z", instanceId: "a", topics: ["t"] },
      { memberId: "a", instanceId: "b", topics: ["t"] },
    ];
    const r = assignorFor("uniform").assign(spec(ms, { t: 2 }));
    assert.deepEqual(asObject(r), { z: { t: [0] }, a: { t: [1] } });
  });

  it("ignores topics that do not exist and gives members without topics nothing", () => {
    const ms = [
      { memberId: "a", topics: ["missing"] },
      { memberId: "b", topics: ["t"] },
    ];
    const r = assignorFor("uniform").assign(spec(ms, { t: 2 }));
    assert.deepEqual(asObject(r), { a: {}, b: { t: [0, 1] } });
  });
});

describe("sticky", () => {
  it("keeps partitions where they are when a member joins, moving only what balance needs", () => {
    const previous = { m0: { t: [0, 1, 2] }, m1: { t: [3, 4, 5] } };
    const r = assignorFor("sticky").assign(spec(members(3, ["t"]), { t: 6 }, previous));
    assertComplete(spec(members(3, ["t"]), { t: 6 }), r);
    assert.deepEqual(loads(r), [2, 2, 2]);
    // m0 and m1 each give up one partition, and keep the rest.
    assert.equal(size(r.get("m0")!), 2);
    for (const p of r.get("m0")!.t!) assert.ok([0, 1, 2].includes(p));
    for (const p of r.get("m1")!.t!) assert.ok([3, 4, 5].includes(p));
  });

  it("gives a leaving member's partitions to the others and keeps theirs", () => {
    const previous = { m0: { t: [0, 1] }, m1: { t: [2, 3] }, gone: { t: [4, 5] } };
    const r = assignorFor("sticky").assign(spec(members(2, ["t"]), { t: 6 }, previous));
    assert.deepEqual(loads(r), [3, 3]);
    assert.ok([0, 1].every((p) => r.get("m0")!.t!.includes(p)));
    assert.ok([2, 3].every((p) => r.get("m1")!.t!.includes(p)));
  });

  it("drops partitions of topics a member unsubscribed and partitions that no longer exist", () => {
    const previous = { m0: { t: [0, 1, 7], u: [0] } };
    const r = assignorFor("sticky").assign(spec(members(1, ["t"]), { t: 2, u: 1 }, previous));
    assert.deepEqual(asObject(r), { m0: { t: [0, 1] } });
  });
});

const groupArb = fc.record({
  memberCount: fc.integer({ min: 1, max: 8 }),
  counts: fc.dictionary(fc.constantFrom("a", "b", "c"), fc.integer({ min: 0, max: 20 }), {
    minKeys: 1,
  }),
});

describe("properties", () => {
  for (const name of ASSIGNOR_NAMES) {
    it(`${name}: every partition to exactly one subscribed member (any subscriptions)`, () => {
      fc.assert(
        fc.property(
          groupArb,
          fc.array(fc.subarray(["a", "b", "c"], { minLength: 1 }), { minLength: 8, maxLength: 8 }),
          ({ memberCount, counts }, subs) => {
            const ms = Array.from({ length: memberCount }, (_, i) => ({
              memberId: `m${i}`,
              topics: subs[i]!,
            }));
            const s = spec(ms, counts);
            assertComplete(s, assignorFor(name).assign(s));
          },
        ),
      );
    });
  }

  for (const name of ["uniform", "sticky"] as const) {
    it(`${name}: balanced within 1 with equal subscriptions`, () => {
      fc.assert(
        fc.property(groupArb, ({ memberCount, counts }) => {
          const s = spec(members(memberCount, Object.keys(counts)), counts);
          const r = assignorFor(name).assign(s);
          assert.ok(spread(loads(r)) <= 1, `loads ${loads(r)}`);
        }),
      );
    });
  }

  it("sticky: from any previous assignment, balanced, complete, and moves at most what balance needs", () => {
    fc.assert(
      fc.property(
        groupArb,
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 1, max: 8 }),
        ({ memberCount, counts }, seed, nextCount) => {
          const topics = Object.keys(counts);
          const first = spec(members(memberCount, topics), counts);
          const previous = assignorFor("uniform").assign(first);
          // A different membership: some members leave, some join (ids rotate by the seed).
          const next = Array.from({ length: nextCount }, (_, i) => ({
            memberId: `m${(i + seed) % 10}`,
            topics,
          }));
          const s = spec(next, counts, Object.fromEntries(previous));
          const r = assignorFor("sticky").assign(s);
          assertComplete(s, r);
          assert.ok(spread(loads(r)) <= 1);
          // Every member keeps min(its previous partitions, its fair share).
          const total = Object.values(counts).reduce((x, y) => x + y, 0);
          const floor = Math.floor(total / nextCount);
          for (const m of next) {
            const before = toKeys(previous.get(m.memberId) ?? {});
            const kept = [...toKeys(r.get(m.memberId)!)].filter((k) => before.has(k)).length;
            assert.ok(kept >= Math.min(before.size, floor), `${m.memberId} kept ${kept}`);
          }
        },
      ),
    );
  });
});

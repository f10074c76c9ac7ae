/**
 * Replica placement (`services/controller/replica-assignment.ts`): replica j of partition i on
 * the broker at (start + i + j) mod n of the placement order (brokers by id, interleaved by rack
 * when every broker has one), with a random start. Checked as exact lists for a fixed start and
 * as properties for any: distinct brokers per partition, leaders and replicas spread evenly,
 * replicas of a partition on different racks when the racks are balanced.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  assignReplicas,
  type PlacementBroker,
  placementOrder,
} from "../../services/controller/replica-assignment.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";

const brokers = (...ids: number[]): PlacementBroker[] => ids.map((id) => ({ id }));

/** How many times each broker id appears, over the given id lists. */
function counts(lists: readonly number[][], ids: readonly number[]): number[] {
  return ids.map((id) => lists.filter((l) => l.includes(id)).length);
}

const spread = (values: number[]) => Math.max(...values) - Math.min(...values);

describe("placementOrder", () => {
  it("orders brokers by id when racks are not set", () => {
    assert.deepEqual(placementOrder(brokers(3, 1, 2)), [1, 2, 3]);
    assert.deepEqual(placementOrder([]), []);
  });

  it("interleaves racks (A1, B1, C1, A2, ...) when every broker has one", () => {
    const order = placementOrder([
      { id: 1, rack: "a" },
      { id: 2, rack: "a" },
      { id: 3, rack: "b" },
      { id: 4, rack: "b" },
      { id: 5, rack: "c" },
      { id: 6, rack: "c" },
    ]);
    assert.deepEqual(order, [1, 3, 5, 2, 4, 6]);
  });

  it("ignores racks unless every broker has one", () => {
    const order = placementOrder([{ id: 2, rack: "a" }, { id: 1 }, { id: 3, rack: "a" }]);
    assert.deepEqual(order, [1, 2, 3]);
  });
});

describe("assignReplicas with a given start", () => {
  it("puts replica j of partition i on broker (start + i + j) mod n", () => {
    assert.deepEqual(assignReplicas(brokers(1, 2, 3), 4, 2, 0), [
      [1, 2],
      [2, 3],
      [3, 1],
      [1, 2],
    ]);
    assert.deepEqual(assignReplicas(brokers(3, 1, 2), 3, 3, 2), [
      [3, 1, 2],
      [1, 2, 3],
      [2, 3, 1],
    ]);
  });

  it("follows the rack-interleaved order", () => {
    const racked = [
      { id: 1, rack: "a" },
      { id: 2, rack: "a" },
      { id: 3, rack: "b" },
      { id: 4, rack: "b" },
    ];
    // Order 1 (a), 3 (b), 2 (a), 4 (b).
    assert.deepEqual(assignReplicas(racked, 2, 2, 1), [
      [3, 2],
      [2, 4],
    ]);
  });

  it("no partitions: no replica lists", () => {
    assert.deepEqual(assignReplicas(brokers(1), 0, 1, 0), []);
  });

  it("refuses a replication factor above the broker count with INVALID_REPLICATION_FACTOR", () => {
    assert.throws(
      () => assignReplicas(brokers(1, 2), 1, 3, 0),
      (err) =>
        isSamsaError(err, ErrorCode.INVALID_REPLICATION_FACTOR) && /3 .* 2 live/.test(err.message),
    );
    assert.throws(
      () => assignReplicas([], 1, 1),
      (err) => isSamsaError(err, ErrorCode.INVALID_REPLICATION_FACTOR),
    );
  });
});

describe("assignReplicas properties", () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => 100 + i * 3);
  const caseArb = fc.integer({ min: 1, max: 9 }).chain((n) =>
    fc.record({
      n: fc.constant(n),
      partitions: fc.integer({ min: 1, max: 60 }),
      rf: fc.integer({ min: 1, max: n }),
      start: fc.option(fc.nat(), { nil: undefined }),
    }),
  );

  it("distinct live brokers per partition; leaders and replicas spread evenly", () => {
    fc.assert(
      fc.property(caseArb, ({ n, partitions, rf, start }) => {
        const live = ids(n);
        const assignment = assignReplicas(brokers(...live), partitions, rf, start);
        assert.equal(assignment.length, partitions);
        for (const replicas of assignment) {
          assert.equal(replicas.length, rf);
          assert.equal(new Set(replicas).size, rf, `distinct brokers: ${replicas}`);
          assert.ok(
            replicas.every((r) => live.includes(r)),
            "only live brokers",
          );
        }
        const leaders = assignment.map((r) => [r[0]!]);
        assert.ok(spread(counts(leaders, live)) <= 1, "leaders differ by at most one per broker");
        // Whole rounds of n partitions give every broker rf replicas each; the partitions of the
        // last, partial round add at most min(rf, that many) to any broker.
        assert.ok(
          spread(counts(assignment, live)) <= Math.min(rf, partitions % n),
          "replica counts spread evenly",
        );
      }),
      { numRuns: 500 },
    );
  });

  it("with balanced racks, the replicas of a partition span min(rf, racks) racks", () => {
    const rackCase = fc.record({
      racks: fc.integer({ min: 1, max: 4 }),
      perRack: fc.integer({ min: 1, max: 3 }),
      partitions: fc.integer({ min: 1, max: 30 }),
      rfPick: fc.nat(),
      start: fc.nat(),
    });
    fc.assert(
      fc.property(rackCase, ({ racks, perRack, partitions, rfPick, start }) => {
        const placed: PlacementBroker[] = [];
        for (let r = 0; r < racks; r++) {
          for (let k = 0; k < perRack; k++) {
            // Ids not grouped by rack, so the interleaving has work to do.
            placed.push({ id: k * racks + r + 1, rack: `rack-${String.fromCharCode(97 + r)}` });
          }
        }
        const rackOf = new Map(placed.map((b) => [b.id, b.rack!]));
        const rf = 1 + (rfPick % placed.length);
        for (const replicas of assignReplicas(placed, partitions, rf, start)) {
          const used = new Set(replicas.map((id) => rackOf.get(id)));
          assert.equal(used.size, Math.min(rf, racks), `racks of ${replicas}`);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("the default start is random: partition 0's leader is not always the same broker", () => {
    const live = brokers(1, 2, 3);
    const firstLeaders = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const assignment = assignReplicas(live, 3, 1);
      firstLeaders.add(assignment[0]![0]!);
      // Whatever the start, consecutive partitions take consecutive brokers.
      assert.deepEqual(
        new Set(assignment.map((r) => r[0])),
        new Set([1, 2, 3]),
        "three partitions, three leaders",
      );
    }
    // 200 draws of a uniform start in {0, 1, 2}: all alike with probability 3^-199.
    assert.deepEqual([...firstLeaders].sort(), [1, 2, 3]);
  });
});

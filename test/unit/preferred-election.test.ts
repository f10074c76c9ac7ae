/**
 * The controller's leader election decisions beside the failover one: an operator's preferred
 * and unclean elections (ElectLeaders) and the automatic rebalance's choice of partitions
 * (`leader.imbalance.per.broker.percentage`), as pure functions of partition states.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  electionOutcome,
  preferredElectionsDue,
} from "../../services/controller/leader-elector.js";
import { noLeader, type PartitionState } from "../../services/shared/etcd/keys.js";
import { ErrorCode } from "../../services/shared/errors.js";
import type { PartitionView } from "../../services/shared/metadata/cluster-metadata.js";

const all = new Set([1, 2, 3]);

const state = (leader: number, isr: number[], replicas = [1, 2, 3]): PartitionState => ({
  replicas,
  leader,
  leaderEpoch: 4,
  isr,
  partitionEpoch: 9,
});

describe("preferred election (ElectLeaders PREFERRED)", () => {
  test("the preferred replica, alive and in the ISR, becomes leader: epochs + 1, ISR unchanged", () => {
    assert.deepEqual(electionOutcome(state(2, [2, 3, 1]), all, "preferred"), {
      next: { replicas: [1, 2, 3], leader: 1, leaderEpoch: 5, isr: [2, 3, 1], partitionEpoch: 10 },
    });
  });

  test("the preferred replica is the first of replicas, not the smallest id", () => {
    const outcome = electionOutcome(state(1, [1, 2, 3], [3, 1, 2]), all, "preferred");
    assert.equal(outcome.next?.leader, 3);
  });

  test("ELECTION_NOT_NEEDED when the preferred replica leads", () => {
    const outcome = electionOutcome(state(1, [1, 2, 3]), all, "preferred");
    assert.equal(outcome.next, undefined);
    assert.equal(outcome.error, ErrorCode.ELECTION_NOT_NEEDED);
  });

  test("PREFERRED_LEADER_NOT_AVAILABLE when the preferred replica is dead or out of the ISR", () => {
    const dead = electionOutcome(state(2, [2, 3, 1]), new Set([2, 3]), "preferred");
    assert.equal(dead.error, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE);
    assert.match(dead.next === undefined ? dead.reason : "", /not alive/);
    const outOfSync = electionOutcome(state(2, [2, 3]), all, "preferred");
    assert.equal(outOfSync.error, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE);
    assert.match(outOfSync.next === undefined ? outOfSync.reason : "", /not in the ISR/);
    // It led, but died: not "not needed" (the failover elects another leader).
    const deadLeader = electionOutcome(state(1, [1, 2, 3]), new Set([2, 3]), "preferred");
    assert.equal(deadLeader.error, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE);
  });

  test("an offline partition gets its preferred replica back when it is in the ISR", () => {
    const outcome = electionOutcome(state(noLeader, [1]), all, "preferred");
    assert.equal(outcome.next?.leader, 1);
    assert.deepEqual(outcome.next?.isr, [1]);
  });

  test("property: an elected state is led by the live in-sync preferred replica, only the epochs change", () => {
    const arb = fc.record({
      replicas: fc.shuffledSubarray([1, 2, 3, 4, 5], { minLength: 1 }),
      leaderIndex: fc.integer({ min: -1, max: 4 }),
      isrMask: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
      liveMask: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
    });
    fc.assert(
      fc.property(arb, ({ replicas, leaderIndex, isrMask, liveMask }) => {
        const isr = replicas.filter((_, i) => isrMask[i]);
        const leader = replicas[leaderIndex] ?? noLeader;
        const s: PartitionState = { replicas, leader, leaderEpoch: 2, isr, partitionEpoch: 7 };
        const live = new Set(replicas.filter((_, i) => liveMask[i]));
        const outcome = electionOutcome(s, live, "preferred");
        const preferred = replicas[0]!;
        if (outcome.next === undefined) {
          const eligible = live.has(preferred) && isr.includes(preferred);
          const led = leader === preferred && live.has(preferred);
          assert.ok(led || !eligible, "refused although the preferred replica could lead");
          return;
        }
        assert.equal(outcome.next.leader, preferred);
        assert.ok(live.has(preferred) && isr.includes(preferred));
        assert.deepEqual(outcome.next, {
          ...s,
          leader: preferred,
          leaderEpoch: 3,
          partitionEpoch: 8,
        });
      }),
    );
  });
});

describe("unclean election (ElectLeaders UNCLEAN)", () => {
  test("ELECTION_NOT_NEEDED while a live replica leads", () => {
    assert.equal(
      electionOutcome(state(2, [2]), all, "unclean").error,
      ErrorCode.ELECTION_NOT_NEEDED,
    );
  });

  test("a live ISR member first, else the first live replica outside the ISR, alone in the ISR", () => {
    const clean = electionOutcome(state(1, [1, 3]), new Set([2, 3]), "unclean");
    assert.equal(clean.next?.leader, 3);
    assert.deepEqual(clean.next?.isr, [3]);
    const unclean = electionOutcome(state(noLeader, [1]), new Set([2, 3]), "unclean");
    assert.deepEqual(unclean.next, {
      replicas: [1, 2, 3],
      leader: 2,
      leaderEpoch: 5,
      isr: [2],
      partitionEpoch: 10,
    });
  });

  test("ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica lives", () => {
    const none = electionOutcome(state(noLeader, [1]), new Set([7]), "unclean");
    assert.equal(none.error, ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE);
    const deadLeader = electionOutcome(state(1, [1]), new Set(), "unclean");
    assert.equal(deadLeader.error, ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE);
  });
});

/** Partition `i` of topic `t` with the given state. */
const view = (partition: number, s: PartitionState, topic = "t"): PartitionView => ({
  topic,
  partition,
  state: s,
});

describe("automatic rebalance: which partitions are due (leader.imbalance.per.broker.percentage)", () => {
  test("a returning broker gets back the partitions it prefers, is in the ISR of, and does not lead", () => {
    const partitions = [
      view(0, state(2, [2, 3, 1], [1, 2, 3])), // due: 1 is back in the ISR
      view(1, state(2, [2, 3, 1], [2, 3, 1])), // balanced
      view(2, state(3, [3, 1, 2], [3, 1, 2])), // balanced
      view(3, state(3, [3, 2], [1, 3, 2])), // 1 is not in the ISR yet
    ];
    assert.deepEqual(
      preferredElectionsDue(partitions, all, 10).map((p) => p.partition),
      [0],
    );
  });

  test("dead preferred replicas are skipped, and balanced clusters give nothing", () => {
    const partitions = [view(0, state(2, [2, 3, 1], [1, 2, 3]))];
    assert.deepEqual(preferredElectionsDue(partitions, new Set([2, 3]), 10), []);
    const balanced = [view(0, state(1, [1, 2, 3])), view(1, state(2, [1, 2, 3], [2, 3, 1]))];
    assert.deepEqual(preferredElectionsDue(balanced, all, 0), []);
  });

  test("a broker's imbalance must be above the percentage (of the partitions it prefers)", () => {
    // Broker 1 prefers 10 partitions, and leads 9 of them: 10% imbalanced.
    const partitions = Array.from({ length: 10 }, (_, i) =>
      view(i, state(i === 0 ? 2 : 1, [1, 2, 3])),
    );
    assert.deepEqual(preferredElectionsDue(partitions, all, 10), [], "10% is not above 10%");
    assert.deepEqual(
      preferredElectionsDue(partitions, all, 9).map((p) => p.partition),
      [0],
    );
    assert.deepEqual(
      preferredElectionsDue(partitions, all, 0).map((p) => p.partition),
      [0],
    );
  });

  test("the threshold is per broker: a balanced broker's stray partition stays, another's move", () => {
    const partitions = [
      // Broker 1 prefers 20 partitions and leads 19 (5%).
      ...Array.from({ length: 20 }, (_, i) => view(i, state(i === 0 ? 3 : 1, [1, 2, 3]), "a")),
      // Broker 2 prefers 2 and leads none (100%).
      view(0, state(3, [3, 2, 1], [2, 3, 1]), "b"),
      view(1, state(1, [1, 2, 3], [2, 1, 3]), "b"),
    ];
    assert.deepEqual(
      preferredElectionsDue(partitions, all, 10).map((p) => `${p.topic}-${p.partition}`),
      ["b-0", "b-1"],
    );
  });
});

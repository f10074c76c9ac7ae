/**
 * The controller's partition-state transitions (`nextPartitionState`, docs/replication.md): on
 * broker loss the new leader is the first live ISR member in replica order, with leaderEpoch + 1
 * and the dead out of the ISR; dead followers leave the ISR without a new epoch; with no live ISR
 * member the partition goes offline (ISR kept) unless unclean election takes any live replica;
 * nothing changes when nothing has to. A property checks the invariants over random states.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { nextPartitionState } from "../../services/controller/leader-elector.js";
import { noLeader, type PartitionState } from "../../services/shared/etcd/keys.js";

const state = (s: Partial<PartitionState> & Pick<PartitionState, "replicas">): PartitionState => ({
  leader: s.replicas[0]!,
  leaderEpoch: 4,
  isr: s.replicas,
  partitionEpoch: 10,
  ...s,
});
const live = (...ids: number[]) => new Set(ids);

describe("nextPartitionState: clean election", () => {
  it("changes nothing while the leader and the whole ISR live", () => {
    const s = state({ replicas: [1, 2, 3] });
    assert.equal(nextPartitionState(s, live(1, 2, 3), false), undefined);
    assert.equal(nextPartitionState(s, live(1, 2, 3, 4), true), undefined);
  });

  it("a dead leader: the first live ISR member in replica order leads, epoch + 1", () => {
    // Replica order decides, not ISR order.
    const s = state({ replicas: [1, 2, 3], isr: [3, 1, 2] });
    assert.deepEqual(nextPartitionState(s, live(2, 3), false), {
      replicas: [1, 2, 3],
      leader: 2,
      leaderEpoch: 5,
      isr: [3, 2],
      partitionEpoch: 11,
    });
  });

  it("skips live replicas that are not in the ISR", () => {
    const s = state({ replicas: [1, 2, 3], isr: [1, 3] });
    const next = nextPartitionState(s, live(2, 3), false);
    assert.equal(next?.leader, 3, "2 is alive but out of sync");
    assert.deepEqual(next?.isr, [3]);
    assert.equal(next?.leaderEpoch, 5);
  });

  it("a dead follower leaves the ISR; the leader and its epoch stay", () => {
    const s = state({ replicas: [1, 2, 3] });
    assert.deepEqual(nextPartitionState(s, live(1, 3), false), {
      replicas: [1, 2, 3],
      leader: 1,
      leaderEpoch: 4,
      isr: [1, 3],
      partitionEpoch: 11,
    });
  });

  it("no live ISR member: offline (leader -1), epoch + 1, the ISR kept for the last in sync", () => {
    const s = state({ replicas: [1, 2, 3], isr: [1, 2] });
    // 3 is alive but was not in sync: a clean election does not take it.
    assert.deepEqual(nextPartitionState(s, live(3), false), {
      replicas: [1, 2, 3],
      leader: noLeader,
      leaderEpoch: 5,
      isr: [1, 2],
      partitionEpoch: 11,
    });
  });

  it("an offline partition stays as it is until an ISR member returns, which then leads", () => {
    const offline = state({ replicas: [1, 2, 3], leader: noLeader, isr: [1, 2] });
    assert.equal(nextPartitionState(offline, live(), false), undefined);
    assert.equal(nextPartitionState(offline, live(3), false), undefined, "3 was not in sync");
    assert.deepEqual(nextPartitionState(offline, live(2, 3), false), {
      replicas: [1, 2, 3],
      leader: 2,
      leaderEpoch: 5,
      isr: [2],
      partitionEpoch: 11,
    });
  });

  it("a single-replica partition goes offline with its broker and comes back with it", () => {
    const s = state({ replicas: [7] });
    const offline = nextPartitionState(s, live(1, 2), false);
    assert.deepEqual(offline, { ...s, leader: noLeader, leaderEpoch: 5, partitionEpoch: 11 });
    const back = nextPartitionState(offline!, live(1, 2, 7), false);
    assert.deepEqual(back, { ...s, leader: 7, leaderEpoch: 6, partitionEpoch: 12 });
  });
});

describe("nextPartitionState: unclean election", () => {
  it("takes the first live replica when no ISR member lives; the ISR is that replica alone", () => {
    const s = state({ replicas: [1, 2, 3], isr: [1] });
    assert.deepEqual(nextPartitionState(s, live(2, 3), true), {
      replicas: [1, 2, 3],
      leader: 2,
      leaderEpoch: 5,
      isr: [2],
      partitionEpoch: 11,
    });
  });

  it("still prefers a live ISR member over an earlier out-of-sync replica", () => {
    const s = state({ replicas: [1, 2, 3], isr: [1, 3] });
    assert.equal(nextPartitionState(s, live(2, 3), true)?.leader, 3);
  });

  it("brings an offline partition back with any live replica", () => {
    const offline = state({ replicas: [1, 2, 3], leader: noLeader, isr: [1] });
    const next = nextPartitionState(offline, live(3), true);
    assert.deepEqual([next?.leader, next?.isr, next?.leaderEpoch], [3, [3], 5]);
  });

  it("with no live replica at all goes offline like a clean election", () => {
    const s = state({ replicas: [1, 2], isr: [1] });
    assert.deepEqual(nextPartitionState(s, live(5), true), {
      ...s,
      leader: noLeader,
      leaderEpoch: 5,
      partitionEpoch: 11,
    });
  });
});

describe("nextPartitionState: invariants over random states", () => {
  const brokers = [1, 2, 3, 4, 5];
  const stateArb = fc
    .record({
      replicas: fc.shuffledSubarray(brokers, { minLength: 1, maxLength: 4 }),
      isrMask: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      leaderPick: fc.nat(),
      offline: fc.boolean(),
      leaderEpoch: fc.nat({ max: 1000 }),
      partitionEpoch: fc.nat({ max: 1000 }),
    })
    .map(({ replicas, isrMask, leaderPick, offline, leaderEpoch, partitionEpoch }) => {
      const inSync = replicas.filter((_, i) => isrMask[i]);
      const leader = offline ? noLeader : replicas[leaderPick % replicas.length]!;
      // A led partition has its leader in the ISR; an offline one keeps a non-empty ISR.
      const isr =
        leader === noLeader
          ? inSync.length > 0
            ? inSync
            : [replicas[0]!]
          : [leader, ...inSync.filter((r) => r !== leader)];
      return { replicas, leader, isr, leaderEpoch, partitionEpoch } as PartitionState;
    });
  const liveArb = fc.subarray(brokers).map((ids) => new Set(ids));

  it("a chosen leader is a live replica in the new ISR; the dead leave the ISR; epochs grow", () => {
    fc.assert(
      fc.property(stateArb, liveArb, fc.boolean(), (s, up, unclean) => {
        const next = nextPartitionState(s, up, unclean);
        const leaderAlive = s.leader !== noLeader && up.has(s.leader);
        const isrAllAlive = s.isr.every((r) => up.has(r));
        if (next === undefined) {
          // Nothing to do: a live leader with a live ISR, or offline with nobody to elect.
          const electable = s.replicas.some((r) => up.has(r) && (unclean || s.isr.includes(r)));
          assert.ok(
            (leaderAlive && isrAllAlive) || (s.leader === noLeader && !electable),
            "no change only when none is due",
          );
          return;
        }
        assert.deepEqual(next.replicas, s.replicas, "replicas never change");
        assert.equal(next.partitionEpoch, s.partitionEpoch + 1);
        if (next.leader !== noLeader) {
          assert.ok(up.has(next.leader), "the leader is alive");
          assert.ok(next.isr.includes(next.leader), "the leader is in the ISR");
          assert.ok(
            next.isr.every((r) => up.has(r)),
            "only live replicas in the ISR",
          );
          assert.ok(
            next.isr.every((r) => s.replicas.includes(r)),
            "the ISR is of replicas",
          );
        } else {
          assert.deepEqual(next.isr, s.isr, "an offline partition keeps its last ISR");
        }
        if (leaderAlive) {
          assert.equal(next.leader, s.leader, "a live leader stays");
          assert.equal(next.leaderEpoch, s.leaderEpoch, "an ISR change keeps the epoch");
        } else {
          assert.equal(next.leaderEpoch, s.leaderEpoch + 1, "a leader change bumps the epoch");
          const clean = s.replicas.find((r) => up.has(r) && s.isr.includes(r));
          const any = s.replicas.find((r) => up.has(r));
          assert.equal(next.leader, clean ?? (unclean ? (any ?? noLeader) : noLeader));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

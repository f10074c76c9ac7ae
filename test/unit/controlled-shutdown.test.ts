/** The controller's controlled-shutdown decision: who takes over a leadership, and when nobody can. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { shutdownMove } from "../../services/controller/controlled-shutdown.js";
import type { PartitionState } from "../../services/shared/etcd/keys.js";

const state = (leader: number, isr: number[]): PartitionState => ({
  replicas: [1, 2, 3],
  leader,
  leaderEpoch: 4,
  isr,
  partitionEpoch: 9,
});

describe("shutdownMove", () => {
  test("the first other live ISR member in replica order leads, epoch + 1, the broker leaves the ISR", () => {
    assert.deepEqual(shutdownMove(state(1, [1, 3, 2]), 1, new Set([1, 2, 3])), {
      replicas: [1, 2, 3],
      leader: 2,
      leaderEpoch: 5,
      isr: [3, 2],
      partitionEpoch: 10,
    });
  });
  test("dead or out-of-sync replicas are skipped", () => {
    assert.equal(shutdownMove(state(1, [1, 2, 3]), 1, new Set([1, 3]))?.leader, 3);
    assert.equal(shutdownMove(state(1, [1, 3]), 1, new Set([1, 2, 3]))?.leader, 3);
  });
  test("nothing to do for a partition the broker does not lead, or that nobody else can lead", () => {
    assert.equal(shutdownMove(state(2, [1, 2, 3]), 1, new Set([1, 2, 3])), undefined);
    assert.equal(shutdownMove(state(1, [1]), 1, new Set([1, 2, 3])), undefined);
    assert.equal(shutdownMove(state(1, [1, 2]), 1, new Set([1])), undefined);
  });
});

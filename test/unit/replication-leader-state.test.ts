/**
 * The leader's follower bookkeeping (Kafka's Replica state): caught-up times by Kafka's rule,
 * the high watermark candidate over the ISR, lagging followers and who may join the ISR.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LeaderState, UNKNOWN_END_OFFSET } from "../../services/broker/replication/leader-state.js";

const LAG_MS = 10_000;

describe("LeaderState", () => {
  test("ISR followers start caught up now; others never caught up", () => {
    const s = new LeaderState(1, [1, 2, 3], [1, 2], 5_000);
    assert.equal(s.follower(1), undefined, "the leader is not its own follower");
    assert.equal(s.follower(2)?.lastCaughtUpTimeMs, 5_000);
    assert.equal(s.follower(3)?.lastCaughtUpTimeMs, 0);
    assert.equal(s.follower(2)?.logEndOffset, UNKNOWN_END_OFFSET);
  });

  test("a fetch at the leader's log end is caught up at that time", () => {
    const s = new LeaderState(1, [1, 2], [1, 2], 0);
    s.recordFetch(2, 100, 100, 7, 1_000);
    assert.equal(s.follower(2)?.lastCaughtUpTimeMs, 1_000);
    assert.equal(s.follower(2)?.logEndOffset, 100);
    assert.equal(s.follower(2)?.brokerEpoch, 7);
  });

  test("a fetch behind the log end but at the previous fetch's log end is caught up as of then", () => {
    const s = new LeaderState(1, [1, 2], [1, 2], 0);
    s.recordFetch(2, 50, 100, 7, 1_000); // behind: leader at 100
    assert.equal(s.follower(2)?.lastCaughtUpTimeMs, 0);
    s.recordFetch(2, 100, 150, 7, 2_000); // reached 100 (the end at the last fetch), leader at 150
    assert.equal(s.follower(2)?.lastCaughtUpTimeMs, 1_000, "caught up as of the previous fetch");
    s.recordFetch(2, 120, 200, 7, 3_000); // did not reach 150
    assert.equal(s.follower(2)?.lastCaughtUpTimeMs, 1_000, "unchanged");
  });

  test("a busy leader's follower that keeps up is never lagging", () => {
    const s = new LeaderState(1, [1, 2], [1, 2], 0);
    let leo = 0;
    let followerAt = 0;
    for (let t = 1_000; t <= 60_000; t += 500) {
      s.recordFetch(2, followerAt, leo, 1, t);
      followerAt = leo; // the answer brings it to the end of the time of the fetch
      leo += 10; // and the leader moved on meanwhile
      assert.deepEqual(s.laggingReplicas([1, 2], t, LAG_MS), [], `at ${t} ms`);
    }
  });

  test("a follower that stops fetching lags after the lag time; the leader never does", () => {
    const s = new LeaderState(1, [1, 2, 3], [1, 2, 3], 0);
    s.recordFetch(2, 10, 10, 1, 1_000);
    s.recordFetch(3, 10, 10, 1, 1_000);
    s.recordFetch(2, 10, 10, 1, 12_000);
    assert.deepEqual(s.laggingReplicas([1, 2, 3], 12_000, LAG_MS), [3]);
    assert.deepEqual(s.laggingReplicas([1, 2, 3], 10_999, LAG_MS), []);
  });

  test("the high watermark candidate is the smallest log end in the ISR; unknown followers hold it", () => {
    const s = new LeaderState(1, [1, 2, 3], [1, 2, 3], 0);
    assert.equal(s.highWatermarkCandidate([1, 2, 3], 100, 40), 40, "no follower fetched yet");
    s.recordFetch(2, 80, 100, 1, 1);
    s.recordFetch(3, 60, 100, 1, 1);
    assert.equal(s.highWatermarkCandidate([1, 2, 3], 100, 40), 60);
    assert.equal(s.highWatermarkCandidate([1, 2], 100, 40), 80, "3 out of the ISR");
    assert.equal(s.highWatermarkCandidate([1], 100, 40), 100, "the leader alone");
  });

  test("a follower joins the ISR once it reaches the high watermark and the epoch start", () => {
    const s = new LeaderState(1, [1, 2], [1], 0);
    assert.equal(s.canJoinIsr(2, 50, 30), false, "never fetched");
    s.recordFetch(2, 40, 100, 1, 1);
    assert.equal(s.canJoinIsr(2, 50, 30), false, "below the high watermark");
    s.recordFetch(2, 50, 100, 1, 2);
    assert.equal(s.canJoinIsr(2, 50, 60), false, "below the start of the leader's epoch");
    assert.equal(s.canJoinIsr(2, 50, 30), true);
    assert.equal(s.canJoinIsr(9, 0, 0), false, "not a replica");
    assert.equal(s.recordFetch(9, 0, 0, 1, 1), false, "a non-replica's fetch is not recorded");
  });
});

/**
 * The controller's grace for brokers whose registrations vanish the way an etcd outage makes
 * them vanish (services/controller/broker-liveness.ts): together, or around this controller's
 * election; a single broker's expiry is acted on at once.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BrokerLiveness } from "../../services/controller/broker-liveness.js";

const GRACE_MS = 10_000;
const WINDOW_MS = 2_000;

function setup() {
  let now = 1_000_000;
  const liveness = new BrokerLiveness({
    graceMs: GRACE_MS,
    massWindowMs: WINDOW_MS,
    now: () => now,
  });
  return {
    liveness,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe("BrokerLiveness", () => {
  it("a single broker's vanishing gets no grace", () => {
    const { liveness, advance } = setup();
    liveness.observe([1, 2, 3]);
    advance(60_000);
    liveness.observe([1, 2]);
    assert.deepEqual([...liveness.graced()], []);
    liveness.close();
  });

  it("brokers vanishing together stay alive for the grace, then not", () => {
    const { liveness, advance } = setup();
    liveness.observe([1, 2, 3]);
    advance(60_000);
    liveness.observe([2, 3]);
    advance(500);
    liveness.observe([3]);
    assert.deepEqual([...liveness.graced()].sort(), [1, 2]);
    advance(GRACE_MS - 600);
    assert.deepEqual([...liveness.graced()].sort(), [1, 2]);
    advance(200);
    assert.deepEqual([...liveness.graced()], [2], "1's grace ended first");
    advance(500);
    assert.deepEqual([...liveness.graced()], []);
    liveness.close();
  });

  it("a broker registering again leaves the grace", () => {
    const { liveness, advance } = setup();
    liveness.observe([1, 2, 3]);
    advance(60_000);
    liveness.observe([]);
    assert.equal(liveness.graced().size, 3);
    advance(3_000);
    liveness.observe([1, 2]);
    assert.deepEqual([...liveness.graced()], [3]);
    liveness.close();
  });

  it("vanishings far apart are not a mass expiry", () => {
    const { liveness, advance } = setup();
    liveness.observe([1, 2, 3]);
    advance(60_000);
    liveness.observe([2, 3]);
    advance(WINDOW_MS + 1);
    liveness.observe([3]);
    assert.deepEqual([...liveness.graced()], []);
    liveness.close();
  });

  it("a lone broker vanishing around this controller's election gets the grace", () => {
    const { liveness, advance } = setup();
    liveness.observe([1]);
    advance(60_000);
    liveness.observe([]);
    assert.deepEqual([...liveness.graced()], [], "not yet active");
    advance(1_000);
    liveness.becameActive();
    assert.deepEqual([...liveness.graced()], [1], "elected right after: waits");
    advance(GRACE_MS);
    assert.deepEqual([...liveness.graced()], []);
    // Long after the election, a lone expiry is a dead broker again.
    liveness.observe([2]);
    advance(60_000);
    liveness.observe([]);
    assert.deepEqual([...liveness.graced()], []);
    liveness.close();
  });

  it("a lone broker dying a few seconds after this controller's election gets no grace", () => {
    const { liveness, advance } = setup();
    liveness.observe([1, 2]);
    liveness.becameActive();
    advance(5_000);
    liveness.observe([2]);
    // The controller watched it die: failing it over must not wait (bench:replication's SIGKILL).
    assert.deepEqual([...liveness.graced()], []);
    liveness.close();
  });

  it("calls onGraceEnd when a grace runs out", async () => {
    let ended = 0;
    const liveness = new BrokerLiveness({
      graceMs: 50,
      massWindowMs: 20,
      onGraceEnd: () => {
        ended += 1;
      },
    });
    liveness.observe([1, 2]);
    liveness.observe([]);
    assert.equal(liveness.graced().size, 2);
    await new Promise((res) => setTimeout(res, 120));
    assert.equal(liveness.graced().size, 0);
    assert.ok(ended >= 1, "onGraceEnd fired");
    liveness.close();
  });
});

/**
 * The group state machine (`services/gateway/groups/coordinator.ts`), driven with a fake clock:
 * joins and target assignment, incremental reconciliation (a moved partition is revoked from its
 * old owner first and given to the new one only once released, unchanged members keep theirs),
 * member epoch fencing, session and rebalance timeouts, the initial rebalance delay, static
 * membership, commit checks and the persisted record. A property test runs random member
 * actions and checks that no partition is ever owned by two members.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type Assignment,
  EMPTY_ASSIGNMENT,
  size,
  toKeys,
} from "../../services/gateway/groups/assignment.js";
import {
  GroupCoordinator,
  type GroupSettings,
  type HeartbeatInput,
  type HeartbeatOutput,
} from "../../services/gateway/groups/coordinator.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";

const SESSION_MS = 10_000;

function settings(extra: Partial<GroupSettings> = {}): GroupSettings {
  let next = 0;
  return {
    sessionTimeoutMsDefault: SESSION_MS,
    sessionTimeoutMsMin: 1_000,
    sessionTimeoutMsMax: 60_000,
    heartbeatIntervalMs: 1_000,
    initialRebalanceDelayMs: 0,
    newMemberId: () => `id${next++}`,
    ...extra,
  };
}

const counts = (c: Record<string, number>) => (t: string) => c[t];
const topic6 = counts({ t: 6 });

/** A member as a client plays it: it owns what it was last told, and heartbeats with it. */
class Client {
  memberId = "";
  epoch = 0;
  owned: Assignment = EMPTY_ASSIGNMENT;

  constructor(
    private readonly g: GroupCoordinator,
    readonly topics: string[] = ["t"],
    readonly extra: Partial<HeartbeatInput> = {},
  ) {}

  input(epoch = this.epoch): HeartbeatInput {
    return {
      memberId: this.memberId,
      memberEpoch: epoch,
      rebalanceTimeoutMs: 5_000,
      sessionTimeoutMs: 0,
      topics: this.topics,
      assignor: "",
      owned: this.owned,
      clientId: "c",
      clientHost: "h",
      ...this.extra,
    };
  }

  heartbeat(nowMs: number, c = topic6): HeartbeatOutput {
    const out = this.g.heartbeat(this.input(), c, nowMs);
    this.memberId = out.memberId;
    this.epoch = out.memberEpoch;
    this.owned = out.assignment;
    return out;
  }
}

/** Heartbeats every client in turn until nothing changes; returns the rounds it took. */
function settle(clients: Client[], nowMs: number, roundsMax = 10): number {
  for (let round = 1; round <= roundsMax; round++) {
    const before = clients.map((c) => `${c.epoch}${[...toKeys(c.owned)]}`).join("|");
    for (const c of clients) c.heartbeat(nowMs);
    if (clients.map((c) => `${c.epoch}${[...toKeys(c.owned)]}`).join("|") === before) return round;
  }
  assert.fail("the group did not settle");
}

/** Asserts no partition is owned by two clients. */
function assertExclusive(clients: Client[]): void {
  const seen = new Set<string>();
  for (const c of clients) {
    for (const k of toKeys(c.owned)) {
      assert.ok(!seen.has(k), `${k} owned twice`);
      seen.add(k);
    }
  }
}

const throwsCode = (fn: () => unknown, code: ErrorCode) =>
  assert.throws(fn, (err) => isSamsaError(err, code));

describe("GroupCoordinator: joining", () => {
  it("a first member gets every partition at once, with a member epoch of 1", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g);
    const out = a.heartbeat(0);
    assert.equal(out.memberId, "id0");
    assert.equal(out.memberEpoch, 1);
    assert.deepEqual(out.assignment, { t: [0, 1, 2, 3, 4, 5] });
    assert.equal(out.heartbeatIntervalMs, 1_000);
    assert.equal(g.state(0), "STABLE");
  });

  it("3 members share 6 partitions two each, each partition owned by one member throughout", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const clients = [new Client(g), new Client(g), new Client(g)];
    for (const c of clients) {
      c.heartbeat(0);
      assertExclusive(clients);
    }
    settle(clients, 0);
    assertExclusive(clients);
    assert.deepEqual(
      clients.map((c) => size(c.owned)),
      [2, 2, 2],
    );
    assert.equal(g.state(0), "STABLE");
    assert.equal(new Set(clients.map((c) => c.epoch)).size, 1, "one epoch once stable");
  });

  it("a moved partition is revoked first and assigned only after its old owner released it", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g);
    a.heartbeat(0);
    const b = new Client(g);
    const bFirst = b.heartbeat(0);
    // b's target is 3 partitions a still owns: b gets none yet, but already the new epoch.
    assert.deepEqual(bFirst.assignment, {});
    assert.equal(bFirst.memberEpoch, 2);
    assert.equal(g.state(0), "RECONCILING");
    // a is told to drop 3 (its epoch stays until it did).
    const aOut = a.heartbeat(0);
    assert.equal(size(aOut.assignment), 3);
    assert.equal(aOut.memberEpoch, 1);
    assert.equal(g.memberState(a.memberId), "UNREVOKED_PARTITIONS");
    // b still gets nothing: the revoked ones are released only by a's next heartbeat.
    assert.deepEqual(b.heartbeat(0).assignment, {});
    assert.equal(a.heartbeat(0).memberEpoch, 2, "a's release moves it to the new epoch");
    assert.equal(size(b.heartbeat(0).assignment), 3);
    assertExclusive([a, b]);
    assert.equal(g.state(0), "STABLE");
  });

  it("members whose partitions do not change keep them through a rebalance", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const clients = [new Client(g), new Client(g), new Client(g)];
    for (const c of clients) c.heartbeat(0);
    settle(clients, 0);
    const before = clients.map((c) => [...toKeys(c.owned)]);
    // A member subscribing to another topic changes nothing for t's partitions.
    const d = new Client(g, ["u"]);
    d.heartbeat(0, counts({ t: 6, u: 2 }));
    for (const c of clients) {
      const out = c.heartbeat(0, counts({ t: 6, u: 2 }));
      assert.deepEqual([...toKeys(out.assignment)], before[clients.indexOf(c)]);
    }
  });

  it("waits group.initial.rebalance.delay.ms before the first assignment of an empty group", () => {
    const g = new GroupCoordinator("g", settings({ initialRebalanceDelayMs: 3_000 }), 0);
    const a = new Client(g);
    const b = new Client(g);
    assert.deepEqual(a.heartbeat(0).assignment, {});
    assert.equal(a.epoch, 0);
    assert.deepEqual(b.heartbeat(1_000).assignment, {});
    assert.deepEqual(a.heartbeat(2_000).assignment, {}, "epoch 0 again is a heartbeat, not a join");
    assert.equal(g.state(2_000), "ASSIGNING");
    assert.equal(g.tick(3_000, topic6), true);
    settle([a, b], 3_000);
    assert.deepEqual([size(a.owned), size(b.owned)], [3, 3]);
  });

  it("refuses session timeouts outside the bounds, unknown assignors, and joins without topics", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const c = new Client(g);
    throwsCode(
      () => g.heartbeat({ ...c.input(), sessionTimeoutMs: 500 }, topic6, 0),
      ErrorCode.INVALID_SESSION_TIMEOUT,
    );
    throwsCode(
      () => g.heartbeat({ ...c.input(), sessionTimeoutMs: 61_000 }, topic6, 0),
      ErrorCode.INVALID_SESSION_TIMEOUT,
    );
    throwsCode(
      () => g.heartbeat({ ...c.input(), assignor: "magic" }, topic6, 0),
      ErrorCode.UNSUPPORTED_ASSIGNOR,
    );
    throwsCode(
      () => g.heartbeat({ ...c.input(), topics: [] }, topic6, 0),
      ErrorCode.INVALID_REQUEST,
    );
    assert.equal(g.memberCount, 0);
  });

  it("uses the assignor most members name", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    new Client(g, ["t"], { assignor: "range" }).heartbeat(0);
    assert.equal(g.assignor(), "range");
    new Client(g, ["t"], { assignor: "uniform" }).heartbeat(0);
    new Client(g, ["t"], { assignor: "uniform" }).heartbeat(0);
    assert.equal(g.assignor(), "uniform");
  });
});

describe("GroupCoordinator: leaving and timeouts", () => {
  it("a leave gives the member's partitions to the others at once", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const [a, b] = [new Client(g), new Client(g)];
    a.heartbeat(0);
    b.heartbeat(0);
    settle([a, b], 0);
    const out = g.heartbeat(a.input(-1), topic6, 0);
    assert.equal(out.memberEpoch, -1);
    assert.equal(size(b.heartbeat(0).assignment), 6);
    throwsCode(() => a.heartbeat(0), ErrorCode.UNKNOWN_MEMBER);
  });

  it("a member silent past its session is removed and its partitions move", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const [a, b] = [new Client(g), new Client(g)];
    a.heartbeat(0);
    b.heartbeat(0);
    settle([a, b], 0);
    b.heartbeat(SESSION_MS - 1);
    assert.equal(g.tick(SESSION_MS - 1, topic6), false, "a is still in its session");
    assert.equal(g.tick(SESSION_MS, topic6), true);
    assert.equal(g.member(a.memberId), undefined);
    assert.equal(size(b.heartbeat(SESSION_MS).assignment), 6);
    throwsCode(() => a.heartbeat(SESSION_MS + 1), ErrorCode.UNKNOWN_MEMBER);
    assert.equal(g.commitCheck(a.memberId, a.epoch), ErrorCode.UNKNOWN_MEMBER);
  });

  it("a member that does not revoke within its rebalance timeout is removed", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g);
    a.heartbeat(0);
    const b = new Client(g);
    b.heartbeat(0);
    const told = g.heartbeat(a.input(), topic6, 0); // a is told to revoke, but keeps owning all
    assert.equal(size(told.assignment), 3);
    g.heartbeat(a.input(), topic6, 4_000);
    assert.ok(g.member(a.memberId) !== undefined);
    b.heartbeat(4_000);
    g.tick(5_000, topic6);
    assert.equal(g.member(a.memberId), undefined);
    assert.equal(size(b.heartbeat(5_000).assignment), 6);
  });
});

describe("GroupCoordinator: epochs and commits", () => {
  it("fences a heartbeat with an unknown epoch, and tolerates the previous one (lost answer)", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g);
    a.heartbeat(0);
    throwsCode(() => g.heartbeat(a.input(7), topic6, 0), ErrorCode.FENCED_MEMBER_EPOCH);
    const b = new Client(g);
    b.heartbeat(0);
    a.heartbeat(0); // revoke
    a.heartbeat(0); // released: a moves to epoch 2
    assert.equal(a.epoch, 2);
    // a's answer was lost: it heartbeats with epoch 1 and the 3 partitions it kept.
    const out = g.heartbeat(a.input(1), topic6, 0);
    assert.equal(out.memberEpoch, 2);
  });

  it("commits: the current or previous epoch, owned partitions only; a rejoin restarts the member", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g);
    a.heartbeat(0);
    assert.equal(g.commitCheck(a.memberId, 1), ErrorCode.NONE);
    assert.equal(g.commitCheck(a.memberId, 5), ErrorCode.STALE_MEMBER_EPOCH);
    assert.equal(g.commitCheck("nobody", 1), ErrorCode.UNKNOWN_MEMBER);
    assert.equal(g.commitCheck("", -1), ErrorCode.NON_EMPTY_GROUP);
    const b = new Client(g);
    b.heartbeat(0);
    a.heartbeat(0); // a must revoke 3, which it still may commit
    const revoked = [...toKeys({ t: [0, 1, 2, 3, 4, 5] })].filter((k) => !toKeys(a.owned).has(k));
    const [, p] = revoked[0]!.split(":");
    assert.ok(g.owns(a.memberId, "t", Number(p)), "a being revoked may still commit");
    a.heartbeat(0); // released
    assert.ok(!g.owns(a.memberId, "t", Number(p)), "after the release it may not");
    b.heartbeat(0);
    assert.ok(g.owns(b.memberId, "t", Number(p)));
    assert.equal(g.ownerOf("t", Number(p)), b.memberId);
  });

  it("an empty group takes commits from a non-member", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    assert.equal(g.commitCheck("", -1), ErrorCode.NONE);
  });
});

describe("GroupCoordinator: static membership", () => {
  it("a static member that leaves temporarily and rejoins gets its partitions back, no rebalance", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g, ["t"], { instanceId: "i-a" });
    const b = new Client(g, ["t"], { instanceId: "i-b" });
    a.heartbeat(0);
    b.heartbeat(0);
    settle([a, b], 0);
    const epochBefore = g.epoch;
    const aOwned = a.owned;
    g.heartbeat(a.input(-2), topic6, 1_000);
    assert.equal(g.memberState(a.memberId), "DEPARTED");
    // b keeps its three partitions; a's wait for its instance id.
    assert.equal(size(b.heartbeat(2_000).assignment), 3);
    const a2 = new Client(g, ["t"], { instanceId: "i-a" });
    const out = a2.heartbeat(3_000);
    assert.notEqual(out.memberId, a.memberId);
    assert.deepEqual(out.assignment, aOwned);
    assert.equal(out.memberEpoch, a.epoch);
    assert.equal(g.epoch, epochBefore, "no group epoch bump: no rebalance");
    assert.equal(size(b.heartbeat(3_000).assignment), 3);
    throwsCode(() => a.heartbeat(3_000), ErrorCode.UNKNOWN_MEMBER);
  });

  it("a static member's instance id held by a live member is UNRELEASED_INSTANCE_ID", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    new Client(g, ["t"], { instanceId: "i" }).heartbeat(0);
    const other = new Client(g, ["t"], { instanceId: "i" });
    throwsCode(() => other.heartbeat(0), ErrorCode.UNRELEASED_INSTANCE_ID);
  });

  it("a departed static member's session expiry gives its partitions away", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g, ["t"], { instanceId: "i-a" });
    const b = new Client(g);
    a.heartbeat(0);
    b.heartbeat(0);
    settle([a, b], 0);
    g.heartbeat(a.input(-2), topic6, 1_000);
    b.heartbeat(SESSION_MS);
    g.tick(1_000 + SESSION_MS, topic6);
    assert.equal(g.memberCount, 1);
    assert.equal(size(b.heartbeat(1_000 + SESSION_MS).assignment), 6);
  });
});

describe("GroupCoordinator: record", () => {
  it("a new owner resumes from the record with every member and assignment, fresh sessions", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const [a, b] = [new Client(g), new Client(g)];
    a.heartbeat(0);
    b.heartbeat(0);
    settle([a, b], 0);
    const record = JSON.parse(JSON.stringify(g.record()));
    const g2 = new GroupCoordinator("g", settings(), 50_000, record);
    assert.equal(g2.state(50_000), "STABLE");
    assert.equal(g2.tick(50_000 + SESSION_MS - 1, topic6), false, "sessions restart on load");
    const out = g2.heartbeat(a.input(), topic6, 50_001);
    assert.deepEqual(out.assignment, a.owned);
    assert.equal(out.memberEpoch, a.epoch);
  });

  it("bumps the group epoch when a subscribed topic gains partitions", () => {
    const g = new GroupCoordinator("g", settings(), 0);
    const a = new Client(g);
    a.heartbeat(0);
    const epoch = g.epoch;
    const out = a.heartbeat(0, counts({ t: 8 }));
    assert.equal(g.epoch, epoch + 1);
    assert.equal(size(out.assignment), 8);
  });
});

describe("GroupCoordinator: property", () => {
  it("no partition is ever owned by two members, whatever members do", () => {
    const action = fc.record({
      who: fc.integer({ min: 0, max: 4 }),
      what: fc.constantFrom("heartbeat", "heartbeat", "heartbeat", "join", "leave", "stall"),
      advanceMs: fc.integer({ min: 0, max: 4_000 }),
    });
    fc.assert(
      fc.property(fc.array(action, { maxLength: 80 }), (actions) => {
        const g = new GroupCoordinator("g", settings(), 0);
        const clients: (Client | undefined)[] = [];
        let now = 0;
        for (const { who, what, advanceMs } of actions) {
          now += advanceMs;
          g.tick(now, topic6);
          // A member that the group removed stops owning anything when it hears so.
          try {
            const c = clients[who];
            if (what === "join" && c === undefined) {
              const fresh = new Client(g);
              clients[who] = fresh;
              fresh.heartbeat(now);
            } else if (c !== undefined && what === "heartbeat") {
              c.heartbeat(now);
            } else if (c !== undefined && what === "leave") {
              g.heartbeat(c.input(-1), topic6, now);
              clients[who] = undefined;
            }
          } catch (err) {
            if (!isSamsaError(err)) throw err;
            clients[who] = undefined; // fenced or removed: it drops everything
          }
          // What the group lets each live member own never overlaps.
          const seen = new Set<string>();
          for (const m of g.memberList()) {
            for (const k of [...toKeys(m.assigned), ...toKeys(m.pendingRevocation)]) {
              assert.ok(!seen.has(k), `${k} owned twice`);
              seen.add(k);
            }
          }
        }
      }),
    );
  });
});

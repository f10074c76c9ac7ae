/**
 * The pure steps of a partition reassignment (services/controller/partition-reassignment.ts):
 * start (the full replica list, adding and removing), waiting for the ISR, the leadership move,
 * completion, cancel and replacement; the target checks; the partition state's reassignment
 * fields through etcd's JSON; and the CLI's plan parsing and reports.
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import type {
  PartitionReassignment,
  ReassignmentResult,
} from "../../services/client/admin-client.js";
import type { AdminApi, CliContext } from "../../services/cli/commands/context.js";
import { formatTopicDescription } from "../../services/cli/commands/output.js";
import { runCli } from "../../services/cli/commands/program.js";
import {
  formatOngoing,
  parsePlan,
  parseReassignmentArg,
  verifyReport,
} from "../../services/cli/commands/reassign-partitions.js";
import {
  cancelReassignment,
  reassignmentStep,
  startReassignment,
  targetReplicas,
  validateTarget,
} from "../../services/controller/partition-reassignment.js";
import {
  decodePartitionState,
  encodePartitionState,
  isReassigning,
  type PartitionState,
} from "../../services/shared/etcd/keys.js";
import { ErrorCode, isSamsaError, SamsaError } from "../../services/shared/errors.js";

const live = new Set([1, 2, 3, 4]);

function state(over: Partial<PartitionState> = {}): PartitionState {
  return { replicas: [1, 2], leader: 1, leaderEpoch: 5, isr: [1, 2], partitionEpoch: 10, ...over };
}

function roundTrip(s: PartitionState): PartitionState {
  const value = Buffer.from(encodePartitionState(s));
  return decodePartitionState({
    key: "/samsa/t/partitions/x/0",
    value,
    createRevision: 1,
    modRevision: 1,
    lease: "0",
  });
}

describe("startReassignment", () => {
  test("the full replica list is the target, then the replicas removed", () => {
    const out = startReassignment(state(), [2, 3], live);
    assert.equal(out.error, undefined);
    assert.deepEqual(out.next, {
      replicas: [2, 3, 1],
      leader: 1,
      leaderEpoch: 5,
      isr: [1, 2],
      partitionEpoch: 11,
      addingReplicas: [3],
      removingReplicas: [1],
    });
    assert.deepEqual(targetReplicas(out.next!), [2, 3]);
  });

  test("the current replicas: nothing to write; another order: at once, no reassignment", () => {
    assert.deepEqual(startReassignment(state(), [1, 2], live), { next: undefined });
    const reorder = startReassignment(state(), [2, 1], live).next!;
    assert.deepEqual(reorder.replicas, [2, 1]);
    assert.equal(isReassigning(reorder), false);
    assert.equal(reorder.leader, 1, "a reorder moves no leader");
  });

  test("a new target replaces the one in progress, from the original replicas", () => {
    const first = startReassignment(state(), [2, 3], live).next!;
    const joined = { ...first, isr: [1, 2, 3], partitionEpoch: 12 };
    const second = startReassignment(joined, [2, 4], live).next!;
    assert.deepEqual(second.replicas, [2, 4, 1]);
    assert.deepEqual(second.addingReplicas, [4]);
    assert.deepEqual(second.removingReplicas, [1]);
    assert.deepEqual(second.isr, [1, 2], "the replaced adding replica left the ISR");
    assert.equal(second.partitionEpoch, 13);
  });

  test("the same target again leaves the reassignment in progress as it is", () => {
    const first = startReassignment(state(), [2, 3], live).next!;
    const joined = { ...first, isr: [1, 2, 3] };
    assert.deepEqual(startReassignment(joined, [2, 3], live), { next: undefined });
    assert.deepEqual(startReassignment(joined, [3, 2], live).next?.replicas, [3, 2, 1]);
  });

  test("replacing with the original replicas is a cancel", () => {
    const first = startReassignment(state(), [2, 3], live).next!;
    const back = startReassignment(first, [1, 2], live).next!;
    assert.deepEqual(back.replicas, [1, 2]);
    assert.equal(isReassigning(back), false);
  });
});

describe("reassignmentStep", () => {
  const started = startReassignment(state(), [2, 3], live).next!;

  test("waits while an adding replica is out of the ISR", () => {
    assert.equal(reassignmentStep(started, live), undefined);
    assert.equal(reassignmentStep(state(), live), undefined, "no reassignment: no step");
  });

  test("then moves the leadership to the first target replica in the ISR (epoch + 1)", () => {
    const joined = { ...started, isr: [1, 2, 3] };
    const step = reassignmentStep(joined, live)!;
    assert.equal(step.kind, "leader");
    assert.equal(step.next.leader, 2);
    assert.equal(step.next.leaderEpoch, 6);
    assert.deepEqual(step.next.replicas, [2, 3, 1], "the replicas stay until the next step");
    assert.equal(step.next.partitionEpoch, started.partitionEpoch + 1);
  });

  test("a dead target replica is not given the leadership", () => {
    const joined = { ...started, isr: [1, 2, 3] };
    const step = reassignmentStep(joined, new Set([1, 3]))!;
    assert.equal(step.next.leader, 3);
    assert.equal(reassignmentStep(joined, new Set([1])), undefined, "no target alive: wait");
  });

  test("then completes: the target replicas, the ISR without the removed, no reassignment", () => {
    const led = { ...started, isr: [1, 2, 3], leader: 2, leaderEpoch: 6 };
    const step = reassignmentStep(led, live)!;
    assert.equal(step.kind, "complete");
    assert.deepEqual(step.next, {
      replicas: [2, 3],
      leader: 2,
      leaderEpoch: 6,
      isr: [2, 3],
      partitionEpoch: started.partitionEpoch + 1,
    });
    assert.equal(reassignmentStep(step.next, live), undefined, "done");
  });

  test("a leader already in the target completes without a leader change", () => {
    const grow = startReassignment(state(), [1, 2, 3], live).next!;
    const step = reassignmentStep({ ...grow, isr: [1, 2, 3] }, live)!;
    assert.equal(step.kind, "complete");
    assert.equal(step.next.leaderEpoch, 5);
    assert.deepEqual(step.next.replicas, [1, 2, 3]);
  });

  test("a shrink (nothing to add) moves on at once", () => {
    const shrink = startReassignment(state(), [2], live).next!;
    assert.deepEqual(shrink.addingReplicas, []);
    assert.deepEqual(shrink.removingReplicas, [1]);
    const move = reassignmentStep(shrink, live)!;
    assert.equal(move.kind, "leader");
    const done = reassignmentStep(move.next, live)!;
    assert.deepEqual(done.next.replicas, [2]);
    assert.deepEqual(done.next.isr, [2]);
  });
});

describe("cancelReassignment", () => {
  test("restores the replicas from before and drops the adding ones from the ISR", () => {
    const started = startReassignment(state(), [1, 3], live).next!;
    const out = cancelReassignment({ ...started, isr: [1, 2, 3] }, live);
    assert.deepEqual(out.next, {
      replicas: [1, 2],
      leader: 1,
      leaderEpoch: 5,
      isr: [1, 2],
      partitionEpoch: started.partitionEpoch + 1,
    });
  });

  test("an adding replica that leads hands the leadership back (epoch + 1)", () => {
    const started = startReassignment(state(), [3], live).next!;
    const led = { ...started, isr: [1, 2, 3], leader: 3, leaderEpoch: 6 };
    const out = cancelReassignment(led, live).next!;
    assert.equal(out.leader, 1);
    assert.equal(out.leaderEpoch, 7);
    assert.deepEqual(out.replicas, [1, 2]);
  });

  test("NO_REASSIGNMENT_IN_PROGRESS without one; no live original replica in sync: refused", () => {
    assert.equal(cancelReassignment(state(), live).error, ErrorCode.NO_REASSIGNMENT_IN_PROGRESS);
    const started = startReassignment(state(), [3], live).next!;
    const led = { ...started, isr: [3], leader: 3, leaderEpoch: 6 };
    assert.equal(cancelReassignment(led, live).error, ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE);
  });
});

describe("validateTarget", () => {
  const code = (f: () => void) => {
    try {
      f();
      return ErrorCode.NONE;
    } catch (err) {
      assert.ok(isSamsaError(err));
      return err.code;
    }
  };

  test("duplicates, unknown brokers and an empty list are INVALID_REPLICA_ASSIGNMENT", () => {
    assert.equal(
      code(() => validateTarget([1, 2], live)),
      ErrorCode.NONE,
    );
    assert.equal(
      code(() => validateTarget([1, 1], live)),
      ErrorCode.INVALID_REPLICA_ASSIGNMENT,
    );
    assert.equal(
      code(() => validateTarget([1, 9], live)),
      ErrorCode.INVALID_REPLICA_ASSIGNMENT,
    );
    assert.equal(
      code(() => validateTarget([], live)),
      ErrorCode.INVALID_REPLICA_ASSIGNMENT,
    );
  });
});

describe("the partition state's reassignment fields in etcd", () => {
  test("survive encode and decode while in progress, and vanish once complete", () => {
    const started = startReassignment(state(), [2, 3], live).next!;
    assert.deepEqual(roundTrip(started), started);
    const plain = roundTrip(state());
    assert.equal("addingReplicas" in plain, false);
    assert.equal(
      encodePartitionState({ ...state(), addingReplicas: [], removingReplicas: [] }),
      encodePartitionState(state()),
    );
  });

  test("writers that spread the state keep the reassignment (an ISR change by the leader)", () => {
    const started = startReassignment(state(), [2, 3], live).next!;
    const isrWrite = { ...started, isr: [1, 2, 3], partitionEpoch: started.partitionEpoch + 1 };
    assert.deepEqual(roundTrip(isrWrite).addingReplicas, [3]);
  });

  test("adding or removing replicas outside the replicas are refused", () => {
    assert.throws(() => roundTrip({ ...state(), addingReplicas: [7], removingReplicas: [] }));
    assert.throws(() => roundTrip({ ...state(), addingReplicas: [1], removingReplicas: [1] }));
  });
});

describe("samsa reassign-partitions plans", () => {
  test("--reassignment topic:partition=replicas, and topic:partition for --cancel", () => {
    assert.deepEqual(parseReassignmentArg("orders:0=1,2,3"), {
      topic: "orders",
      partition: 0,
      replicas: [1, 2, 3],
    });
    assert.deepEqual(parseReassignmentArg("a.b_c-d:12"), {
      topic: "a.b_c-d",
      partition: 12,
      replicas: null,
    });
    for (const bad of ["orders=1,2", ":0=1", "orders:x=1", "orders:0=1,,2", "orders:0=a"]) {
      assert.throws(() => parseReassignmentArg(bad), /INVALID_REQUEST|expected|broker ids/, bad);
    }
  });

  test("Kafka's JSON plan", () => {
    const plan = parsePlan(
      '{"version":1,"partitions":[{"topic":"t","partition":1,"replicas":[3,1],"log_dirs":["any","any"]}]}',
    );
    assert.deepEqual(plan, [{ topic: "t", partition: 1, replicas: [3, 1] }]);
    assert.throws(() => parsePlan("{}"));
    assert.throws(() => parsePlan('{"partitions":[{"topic":"t"}]}'));
    assert.throws(() => parsePlan("not json"));
  });

  test("--list and --verify reports", () => {
    assert.equal(formatOngoing([]), "No partition reassignments found.\n");
    const ongoing = [
      { topic: "t", partition: 0, replicas: [2, 3, 1], addingReplicas: [3], removingReplicas: [1] },
    ];
    assert.equal(
      formatOngoing(ongoing),
      "Current partition reassignments:\nt-0: replicas: 2,3,1. adding: 3. removing: 1.\n",
    );
    const partition = (p: number, replicas: number[]) => ({
      partition: p,
      leaderId: replicas[0]!,
      leaderEpoch: 0,
      replicas,
      isr: replicas,
      offlineReplicas: [],
      error: ErrorCode.NONE,
    });
    const topics = [
      {
        name: "t",
        error: null,
        topicId: "",
        configs: {},
        partitions: [partition(0, [2, 3, 1]), partition(1, [2, 3]), partition(2, [1, 2])],
      },
    ];
    const plan = [0, 1, 2].map((p) => ({ topic: "t", partition: p, replicas: [2, 3] }));
    const report = verifyReport(plan, ongoing, topics);
    assert.equal(report.ok, false);
    assert.equal(
      report.text,
      [
        "Reassignment of partition t-0 is still in progress.",
        "Reassignment of partition t-1 is completed.",
        "There is no active reassignment of partition t-2, but replica set is 1,2 rather than 2,3.",
        "",
      ].join("\n"),
    );
  });
});

/** A CLI context with collected output and a fake admin. */
function fakeContext(admin: Partial<AdminApi>) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CliContext = {
    stdin: Readable.from([]),
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => err.push(s) },
    env: {},
    signal: new AbortController().signal,
    createAdmin: () => ({ close: () => {}, ...admin }) as AdminApi,
  };
  return { ctx, out: () => out.join(""), err: () => err.join("") };
}

describe("samsa reassign-partitions with a fake admin", () => {
  const describeTopics = async () => [
    {
      name: "t",
      error: null,
      topicId: "",
      configs: {},
      partitions: [
        {
          partition: 0,
          leaderId: 1,
          leaderEpoch: 0,
          replicas: [1, 2],
          isr: [1, 2],
          offlineReplicas: [],
          error: ErrorCode.NONE,
        },
      ],
    },
  ];

  test("--execute prints the rollback plan, starts, and reports refusals (exit 1)", async () => {
    const calls: PartitionReassignment[][] = [];
    const alterPartitionReassignments = async (r: readonly PartitionReassignment[]) => {
      calls.push([...r]);
      return r.map(
        (x): ReassignmentResult => ({
          topic: x.topic,
          partition: x.partition,
          error:
            x.partition === 0
              ? null
              : new SamsaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "broker 9 is not registered"),
        }),
      );
    };
    const f = fakeContext({ describeTopics, alterPartitionReassignments });
    const args = ["reassign-partitions", "--execute", "--reassignment", "t:0=2,3"];
    const code = await runCli([...args, "--reassignment", "t:1=9"], f.ctx);
    assert.equal(code, 1);
    assert.deepEqual(calls, [
      [
        { topic: "t", partition: 0, replicas: [2, 3] },
        { topic: "t", partition: 1, replicas: [9] },
      ],
    ]);
    assert.ok(
      f.out().includes('{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2]'),
    );
    assert.match(f.out(), /Successfully started partition reassignments for t-0\n/);
    assert.match(
      f.out(),
      /Error reassigning partition\(s\):\nt-1: INVALID_REPLICA_ASSIGNMENT: broker 9 is not registered/,
    );
  });

  test("topics describe shows Adding Replicas and Removing Replicas while one runs", async () => {
    const [t] = await describeTopics();
    const ongoing = [
      { topic: "t", partition: 0, replicas: [1, 2], addingReplicas: [2], removingReplicas: [] },
    ];
    assert.equal(
      formatTopicDescription(t!, () => true, ongoing),
      "\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\tAdding Replicas: 2\tRemoving Replicas: \n",
    );
    assert.doesNotMatch(
      formatTopicDescription(t!, () => true),
      /Adding/,
    );
  });

  test("--cancel sends null replicas; exactly one action and one plan source", async () => {
    const calls: PartitionReassignment[][] = [];
    const alterPartitionReassignments = async (r: readonly PartitionReassignment[]) => {
      calls.push([...r]);
      return r.map((x) => ({ topic: x.topic, partition: x.partition, error: null }));
    };
    const f = fakeContext({ alterPartitionReassignments });
    assert.equal(
      await runCli(["reassign-partitions", "--cancel", "--reassignment", "t:0"], f.ctx),
      0,
    );
    assert.deepEqual(calls, [[{ topic: "t", partition: 0, replicas: null }]]);
    assert.match(f.out(), /Successfully cancelled partition reassignments for: t-0/);
    for (const bad of [
      ["reassign-partitions", "--reassignment", "t:0=1"],
      ["reassign-partitions", "--execute", "--list"],
      ["reassign-partitions", "--execute"],
      ["reassign-partitions", "--execute", "--reassignment", "t:0"],
    ]) {
      const g = fakeContext({ alterPartitionReassignments, describeTopics });
      assert.equal(await runCli(bad, g.ctx), 1, bad.join(" "));
      assert.match(g.err(), /INVALID_REQUEST/, bad.join(" "));
    }
    assert.equal(calls.length, 1, "nothing sent for bad arguments");
  });
});

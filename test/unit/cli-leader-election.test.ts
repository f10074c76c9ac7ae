/**
 * The CLI's replication views with a fake admin: `samsa leader-election` (kafka-leader-election's
 * options and report) and `topics describe --under-replicated-partitions` /
 * `--unavailable-partitions` (kafka-topics' filters).
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import type {
  ElectionResult,
  ElectionType,
  TopicDescription,
  TopicPartition,
} from "../../services/client/admin-client.js";
import type { AdminApi, CliContext } from "../../services/cli/commands/context.js";
import { electionTargets } from "../../services/cli/commands/leader-election.js";
import { formatElectionResults } from "../../services/cli/commands/output.js";
import { runCli } from "../../services/cli/commands/program.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";

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
    createAdmin: () =>
      ({ close: () => {}, listPartitionReassignments: async () => [], ...admin }) as AdminApi,
  };
  return { ctx, out: () => out.join(""), err: () => err.join("") };
}

const result = (
  topic: string,
  partition: number,
  code: ErrorCode = ErrorCode.NONE,
  message = "",
): ElectionResult => ({
  topic,
  partition,
  error: code === ErrorCode.NONE ? null : new SamsaError(code, message),
  leaderId: 1,
  leaderEpoch: 3,
});

describe("samsa leader-election", () => {
  it("elects one partition's preferred leader and says so", async () => {
    const calls: [ElectionType, readonly TopicPartition[] | undefined][] = [];
    const electLeaders = async (type: ElectionType, partitions?: readonly TopicPartition[]) => {
      calls.push([type, partitions]);
      return [result("t", 0)];
    };
    const f = fakeContext({ electLeaders });
    const args = [
      "leader-election",
      "--election-type",
      "PREFERRED",
      "--topic",
      "t",
      "--partition",
      "0",
    ];
    assert.equal(await runCli(args, f.ctx), 0, f.err());
    assert.deepEqual(calls, [["preferred", [{ topic: "t", partition: 0 }]]]);
    assert.equal(
      f.out(),
      "Successfully completed leader election (PREFERRED) for partitions t-0\n",
    );
  });

  it("--all-topic-partitions asks for every partition; nothing to do is said too", async () => {
    const calls: (readonly TopicPartition[] | undefined)[] = [];
    const electLeaders = async (_type: ElectionType, partitions?: readonly TopicPartition[]) => {
      calls.push(partitions);
      return [];
    };
    const f = fakeContext({ electLeaders });
    const code = await runCli(
      ["leader-election", "--election-type", "preferred", "--all-topic-partitions"],
      f.ctx,
    );
    assert.equal(code, 0, f.err());
    assert.deepEqual(calls, [undefined]);
    assert.equal(f.out(), "No partition needed a leader election.\n");
  });

  it("reports each partition's outcome and fails when one could not be elected", async () => {
    const electLeaders = async () => [
      result("t", 0),
      result("t", 1, ErrorCode.ELECTION_NOT_NEEDED, "the preferred replica 2 leads"),
      result(
        "t",
        2,
        ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
        "the preferred replica 3 is not alive",
      ),
      result("u", 0),
    ];
    const f = fakeContext({ electLeaders });
    const code = await runCli(
      ["leader-election", "--election-type", "preferred", "--all-topic-partitions"],
      f.ctx,
    );
    assert.equal(code, 1);
    assert.equal(
      f.out(),
      "Successfully completed leader election (PREFERRED) for partitions t-0, u-0\n" +
        "Valid replica already elected for partitions t-1\n" +
        "Error completing leader election (PREFERRED) for partition: t-2: PREFERRED_LEADER_NOT_AVAILABLE: the preferred replica 3 is not alive\n",
    );
    assert.equal(
      f.err(),
      "error: PREFERRED_LEADER_NOT_AVAILABLE: 1 replica(s) could not be elected\n",
    );
  });

  it("ELECTION_NOT_NEEDED alone is no failure", async () => {
    const electLeaders = async () => [result("t", 0, ErrorCode.ELECTION_NOT_NEEDED, "leads")];
    const f = fakeContext({ electLeaders });
    const args = [
      "leader-election",
      "--election-type",
      "unclean",
      "--topic",
      "t",
      "--partition",
      "0",
    ];
    assert.equal(await runCli(args, f.ctx), 0, f.err());
    assert.equal(f.out(), "Valid replica already elected for partitions t-0\n");
  });

  it("refuses bad option combinations before calling the controller", async () => {
    let called = false;
    const electLeaders = async () => {
      called = true;
      return [];
    };
    for (const [args, why] of [
      [["leader-election", "--all-topic-partitions"], /required option '--election-type <type>'/],
      [
        ["leader-election", "--election-type", "fast", "--all-topic-partitions"],
        /preferred or unclean/,
      ],
      [
        ["leader-election", "--election-type", "preferred", "--topic", "t"],
        /--topic with --partition/,
      ],
      [["leader-election", "--election-type", "preferred"], /--all-topic-partitions/],
      [
        [
          "leader-election",
          "--election-type",
          "preferred",
          "--topic",
          "t",
          "--partition",
          "0",
          "--all-topic-partitions",
        ],
        /excludes/,
      ],
      [
        ["leader-election", "--election-type", "preferred", "--topic", "t", "--partition", "-1"],
        /invalid/,
      ],
    ] as const) {
      const f = fakeContext({ electLeaders });
      assert.equal(await runCli(args, f.ctx), 1, args.join(" "));
      assert.match(f.err(), why, args.join(" "));
    }
    assert.equal(called, false);
  });

  it("derives the targets like kafka-leader-election", () => {
    assert.deepEqual(electionTargets({ topic: "t", partition: 2 }), [{ topic: "t", partition: 2 }]);
    assert.equal(electionTargets({ allTopicPartitions: true }), undefined);
    assert.throws(() => electionTargets({ partition: 2 }), /--topic with --partition/);
  });

  it("formats unclean elections with their type", () => {
    assert.equal(
      formatElectionResults("unclean", [result("t", 4)]),
      "Successfully completed leader election (UNCLEAN) for partitions t-4\n",
    );
  });
});

describe("samsa topics describe filters", () => {
  const topic: TopicDescription = {
    name: "t",
    error: null,
    topicId: "id1",
    configs: {},
    partitions: [
      {
        partition: 0,
        error: 0,
        leaderId: 1,
        leaderEpoch: 0,
        replicas: [1, 2, 3],
        isr: [1, 2, 3],
        offlineReplicas: [],
      },
      {
        partition: 1,
        error: 0,
        leaderId: 2,
        leaderEpoch: 1,
        replicas: [2, 3, 1],
        isr: [2, 3],
        offlineReplicas: [],
      },
      {
        partition: 2,
        error: 0,
        leaderId: -1,
        leaderEpoch: 2,
        replicas: [3],
        isr: [3],
        offlineReplicas: [3],
      },
      {
        partition: 3,
        error: 0,
        leaderId: 3,
        leaderEpoch: 2,
        replicas: [3, 1],
        isr: [3, 1],
        offlineReplicas: [3],
      },
    ],
  };
  const describeTopics = async () => [topic];
  const line = (p: number, leader: string, replicas: string, isr: string, offline?: string) =>
    `\tTopic: t\tPartition: ${p}\tLeader: ${leader}\tReplicas: ${replicas}\tIsr: ${isr}${offline ? `\tOffline: ${offline}` : ""}\n`;

  it("--under-replicated-partitions: only partitions whose ISR is smaller than their replicas, no summary", async () => {
    const f = fakeContext({ describeTopics });
    assert.equal(await runCli(["topics", "describe", "--under-replicated-partitions"], f.ctx), 0);
    assert.equal(f.out(), line(1, "2", "2,3,1", "2,3"));
  });

  it("--unavailable-partitions: only partitions without a live leader", async () => {
    const f = fakeContext({ describeTopics });
    assert.equal(await runCli(["topics", "describe", "--unavailable-partitions"], f.ctx), 0);
    assert.equal(f.out(), line(2, "none", "3", "3", "3") + line(3, "3", "3,1", "3,1", "3"));
  });

  it("both filters: partitions matching either; without filters the summary line comes back", async () => {
    const f = fakeContext({ describeTopics });
    const args = [
      "topics",
      "describe",
      "--under-replicated-partitions",
      "--unavailable-partitions",
    ];
    assert.equal(await runCli(args, f.ctx), 0);
    assert.equal(
      f.out(),
      line(1, "2", "2,3,1", "2,3") +
        line(2, "none", "3", "3", "3") +
        line(3, "3", "3,1", "3,1", "3"),
    );
    const g = fakeContext({ describeTopics });
    assert.equal(await runCli(["topics", "describe"], g.ctx), 0);
    assert.match(g.out(), /^Topic: t\tTopicId: id1\tPartitionCount: 4/);
    assert.equal(g.out().split("\n").length - 1, 5);
  });
});

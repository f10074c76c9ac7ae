import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Readable } from "node:stream";
import { InvalidArgumentError } from "commander";
import { parseAddressList } from "../../services/shared/grpc/addresses.js";
import type {
  ClusterDescription,
  CreatedTopic,
  NewTopic,
  TopicDescription,
} from "../../services/client/admin-client.js";
import {
  collectConfig,
  intAtLeast,
  parseAcks,
  parseCompression,
  parseOffset,
  resolveEndpoints,
  splitKeyedLine,
} from "../../services/cli/commands/args.js";
import { startOf } from "../../services/cli/commands/consume.js";
import type { AdminApi, CliContext } from "../../services/cli/commands/context.js";
import {
  formatError,
  formatRecord,
  formatTopicDescription,
} from "../../services/cli/commands/output.js";
import { runCli } from "../../services/cli/commands/program.js";
import {
  BOOTSTRAP_ENV,
  CONTROLLER_ENV,
  DEFAULT_BOOTSTRAP_SERVERS,
  DEFAULT_CONTROLLERS,
} from "../../services/cli/defaults.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { CompressionType } from "../../services/shared/record-batch/index.js";

describe("produce --key-separator", () => {
  it("splits at the first separator only", () => {
    assert.deepEqual(splitKeyedLine("k:v", ":", 1), { key: "k", value: "v" });
    assert.deepEqual(splitKeyedLine("k:v:w", ":", 1), { key: "k", value: "v:w" });
    assert.deepEqual(splitKeyedLine(":v", ":", 1), { key: "", value: "v" });
    assert.deepEqual(splitKeyedLine("k:", ":", 1), { key: "k", value: "" });
    assert.deepEqual(splitKeyedLine("a=>b", "=>", 1), { key: "a", value: "b" });
  });

  it("takes the whole line as the value, key null, without a separator", () => {
    assert.deepEqual(splitKeyedLine("k:v", undefined, 1), { key: null, value: "k:v" });
    assert.deepEqual(splitKeyedLine("", undefined, 1), { key: null, value: "" });
  });

  it("rejects a line without the separator, naming the line", () => {
    assert.throws(
      () => splitKeyedLine("novalue", ":", 7),
      (err: unknown) =>
        err instanceof SamsaError &&
        err.code === ErrorCode.INVALID_REQUEST &&
        /line 7/.test(err.message),
    );
  });
});

describe("topics create --config", () => {
  it("collects repeated key=value pairs, splitting at the first =", () => {
    let configs = collectConfig("retention.ms=1000");
    configs = collectConfig("cleanup.policy=compact", configs);
    configs = collectConfig("x=a=b", configs);
    assert.deepEqual(configs, { "retention.ms": "1000", "cleanup.policy": "compact", x: "a=b" });
  });

  it("lets the last value of a key win and allows an empty value", () => {
    assert.deepEqual(collectConfig("a=2", collectConfig("a=1")), { a: "2" });
    assert.deepEqual(collectConfig("a="), { a: "" });
  });

  it("rejects a pair without = or without a key", () => {
    assert.throws(() => collectConfig("novalue"), InvalidArgumentError);
    assert.throws(() => collectConfig("=v"), InvalidArgumentError);
  });
});

describe("bootstrap and controller addresses", () => {
  it("parses comma-separated host:port lists, trimming and dropping duplicates", () => {
    assert.deepEqual(parseAddressList("a:1, b:2,,a:1 "), ["a:1", "b:2"]);
    assert.deepEqual(parseAddressList(["a:1,b:2", "c:3"]), ["a:1", "b:2", "c:3"]);
    assert.deepEqual(parseAddressList("[::1]:9092"), ["[::1]:9092"]);
  });

  it("rejects malformed entries, port 0 and an empty list with INVALID_CONFIG", () => {
    for (const bad of ["", " , ", "host", "host:", ":9092", "a:0", "a:70000", "a b:1", "::1:9"]) {
      assert.throws(
        () => parseAddressList(bad),
        (err: unknown) => err instanceof SamsaError && err.code === ErrorCode.INVALID_CONFIG,
        bad,
      );
    }
  });

  it("takes the flag, else the environment, else the local cluster's defaults", () => {
    const env = { [BOOTSTRAP_ENV]: "e:1", [CONTROLLER_ENV]: "c:1,c:2" };
    assert.deepEqual(resolveEndpoints({ bootstrapServer: "f:1" }, env).bootstrap, ["f:1"]);
    assert.deepEqual(resolveEndpoints({}, env).bootstrap, ["e:1"]);
    assert.deepEqual(resolveEndpoints({}, env).controllers, ["c:1", "c:2"]);
    const none = resolveEndpoints({}, { [BOOTSTRAP_ENV]: "  " });
    assert.deepEqual(none.bootstrap, DEFAULT_BOOTSTRAP_SERVERS);
    assert.deepEqual(none.controllers, DEFAULT_CONTROLLERS);
  });

  it("parses each list only when used", () => {
    const endpoints = resolveEndpoints({ controller: "bad" }, {});
    assert.deepEqual(endpoints.bootstrap, DEFAULT_BOOTSTRAP_SERVERS);
    assert.throws(() => endpoints.controllers, /"bad" is not host:port/);
  });
});

describe("option values", () => {
  it("parses integers strictly", () => {
    assert.equal(intAtLeast(1)("3"), 3);
    for (const bad of ["0", "-1", "1.5", "2x", "", "1e3"]) {
      assert.throws(() => intAtLeast(1)(bad), InvalidArgumentError, bad);
    }
  });

  it("parses acks, compression and offsets", () => {
    assert.equal(parseAcks("0"), 0);
    assert.equal(parseAcks("1"), 1);
    assert.equal(parseAcks("all"), "all");
    assert.equal(parseAcks("-1"), "all");
    assert.throws(() => parseAcks("2"), InvalidArgumentError);
    assert.equal(parseCompression("gzip"), CompressionType.GZIP);
    assert.equal(parseCompression("ZSTD"), CompressionType.ZSTD);
    assert.throws(() => parseCompression("snappy"), InvalidArgumentError);
    assert.equal(parseOffset("42"), 42);
    assert.equal(parseOffset("earliest"), "earliest");
    assert.throws(() => parseOffset("-3"), InvalidArgumentError);
  });

  it("derives the consumer's start like kafka-console-consumer", () => {
    assert.equal(startOf({}), "latest");
    assert.equal(startOf({ fromBeginning: true }), "earliest");
    assert.deepEqual(startOf({ partition: 0, offset: 5 }), { offset: 5 });
    assert.equal(startOf({ partition: 0, offset: "earliest" }), "earliest");
    assert.throws(() => startOf({ offset: 5 }), /--offset requires --partition/);
    assert.throws(() => startOf({ partition: 0, offset: 5, fromBeginning: true }), /exclude/);
  });
});

describe("output", () => {
  it("formats a SamsaError as error: <CODE_NAME>: message, on one line", () => {
    const err = new SamsaError(ErrorCode.TOPIC_ALREADY_EXISTS, "topic t already exists");
    assert.equal(formatError(err), "error: TOPIC_ALREADY_EXISTS: topic t already exists");
    assert.equal(
      formatError(new SamsaError(ErrorCode.NOT_LEADER, "a\n  b")),
      "error: NOT_LEADER: a b",
    );
    assert.equal(formatError(new Error("boom")), "error: UNKNOWN: boom");
    assert.equal(formatError("text"), "error: UNKNOWN: text");
  });

  it("describes a topic in kafka-topics' layout", () => {
    const topic: TopicDescription = {
      name: "t",
      error: null,
      topicId: "id1",
      configs: { "retention.ms": "10", "cleanup.policy": "compact" },
      partitions: [
        {
          partition: 0,
          error: 0,
          leaderId: 1,
          leaderEpoch: 0,
          replicas: [1, 2],
          isr: [1, 2],
          offlineReplicas: [],
        },
        {
          partition: 1,
          error: 0,
          leaderId: -1,
          leaderEpoch: 3,
          replicas: [2, 3],
          isr: [],
          offlineReplicas: [2, 3],
        },
      ],
    };
    assert.equal(
      formatTopicDescription(topic),
      "Topic: t\tTopicId: id1\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: cleanup.policy=compact,retention.ms=10\n" +
        "\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\n" +
        "\tTopic: t\tPartition: 1\tLeader: none\tReplicas: 2,3\tIsr: \tOffline: 2,3\n",
    );
  });

  it("prints records like the console consumer", () => {
    const r = {
      topic: "t",
      partition: 2,
      offset: 7,
      timestamp: 0,
      key: null,
      value: Buffer.from("v"),
      headers: [],
    };
    const all = { printKey: true, printOffset: true, printPartition: true, keySeparator: "\t" };
    assert.equal(formatRecord(r, all), "Partition:2\tOffset:7\tnull\tv\n");
    const plain = {
      printKey: false,
      printOffset: false,
      printPartition: false,
      keySeparator: "\t",
    };
    assert.equal(formatRecord({ ...r, value: null }, plain), "null\n");
  });
});

/** A CLI context with collected output and a fake admin that records its calls. */
function fakeContext(admin: Partial<AdminApi>, env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const controllers: (readonly string[])[] = [];
  const ctx: CliContext = {
    stdin: Readable.from([]),
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => err.push(s) },
    env,
    signal: new AbortController().signal,
    createAdmin: (c) => {
      controllers.push(c);
      return { close: () => {}, ...admin } as AdminApi;
    },
  };
  return { ctx, out, err, controllers };
}

describe("samsa CLI (commander wiring, fake admin)", () => {
  it("creates a topic with partitions, replication factor and repeated --config", async () => {
    const calls: NewTopic[][] = [];
    const createTopics = async (topics: readonly NewTopic[]): Promise<CreatedTopic[]> => {
      calls.push([...topics]);
      return [{ name: "t", error: null, topicId: "x", numPartitions: 3, replicationFactor: 2 }];
    };
    const f = fakeContext({ createTopics }, { [CONTROLLER_ENV]: "c:9" });
    const args = [
      "topics",
      "create",
      "--topic",
      "t",
      "--partitions",
      "3",
      "--replication-factor",
      "2",
    ];
    const code = await runCli([...args, "--config", "a=1", "--config", "b=x=y"], f.ctx);
    assert.equal(code, 0, f.err.join(""));
    assert.deepEqual(calls, [
      [{ name: "t", numPartitions: 3, replicationFactor: 2, configs: { a: "1", b: "x=y" } }],
    ]);
    assert.deepEqual(f.controllers, [["c:9"]]);
    assert.equal(f.out.join(""), "Created topic t.\n");
  });

  it("takes global options after the subcommand too", async () => {
    const listTopics = async () => ["a", "b"];
    const f = fakeContext({ listTopics });
    const code = await runCli(["topics", "list", "--controller", "h:1,h:2"], f.ctx);
    assert.equal(code, 0, f.err.join(""));
    assert.deepEqual(f.controllers, [["h:1", "h:2"]]);
    assert.equal(f.out.join(""), "a\nb\n");
  });

  it("prints a per-topic error as error: <CODE>: message and exits 1, unless --if-not-exists", async () => {
    const exists = new SamsaError(ErrorCode.TOPIC_ALREADY_EXISTS, "topic t already exists");
    const createTopics = async () => [
      { name: "t", error: exists, topicId: "", numPartitions: 0, replicationFactor: 0 },
    ];
    const f = fakeContext({ createTopics });
    assert.equal(await runCli(["topics", "create", "--topic", "t"], f.ctx), 1);
    assert.equal(f.err.join(""), "error: TOPIC_ALREADY_EXISTS: topic t already exists\n");
    const g = fakeContext({ createTopics });
    assert.equal(await runCli(["topics", "create", "--topic", "t", "--if-not-exists"], g.ctx), 0);
  });

  it("reports a failed call without a stack trace", async () => {
    const describeCluster = async (): Promise<ClusterDescription> => {
      throw new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "no controller answered");
    };
    const f = fakeContext({ describeCluster });
    assert.equal(await runCli(["cluster", "describe"], f.ctx), 1);
    assert.equal(f.err.join(""), "error: LEADER_NOT_AVAILABLE: no controller answered\n");
  });

  it("exits 1 on usage errors with commander's message, 0 on --help", async () => {
    const f = fakeContext({});
    assert.equal(await runCli(["topics", "create"], f.ctx), 1);
    assert.match(f.err.join(""), /required option '--topic <name>'/);
    const g = fakeContext({});
    assert.equal(await runCli(["topics", "create", "--topic", "t", "--partitions", "x"], g.ctx), 1);
    assert.match(g.err.join(""), /--partitions <n>.*invalid/);
    const h = fakeContext({});
    assert.equal(await runCli(["--help"], h.ctx), 0);
    assert.match(h.out.join(""), /Usage: samsa/);
  });

  it("rejects a malformed --bootstrap-server before connecting", async () => {
    const f = fakeContext({});
    const code = await runCli(["produce", "--topic", "t", "--bootstrap-server", "nope"], f.ctx);
    assert.equal(code, 1);
    assert.equal(f.err.join(""), 'error: INVALID_CONFIG: "nope" is not host:port\n');
  });
});

/**
 * The `samsa` CLI end to end against a real local cluster (etcd, 1 controller, 3 brokers as
 * processes): every command runs as its own child process (`node scripts/samsa.mjs ...`, as a
 * user would run it) pointed at the cluster's ephemeral ports through SAMSA_BOOTSTRAP and
 * SAMSA_CONTROLLER. The topic goes through create, list, describe, produce, consume and delete;
 * a bad topic name fails with exit code 1 and a one-line error.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
  type LocalCluster,
  startLocalCluster,
} from "../../services/local-cluster/local-cluster.js";
import { type CliRun, runCli } from "../support/cli.js";
import { waitFor } from "../support/wait-for.js";

/** Longest one CLI run may take, ms (its own operations time out after 30 s by default). */
const CLI_RUN_TIMEOUT_MS = 20_000;
/** How long a new topic's partitions may take to get leaders, and a deleted topic to go, ms. */
const TOPIC_SETTLE_TIMEOUT_MS = 15_000;
/** Pause between two polls that each start a CLI process, ms. */
const CLI_POLL_INTERVAL_MS = 200;
/** `consume --timeout-ms` of the run that expects no record beyond those produced, ms. */
const IDLE_TIMEOUT_MS = 3_000;
const PARTITIONS = 3;
const RECORDS = 200;
const KEYS = 7;

/** `KEEP_CLUSTER_DATA=1` keeps the cluster's dir (data and `logs/<name>.log`) to debug a failure. */
const KEEP_DATA = process.env.KEEP_CLUSTER_DATA === "1";

describe("samsa CLI round trip (child processes, real cluster)", { timeout: 90_000 }, () => {
  let cluster: LocalCluster;
  const topic = `cli-${randomBytes(4).toString("hex")}`;

  /** Runs `samsa <args>` with `input` on stdin; killed (and reported) past the run timeout. */
  const samsa = (args: readonly string[], input = ""): Promise<CliRun> =>
    runCli(args, {
      bootstrap: cluster.bootstrap.join(","),
      controller: cluster.controllers.join(","),
      timeoutMs: CLI_RUN_TIMEOUT_MS,
      input,
    });
  /** Runs `samsa <args>` and asserts exit code 0; returns the run. */
  const ok = async (args: readonly string[], input = ""): Promise<CliRun> => {
    const run = await samsa(args, input);
    assert.equal(
      run.code,
      0,
      `samsa ${args.join(" ")} exited ${run.code ?? run.signal}; stderr: ${run.stderr}`,
    );
    return run;
  };
  const listed = async (): Promise<string[]> =>
    (await ok(["topics", "list"])).stdout.split("\n").filter((l) => l !== "");

  before(async () => {
    cluster = await startLocalCluster({
      controllers: 1,
      brokers: 3,
      keepDataDir: KEEP_DATA,
    });
    if (KEEP_DATA) console.log(`cluster data and logs: ${cluster.dataDir}`);
  });

  after(async () => {
    await cluster?.stop();
  });

  test("topics create prints success", async () => {
    const run = await ok([
      "topics",
      "create",
      "--topic",
      topic,
      "--partitions",
      String(PARTITIONS),
      "--replication-factor",
      "1",
    ]);
    assert.equal(run.stdout, `Created topic ${topic}.\n`);
  });

  test("topics list names the topic", async () => {
    assert.ok((await listed()).includes(topic), "the new topic is listed");
  });

  test("topics describe shows every partition with a leader", async () => {
    const brokerIds = cluster.brokerProcesses.map((b) => b.id);
    const lines = await waitFor(
      async () => {
        const out = (await ok(["topics", "describe", "--topic", topic])).stdout;
        const partitionLines = out.split("\n").filter((l) => l.startsWith("\tTopic: "));
        // Right after creation a partition may still show `Leader: none`.
        return partitionLines.every((l) => !l.includes("Leader: none")) ? out : undefined;
      },
      {
        timeoutMs: TOPIC_SETTLE_TIMEOUT_MS,
        intervalMs: CLI_POLL_INTERVAL_MS,
        message: "describe to show a leader for every partition",
      },
    );
    const [summary, ...rest] = lines.trimEnd().split("\n");
    assert.match(summary!, new RegExp(`^Topic: ${topic}\tTopicId: \\S+\tPartitionCount: 3\t`));
    assert.match(summary!, /\tReplicationFactor: 1\t/);
    assert.equal(rest.length, PARTITIONS, "one line per partition");
    rest.forEach((line, p) => {
      const m = new RegExp(
        `^\tTopic: ${topic}\tPartition: ${p}\tLeader: (\\d+)\tReplicas: (\\d+)\tIsr: (\\d+)$`,
      ).exec(line);
      assert.ok(m, `partition line ${p}: ${JSON.stringify(line)}`);
      assert.ok(brokerIds.includes(m[1]!), `leader ${m[1]} is a broker of the cluster`);
      assert.equal(m[2], m[1], "with RF 1 the only replica leads");
      assert.equal(m[3], m[1], "and is the ISR");
    });
  });

  test("produce sends every stdin line and consume prints each exactly once", async () => {
    const input = Array.from({ length: RECORDS }, (_, i) => `k${i % KEYS}:v${i}\n`).join("");
    const produced = await ok(["produce", "--topic", topic, "--key-separator", ":"], input);
    assert.equal(produced.stdout, "", "produce prints nothing on success");

    const consumed = await ok([
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--max-messages",
      String(RECORDS),
      "--timeout-ms",
      "10000",
      "--print-key",
    ]);
    assert.match(consumed.stderr, new RegExp(`Processed a total of ${RECORDS} messages`));
    const lines = consumed.stdout.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, RECORDS, "max-messages lines");
    const seen = new Set<number>();
    const lastIndexOfKey = new Map<string, number>();
    for (const line of lines) {
      // The default key separator of consume --print-key is a tab.
      const m = /^k(\d+)\tv(\d+)$/.exec(line);
      assert.ok(m, `a key<TAB>value line: ${JSON.stringify(line)}`);
      const key = `k${m[1]}`;
      const i = Number(m[2]);
      assert.equal(i % KEYS, Number(m[1]), `v${i} has the key it was produced with`);
      assert.ok(!seen.has(i), `v${i} printed once`);
      seen.add(i);
      // A key maps to one partition, and a partition is read in order.
      const previous = lastIndexOfKey.get(key) ?? -1;
      assert.ok(i > previous, `${key}: v${i} after v${previous}`);
      lastIndexOfKey.set(key, i);
    }
    assert.equal(seen.size, RECORDS, "every value printed");

    // Nothing beyond the 200 (no batch written twice): asked for one more, consume prints the
    // same 200 and ends at its idle timeout.
    const all = await ok([
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--max-messages",
      String(RECORDS + 1),
      "--timeout-ms",
      String(IDLE_TIMEOUT_MS),
    ]);
    assert.match(all.stderr, new RegExp(`Processed a total of ${RECORDS} messages`));
  });

  test("cluster describe lists the controller and the three brokers", async () => {
    const out = (await ok(["cluster", "describe"])).stdout;
    const lines = out.trimEnd().split("\n");
    assert.match(lines[0]!, /^ClusterId: \S+$/);
    const [controllerAddress] = cluster.controllers;
    assert.match(
      lines[1]!,
      new RegExp(`^Controller: controller-1\tAddress: ${controllerAddress}\tEpoch: \\d+$`),
    );
    const brokers = lines.slice(2);
    assert.deepEqual(
      brokers,
      cluster.brokerProcesses.map((b) => `Broker: ${b.id}\tAddress: ${b.address}\tRack: none`),
    );
  });

  test("an invalid topic name fails with exit code 1 and a one-line error", async () => {
    const run = await samsa([
      "topics",
      "create",
      "--topic",
      "no spaces!",
      "--partitions",
      "1",
      "--replication-factor",
      "1",
    ]);
    assert.equal(run.code, 1, `exit code (stderr: ${run.stderr})`);
    assert.match(run.stderr, /^error: INVALID_TOPIC: .+\n$/);
    assert.equal(run.stdout, "");
  });

  test("topics delete removes the topic from the list", async () => {
    const run = await ok(["topics", "delete", "--topic", topic]);
    assert.equal(run.stdout, `Deleted topic ${topic}.\n`);
    await waitFor(async () => !(await listed()).includes(topic), {
      timeoutMs: TOPIC_SETTLE_TIMEOUT_MS,
      intervalMs: CLI_POLL_INTERVAL_MS,
      message: `topics list without ${topic}`,
    });
  });
});

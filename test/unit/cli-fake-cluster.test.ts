/**
 * The `samsa` CLI as a child process (`node scripts/samsa.mjs`, no build) against the
 * in-process fake cluster, pointed at it by SAMSA_BOOTSTRAP / SAMSA_CONTROLLER: the same way the
 * integration tests will run it against a real cluster on ephemeral ports.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { BOOTSTRAP_ENV, CONTROLLER_ENV } from "../../services/cli/defaults.js";
import { type FakeCluster, startFakeCluster } from "../support/fake-cluster.js";

/** Longest one CLI run may take in these tests, ms (tsx compiles on first start). */
const CLI_RUN_TIMEOUT_MS = 30_000;
const SHIM = fileURLToPath(new URL("../../scripts/samsa.mjs", import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let fake: FakeCluster;

/** Runs `samsa <args>` with the fake cluster's addresses in the environment. */
function samsa(args: string[], input = ""): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SHIM, ...args], {
      env: {
        ...process.env,
        [BOOTSTRAP_ENV]: fake.brokers.map((b) => b.address).join(","),
        // The standby first: the CLI must follow its NOT_CONTROLLER hint.
        [CONTROLLER_ENV]: fake.controllers.join(","),
      },
      stdio: ["pipe", "pipe", "pipe"],
      timeout: CLI_RUN_TIMEOUT_MS,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

before(async () => {
  fake = await startFakeCluster(2);
});

after(async () => {
  await fake?.stop();
});

describe("samsa CLI round trip (child process, fake cluster)", () => {
  const topic = `cli-${Date.now()}`;

  it("creates and describes a topic", async () => {
    const created = await samsa(["topics", "create", "--topic", topic, "--partitions", "2"]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout, `Created topic ${topic}.\n`);
    const described = await samsa(["topics", "describe", "--topic", topic]);
    assert.equal(described.code, 0, described.stderr);
    const lines = described.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, new RegExp(`^Topic: ${topic}\tTopicId: \\S+\tPartitionCount: 2\t`));
    assert.equal(lines[1], `\tTopic: ${topic}\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1`);
    assert.equal(lines[2], `\tTopic: ${topic}\tPartition: 1\tLeader: 2\tReplicas: 2\tIsr: 2`);
    const listed = await samsa(["topics", "list"]);
    assert.ok(listed.stdout.split("\n").includes(topic));
  });

  it("produces keyed lines from stdin and consumes them back", async () => {
    const produced = await samsa(
      ["produce", "--topic", topic, "--key-separator", ":", "--acks", "all"],
      "k1:v1\nk2:v2\nk3:v:3\n",
    );
    assert.equal(produced.code, 0, produced.stderr);
    const consumed = await samsa([
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--max-messages",
      "3",
      "--print-key",
    ]);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.deepEqual(consumed.stdout.trimEnd().split("\n").sort(), ["k1\tv1", "k2\tv2", "k3\tv:3"]);
    assert.match(consumed.stderr, /Processed a total of 3 messages/);
  });

  it("reads one partition from an offset, and stops after --timeout-ms without news", async () => {
    const produced = await samsa(["produce", "--topic", topic, "--partition", "0"], "a\nb\nc\n");
    assert.equal(produced.code, 0, produced.stderr);
    const end = fake.topics.get(topic)![0]!.next;
    const consumed = await samsa([
      "consume",
      "--topic",
      topic,
      "--partition",
      "0",
      "--offset",
      String(end - 2),
      "--timeout-ms",
      "1000",
      "--print-offset",
    ]);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.equal(consumed.stdout, `Offset:${end - 2}\tb\nOffset:${end - 1}\tc\n`);
  });

  it("prints errors as error: <CODE>: message, exit 1, no stack trace", async () => {
    const again = await samsa(["topics", "create", "--topic", topic]);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, `error: TOPIC_ALREADY_EXISTS: topic ${topic} already exists\n`);
    const bad = await samsa(["produce", "--topic", topic, "--key-separator", ":"], "nokey\n");
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'error: INVALID_REQUEST: no key separator ":" on line 1\n');
  });

  it("describes the cluster", async () => {
    const run = await samsa(["cluster", "describe"]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "ClusterId: fake-cluster");
    assert.equal(lines.length, 4);
    assert.match(lines[2]!, /^Broker: 1\tAddress: 127\.0\.0\.1:\d+\tRack: none$/);
  });
});

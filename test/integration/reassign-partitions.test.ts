/**
 * Partition reassignment (AlterPartitionReassignments / ListPartitionReassignments, KIP-455) on
 * a real local cluster: etcd, 2 controllers, 3 brokers and a gateway as processes, a topic with
 * replication factor 2 and min.insync.replicas 2, the oracle's acks=all senders running
 * throughout.
 *
 * 1. The partition moves off its leader onto the third broker: the new replica catches up and
 *    is in the ISR, the leadership moved to a target replica (epoch bumped), the dropped broker
 *    deleted its log directory, and every acknowledged record is read back (the oracle).
 * 2. The active controller is SIGKILLed while the new replica cannot catch up (it is paused with
 *    SIGSTOP, so the reassignment is visibly in progress with its adding and removing replicas,
 *    also through the gateway); once it runs again the standby, now active, completes the
 *    reassignment from etcd.
 * 3. Bad input: an unknown broker and a duplicate replica are INVALID_REPLICA_ASSIGNMENT, an
 *    unknown partition or topic UNKNOWN_TOPIC_OR_PARTITION, a cancel without a reassignment
 *    NO_REASSIGNMENT_IN_PROGRESS, a partition named twice INVALID_REQUEST (also through the CLI).
 * 4. A new target replaces a reassignment in progress (the same target again changes nothing).
 * 5. `samsa reassign-partitions` --execute, --list, --cancel and --verify (and `topics describe`
 *    and `samsa_controller_reassigning_partitions` while one runs): the cancel restores the
 *    original replicas.
 */
import assert from "node:assert/strict";
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { AdminClient } from "../../services/client/index.js";
import { runCli } from "../../services/cli/commands/program.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { unary } from "../../services/shared/grpc/client.js";
import { waitFor } from "../support/wait-for.js";
import {
  CALL_DEADLINE_MS,
  Clients,
  createTopics,
  startTestCluster,
  uniqueTopic,
} from "./cluster-helpers.js";
import {
  checkOracle,
  OracleProducer,
  type PartitionInfo,
  partitionInfos,
  waitForIsr,
} from "./replication-helpers.js";

const BROKERS = [1, 2, 3];
const REPLICAS = 2;
const MIN_ISR = 2;
/**
 * Broker lease TTL, ms: long enough that a new replica paused just before a reassignment names
 * it is still registered when the controller validates the request, on a busy machine too.
 */
const SESSION_MS = 10_000;
/** How long a reassignment, an election or an ISR change may take, ms. */
const SETTLE_MS = 45_000;
/** Acknowledged records to wait for before and after a reassignment. */
const ACKS_BEFORE = 100;
const ACKS_AFTER = 100;

const BROKER_ARGS = [
  `--broker.session.timeout.ms=${SESSION_MS}`,
  "--replica.lag.time.max.ms=3000",
  "--replica.fetch.backoff.ms=100",
  "--replica.fetch.wait.max.ms=200",
];

/** Same members, any order. */
const sameSet = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((x) => b.includes(x));

/** A new RF 2 topic of one partition with both replicas in the ISR; its state. */
async function newTopic(cluster: LocalCluster, clients: Clients, prefix: string) {
  const topic = uniqueTopic(prefix);
  const admin = clients.admin((await cluster.activeController()).address);
  const [r] = await createTopics(admin, [
    {
      name: topic,
      numPartitions: 1,
      replicationFactor: REPLICAS,
      configs: { "min.insync.replicas": String(MIN_ISR) },
    },
  ]);
  assert.equal(r!.errorCode, 0, `create ${topic}: ${r!.errorMessage}`);
  const infos = await waitForIsr(
    cluster,
    clients,
    topic,
    1,
    (p) => p.isr.length === REPLICAS,
    SETTLE_MS,
    "full ISR",
  );
  return { topic, info: infos.get(0)! };
}

/** The partition directory of `topic`-0 on broker `id`. */
function partitionDir(cluster: LocalCluster, id: number, topic: string): string {
  return join(cluster.dataDir, `broker-${id}`, `${topic}-0`);
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** Waits until partition 0 has exactly `target` as replicas (in order), all in the ISR. */
async function waitForReplicas(
  cluster: LocalCluster,
  clients: Clients,
  topic: string,
  target: readonly number[],
  what: string,
): Promise<PartitionInfo> {
  const infos = await waitForIsr(
    cluster,
    clients,
    topic,
    1,
    (p) => p.replicas.join() === target.join() && sameSet(p.isr, target),
    SETTLE_MS,
    what,
  );
  return infos.get(0)!;
}

/** Runs `samsa <args>` in this process against the cluster's controllers. */
async function samsa(cluster: LocalCluster, args: readonly string[]) {
  let stdout = "";
  let stderr = "";
  const code = await runCli([...args, "--controller", cluster.controllers.join(",")], {
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: {},
    signal: new AbortController().signal,
  });
  return { code, stdout, stderr };
}

/** `samsa_controller_reassigning_partitions` on the active controller's `/metrics`. */
async function reassigningGauge(cluster: LocalCluster): Promise<number> {
  const { handle } = await cluster.activeController();
  const host = handle.address.slice(0, handle.address.lastIndexOf(":"));
  const res = await fetch(`http://${host}:${handle.metricsPort}/metrics`, {
    signal: AbortSignal.timeout(CALL_DEADLINE_MS),
  });
  const line = (await res.text())
    .split("\n")
    .find((l) => l.startsWith("samsa_controller_reassigning_partitions"));
  assert.ok(line, "the gauge is exported");
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Whether controller `name`'s log says it completed the reassignment of `topic`. */
async function completedBy(cluster: LocalCluster, name: string, topic: string): Promise<boolean> {
  const text = await readFile(join(cluster.logDir, `${name}.log`), "utf8").catch(() => "");
  return text
    .split("\n")
    .some((l) => l.includes('"message":"reassignment completed"') && l.includes(topic));
}

describe("partition reassignment (RF 2, min ISR 2, 3 brokers)", { timeout: 300_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const fresh = new Clients();
  let admin: AdminClient;

  before(async () => {
    cluster = await startTestCluster({
      controllers: 2,
      brokers: 3,
      gateways: 1,
      brokerArgs: BROKER_ARGS,
    });
    admin = new AdminClient({ controllers: cluster.controllers });
  });
  after(async () => {
    admin?.close();
    clients.close();
    fresh.close();
    await cluster?.stop();
  });

  test("moves a partition off its leader under acks=all load; nothing acknowledged is lost", async () => {
    const { topic, info } = await newTopic(cluster, clients, "reassign-move");
    const oldLeader = info.leader;
    const follower = info.replicas.find((r) => r !== oldLeader)!;
    const added = BROKERS.find((b) => !info.replicas.includes(b))!;
    const target = [follower, added];
    assert.ok(await exists(partitionDir(cluster, oldLeader, topic)), "the leader has the log");

    const producer = new OracleProducer(cluster, clients, topic, 1);
    producer.start();
    try {
      await producer.waitForMoreAcks(ACKS_BEFORE, SETTLE_MS, "acks before the reassignment");
      const [r] = await admin.alterPartitionReassignments([
        { topic, partition: 0, replicas: target },
      ]);
      assert.equal(r?.error, null, String(r?.error));

      const done = await waitForReplicas(cluster, clients, topic, target, "the target replicas");
      assert.ok(target.includes(done.leader), `leader ${done.leader} is a target replica`);
      assert.notEqual(done.leader, oldLeader, "the leadership moved off the removed replica");
      assert.ok(done.leaderEpoch > info.leaderEpoch, "the leader move bumped the epoch");
      assert.ok(done.isr.includes(added), "the new replica is in the ISR");
      assert.deepEqual(await admin.listPartitionReassignments(), [], "none left in progress");
      await waitFor(async () => !(await exists(partitionDir(cluster, oldLeader, topic))), {
        timeoutMs: SETTLE_MS,
        message: `broker ${oldLeader} deleted its copy of the partition`,
      });
      assert.ok(await exists(partitionDir(cluster, added, topic)), "the new replica has the log");
      await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks after the reassignment");
    } finally {
      await producer.stop();
    }
    await checkOracle(cluster, clients, fresh, topic, producer);
  });

  test("the standby controller completes a reassignment after the active one is SIGKILLed", async () => {
    const { topic, info } = await newTopic(cluster, clients, "reassign-failover");
    const added = BROKERS.find((b) => !info.replicas.includes(b))!;
    const kept = info.leader;
    const removed = info.replicas.find((r) => r !== kept)!;
    const target = [kept, added];
    const newReplica = cluster.broker(added);
    const producer = new OracleProducer(cluster, clients, topic, 1);
    producer.start();
    try {
      await producer.waitForMoreAcks(ACKS_BEFORE, SETTLE_MS, "acks before the reassignment");
      // The new replica cannot fetch: the reassignment stays in progress until it runs again.
      await newReplica.pause();
      const [r] = await admin.alterPartitionReassignments([
        { topic, partition: 0, replicas: target },
      ]);
      assert.equal(r?.error, null, String(r?.error));
      const ongoing = await waitFor(
        async () => (await admin.listPartitionReassignments([{ topic, partition: 0 }]))[0],
        { timeoutMs: SETTLE_MS, message: "the reassignment listed" },
      );
      assert.deepEqual(ongoing.replicas, [kept, added, removed]);
      assert.deepEqual(ongoing.addingReplicas, [added]);
      assert.deepEqual(ongoing.removingReplicas, [removed]);
      const viaGateway = new AdminClient({ controllers: cluster.gateways });
      try {
        const listed = await viaGateway.listPartitionReassignments([{ topic, partition: 0 }]);
        assert.deepEqual(listed, [ongoing], "the gateway passes the call to the controller");
      } finally {
        viaGateway.close();
      }

      const active = await cluster.activeController();
      await active.handle.kill("SIGKILL");
      const successor = await waitFor(
        async () => {
          const c = await cluster.activeController();
          return c.id !== active.id ? c : undefined;
        },
        { timeoutMs: SETTLE_MS, message: "the standby controller active" },
      );
      const still = await partitionInfos(cluster, clients, topic);
      assert.deepEqual(still?.get(0)?.replicas, [kept, added, removed], "still in progress");
      await newReplica.resume();

      const done = await waitForReplicas(
        cluster,
        clients,
        topic,
        target,
        "the standby completes it",
      );
      assert.equal(done.leader, info.leader, "a leader in the target keeps the leadership");
      assert.ok(await completedBy(cluster, successor.id, topic), "completed by the successor");
      assert.equal(await completedBy(cluster, active.id, topic), false);
      await waitFor(async () => !(await exists(partitionDir(cluster, removed, topic))), {
        timeoutMs: SETTLE_MS,
        message: `broker ${removed} deleted its copy of the partition`,
      });
      await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks after the reassignment");
    } finally {
      if (newReplica.paused) await newReplica.resume();
      await producer.stop();
      for (const c of cluster.controllerProcesses) if (!c.running) await c.restart();
    }
    await checkOracle(cluster, clients, fresh, topic, producer);
  });

  test("bad input gets typed errors", async () => {
    const { topic, info } = await newTopic(cluster, clients, "reassign-bad");
    const codeOf = async (replicas: number[] | null, partition = 0, name = topic) => {
      const [r] = await admin.alterPartitionReassignments([{ topic: name, partition, replicas }]);
      return r?.error?.code ?? ErrorCode.NONE;
    };
    assert.equal(await codeOf([info.replicas[0]!, 99]), ErrorCode.INVALID_REPLICA_ASSIGNMENT);
    assert.equal(
      await codeOf([info.replicas[0]!, info.replicas[0]!]),
      ErrorCode.INVALID_REPLICA_ASSIGNMENT,
    );
    assert.equal(await codeOf([1, 2], 1), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    assert.equal(await codeOf([1, 2], 0, `${topic}-none`), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    assert.equal(await codeOf(null), ErrorCode.NO_REASSIGNMENT_IN_PROGRESS);

    const twice = unary(
      clients.admin((await cluster.activeController()).address),
      "AlterPartitionReassignments",
      {
        topics: [
          { name: topic, partitions: [{ partition: 0, replicas: [1, 2] }] },
          { name: topic, partitions: [{ partition: 0, replicas: [2, 3] }] },
        ],
      },
      { deadlineMs: CALL_DEADLINE_MS },
    );
    await assert.rejects(
      twice,
      (err: unknown) => err instanceof SamsaError && err.code === ErrorCode.INVALID_REQUEST,
    );

    const cli = await samsa(cluster, [
      "reassign-partitions",
      "--execute",
      "--reassignment",
      `${topic}:0=${info.replicas[0]},99`,
    ]);
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, /Error reassigning partition\(s\):\n.*-0: INVALID_REPLICA_ASSIGNMENT/);
    const after = await partitionInfos(cluster, clients, topic);
    assert.deepEqual(after?.get(0)?.replicas, info.replicas, "nothing changed");
  });

  test("a new target replaces the reassignment in progress", async () => {
    const { topic, info } = await newTopic(cluster, clients, "reassign-replace");
    const [first, second] = info.replicas as [number, number];
    const added = BROKERS.find((b) => !info.replicas.includes(b))!;
    const newReplica = cluster.broker(added);
    await newReplica.pause();
    try {
      const [r] = await admin.alterPartitionReassignments([
        { topic, partition: 0, replicas: [first, added] },
      ]);
      assert.equal(r?.error, null, String(r?.error));
      const [again] = await admin.alterPartitionReassignments([
        { topic, partition: 0, replicas: [first, added] },
      ]);
      assert.equal(again?.error, null, "the same plan again is accepted");
      const [ongoing] = await admin.listPartitionReassignments([{ topic, partition: 0 }]);
      assert.deepEqual(ongoing?.addingReplicas, [added]);
      // The original brokers in the other order: the reassignment is replaced, nothing to copy.
      const [replaced] = await admin.alterPartitionReassignments([
        { topic, partition: 0, replicas: [second, first] },
      ]);
      assert.equal(replaced?.error, null, String(replaced?.error));
      await waitForReplicas(cluster, clients, topic, [second, first], "the replacing target");
      assert.deepEqual(await admin.listPartitionReassignments([{ topic, partition: 0 }]), []);
    } finally {
      await newReplica.resume();
    }
    await waitFor(async () => !(await exists(partitionDir(cluster, added, topic))), {
      timeoutMs: SETTLE_MS,
      message: `broker ${added} holds no copy of the partition`,
    });
  });

  test("samsa reassign-partitions: --execute, --list, --cancel restores the replicas, --verify", async () => {
    const { topic, info } = await newTopic(cluster, clients, "reassign-cancel");
    const added = BROKERS.find((b) => !info.replicas.includes(b))!;
    const target = [info.replicas[0]!, added];
    const plan = `${topic}:0=${target.join(",")}`;
    const newReplica = cluster.broker(added);
    await newReplica.pause();
    try {
      const exec = await samsa(cluster, [
        "reassign-partitions",
        "--execute",
        "--reassignment",
        plan,
      ]);
      assert.equal(exec.code, 0, exec.stderr);
      assert.match(exec.stdout, /Current partition replica assignment/);
      assert.ok(
        exec.stdout.includes(
          `"topic":"${topic}","partition":0,"replicas":[${info.replicas.join(",")}]`,
        ),
        exec.stdout,
      );
      assert.match(
        exec.stdout,
        new RegExp(`Successfully started partition reassignments for ${topic}-0`),
      );

      const list = await waitFor(
        async () => {
          const l = await samsa(cluster, ["reassign-partitions", "--list"]);
          return l.stdout.includes(`${topic}-0`) ? l : undefined;
        },
        { timeoutMs: SETTLE_MS, message: "the reassignment listed" },
      );
      assert.ok(
        list.stdout.includes(
          `${topic}-0: replicas: ${[...target, info.replicas[1]].join(",")}. adding: ${added}. removing: ${info.replicas[1]}.`,
        ),
        list.stdout,
      );
      const described = await samsa(cluster, ["topics", "describe", "--topic", topic]);
      assert.equal(described.code, 0, described.stderr);
      assert.ok(
        described.stdout.includes(
          `Adding Replicas: ${added}\tRemoving Replicas: ${info.replicas[1]}`,
        ),
        described.stdout,
      );
      await waitFor(async () => (await reassigningGauge(cluster)) === 1, {
        timeoutMs: SETTLE_MS,
        message: "samsa_controller_reassigning_partitions 1",
      });
      const verifying = await samsa(cluster, [
        "reassign-partitions",
        "--verify",
        "--reassignment",
        plan,
      ]);
      assert.equal(verifying.code, 0, verifying.stderr);
      assert.match(verifying.stdout, /is still in progress/);

      const cancel = await samsa(cluster, [
        "reassign-partitions",
        "--cancel",
        "--reassignment",
        `${topic}:0`,
      ]);
      assert.equal(cancel.code, 0, cancel.stderr);
      assert.match(
        cancel.stdout,
        new RegExp(`Successfully cancelled partition reassignments for: ${topic}-0`),
      );
      await waitForReplicas(cluster, clients, topic, info.replicas, "the original replicas again");
      assert.deepEqual(await admin.listPartitionReassignments([{ topic, partition: 0 }]), []);
    } finally {
      await newReplica.resume();
    }
    const none = await samsa(cluster, [
      "reassign-partitions",
      "--cancel",
      "--reassignment",
      `${topic}:0`,
    ]);
    assert.equal(none.code, 1);
    assert.match(none.stdout, /NO_REASSIGNMENT_IN_PROGRESS/);
    const verify = await samsa(cluster, [
      "reassign-partitions",
      "--verify",
      "--reassignment",
      plan,
    ]);
    assert.equal(verify.code, 1, "the plan was cancelled, not completed");
    assert.match(verify.stdout, /There is no active reassignment/);
    const original = `${topic}:0=${info.replicas.join(",")}`;
    const back = await samsa(cluster, [
      "reassign-partitions",
      "--verify",
      "--reassignment",
      original,
    ]);
    assert.equal(back.code, 0, back.stdout);
    assert.match(back.stdout, /is completed/);
    // Had the new replica opened the log before it saw the cancel, it deletes it after.
    await waitFor(async () => !(await exists(partitionDir(cluster, added, topic))), {
      timeoutMs: SETTLE_MS,
      message: `broker ${added} holds no copy of the partition`,
    });
    await waitFor(async () => (await reassigningGauge(cluster)) === 0, {
      timeoutMs: SETTLE_MS,
      message: "samsa_controller_reassigning_partitions 0",
    });
  });
});

/**
 * Replication under real faults (docs/replication.md): a local cluster of real processes (etcd,
 * 2 controllers, 3 brokers), topics with replication factor 3 and min.insync.replicas 2, and
 * acks=all senders running throughout each fault. After each fault heals, the oracle
 * (replication-helpers.ts) checks that every acknowledged record is read back at its offset,
 * once, in send order, the same for two readers. Sessions and lag timeouts are short so that a
 * fault is detected in seconds.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { LocalCluster, ProcessHandle } from "../../services/local-cluster/local-cluster.js";
import { waitFor } from "../support/wait-for.js";
import { Clients, createTopics, startTestCluster, uniqueTopic } from "./cluster-helpers.js";
import {
  checkOracle,
  OracleProducer,
  type PartitionInfo,
  partitionInfos,
  waitForIsr,
} from "./replication-helpers.js";

const PARTITIONS = 3;
const REPLICAS = 3;
const MIN_ISR = 2;
/** Broker lease TTL: a killed or paused broker is dead to the controller after this, ms. */
const SESSION_MS = 2_000;
/** `replica.lag.time.max.ms`: a silent follower leaves the ISR after this, ms. */
const LAG_MS = 3_000;
/** How long a fault's consequence (election, ISR change, rejoin) may take, ms. */
const SETTLE_MS = 30_000;
/** Acknowledged records to wait for before and after each fault. */
const ACKS_BEFORE = 200;
const ACKS_AFTER = 200;

const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

describe("replication: acks=all under faults (RF 3, min ISR 2)", { timeout: 300_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const fresh = new Clients();

  before(async () => {
    cluster = await startTestCluster({
      controllers: 2,
      brokers: 3,
      brokerArgs: [
        `--broker.session.timeout.ms=${SESSION_MS}`,
        `--replica.lag.time.max.ms=${LAG_MS}`,
        "--replica.fetch.backoff.ms=100",
        "--replica.fetch.wait.max.ms=200",
      ],
    });
  });
  after(async () => {
    clients.close();
    fresh.close();
    await cluster?.stop();
  });

  /** A new RF 3 topic whose ISRs are full; and its oracle producer, started. */
  const replicatedTopic = async (prefix: string) => {
    const topic = uniqueTopic(prefix);
    const admin = clients.admin((await cluster.activeController()).address);
    const [r] = await createTopics(admin, [
      {
        name: topic,
        numPartitions: PARTITIONS,
        replicationFactor: REPLICAS,
        configs: { "min.insync.replicas": String(MIN_ISR) },
      },
    ]);
    assert.equal(r!.errorCode, 0, `create ${topic}: ${r!.errorMessage}`);
    const infos = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      full,
      SETTLE_MS,
      `${topic}: every follower in the ISR`,
    );
    const producer = new OracleProducer(cluster, clients, topic, PARTITIONS);
    producer.start();
    await producer.waitForMoreAcks(ACKS_BEFORE, SETTLE_MS, "acks=all sends before the fault");
    return { topic, infos, producer };
  };

  const leaderOf = (infos: Map<number, PartitionInfo>, partition: number): ProcessHandle =>
    cluster.broker(infos.get(partition)!.leader);

  /** After the fault: more acks, stop, everything back in the ISR, then the oracle. */
  const finish = async (topic: string, producer: OracleProducer) => {
    await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends after the fault");
    await producer.stop();
    await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      full,
      SETTLE_MS,
      `${topic}: ISR full again`,
    );
    await checkOracle(cluster, clients, fresh, topic, producer);
    return producer;
  };

  test("every follower joins the ISR and acks=all records are on every replica's leader path", async () => {
    const { topic, infos, producer } = await replicatedTopic("repl-basic");
    for (const p of infos.values()) assert.deepEqual([...p.isr].sort(), [...p.replicas].sort());
    await finish(topic, producer);
  });

  test("SIGKILL of a partition leader: a new leader from the ISR, no acknowledged record lost", async () => {
    const { topic, infos, producer } = await replicatedTopic("repl-kill-leader");
    const victim = leaderOf(infos, 0);
    const epochBefore = infos.get(0)!.leaderEpoch;
    await victim.kill("SIGKILL");
    const after = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => p.leader !== Number(victim.id) && !p.isr.includes(Number(victim.id)),
      SETTLE_MS,
      "new leaders without the killed broker",
    );
    assert.ok(after.get(0)!.leaderEpoch > epochBefore, "the leader epoch went up");
    await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends on the new leader");
    await victim.restart();
    await finish(topic, producer);
  });

  test("SIGKILL of a follower: the ISR shrinks, writes go on with min ISR, it rejoins after restart", async () => {
    const { topic, infos, producer } = await replicatedTopic("repl-kill-follower");
    const p0 = infos.get(0)!;
    const follower = cluster.broker(p0.isr.find((id) => id !== p0.leader)!);
    await follower.kill("SIGKILL");
    await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => !p.isr.includes(Number(follower.id)) && p.isr.length === REPLICAS - 1,
      SETTLE_MS,
      "the killed follower out of every ISR",
    );
    await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends with two replicas");
    await follower.restart();
    await finish(topic, producer);
  });

  test("SIGSTOP of a leader past its session: fenced, rejoins as follower after SIGCONT", async () => {
    const { topic, infos, producer } = await replicatedTopic("repl-pause-leader");
    const victim = leaderOf(infos, 1);
    await victim.pause();
    await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => p.leader !== Number(victim.id),
      SETTLE_MS,
      "new leaders while the old one is paused",
    );
    await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends on the new leaders");
    await victim.resume();
    await finish(topic, producer);
  });

  test("SIGKILL of a leader and the active controller at once", async () => {
    const { topic, infos, producer } = await replicatedTopic("repl-kill-both");
    const victim = leaderOf(infos, 2);
    const controller = (await cluster.activeController()).handle;
    await Promise.all([victim.kill("SIGKILL"), controller.kill("SIGKILL")]);
    await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => p.leader !== Number(victim.id),
      SETTLE_MS,
      "new leaders elected by the standby controller",
    );
    await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends after both died");
    await Promise.all([victim.restart(), controller.restart()]);
    await finish(topic, producer);
  });

  test("a rolling restart with SIGTERM: leaderships move first, no send times out or is refused", async () => {
    const { topic, producer } = await replicatedTopic("repl-rolling");
    for (const broker of cluster.brokerProcesses) {
      await broker.stop(); // SIGTERM: controlled shutdown, then exit
      // The controller answered the broker's controlled shutdown with nothing left to move
      // (leaderships moved by it, not by the election that follows a broker's loss).
      assert.ok(
        await shutdownCompleted(cluster, Number(broker.id)),
        `${broker.name}'s controlled shutdown completed`,
      );
      const moved = await partitionInfos(cluster, clients, topic);
      for (const p of moved?.values() ?? []) {
        assert.notEqual(p.leader, Number(broker.id), "no partition left on the stopped broker");
      }
      await producer.waitForMoreAcks(
        ACKS_AFTER / 2,
        SETTLE_MS,
        `acks=all sends while ${broker.name} is down`,
      );
      await broker.restart();
      await waitForIsr(
        cluster,
        clients,
        topic,
        PARTITIONS,
        full,
        SETTLE_MS,
        `ISR full after ${broker.name} returned`,
      );
    }
    await finish(topic, producer);
    const bad = [...producer.failures.keys()].filter(
      (code) => code !== "NOT_LEADER" && code !== "LEADER_NOT_AVAILABLE",
    );
    assert.deepEqual(
      bad,
      [],
      `only leader moves, no timeout or refusal: ${JSON.stringify([...producer.failures])}`,
    );
  });

  test("two of three brokers killed: acks=all refused, nothing acknowledged lost after restart", async () => {
    const { topic, infos, producer } = await replicatedTopic("repl-kill-two");
    const p0 = infos.get(0)!;
    const victims = p0.replicas.filter((id) => id !== p0.leader).map((id) => cluster.broker(id));
    await Promise.all(victims.map((v) => v.kill("SIGKILL")));
    await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => p.isr.length === 1,
      SETTLE_MS,
      "ISRs of one",
    );
    const ackedAtOne = producer.ackedCount;
    const refusedBefore = producer.failures.get("NOT_ENOUGH_REPLICAS") ?? 0;
    await waitForRefusals(producer, refusedBefore + 5);
    assert.equal(producer.ackedCount, ackedAtOne, "no acks=all send acknowledged with one replica");
    const survivors = await partitionInfos(cluster, clients, topic);
    assert.ok(survivors, "metadata with one broker");
    await Promise.all(victims.map((v) => v.restart()));
    await finish(topic, producer);
  });
});

/** Whether a controller logged a controlled shutdown of `brokerId` that left nothing to move. */
async function shutdownCompleted(cluster: LocalCluster, brokerId: number): Promise<boolean> {
  for (const c of cluster.controllerProcesses) {
    const text = await readFile(c.logFile, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.includes('"message":"controlled shutdown"')) continue;
      const entry = JSON.parse(line) as { brokerId?: number; partitionsRemaining?: number };
      if (entry.brokerId === brokerId && entry.partitionsRemaining === 0) return true;
    }
  }
  return false;
}

/** Waits until the producer saw `n` NOT_ENOUGH_REPLICAS refusals in all. */
async function waitForRefusals(producer: OracleProducer, n: number): Promise<void> {
  await waitFor(() => (producer.failures.get("NOT_ENOUGH_REPLICAS") ?? 0) >= n, {
    timeoutMs: SETTLE_MS,
    message: `${n} NOT_ENOUGH_REPLICAS refusals`,
  });
}

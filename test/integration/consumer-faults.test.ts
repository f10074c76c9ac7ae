/**
 * The TypeScript consumer under broker faults (real processes, real etcd): it keeps reading the
 * partitions that have a leader while another partition is offline (its only replica SIGKILLed),
 * and it follows a partition whose leader hangs (SIGSTOP) to the new leader well before the hung
 * broker's calls time out, even when the hung broker is the one it asked for metadata. The
 * consumer's request timeout is the default 30 s, so a consumer that waited on the hung broker
 * would miss the tests' deadlines, which are a fraction of it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Cluster, Consumer, type ConsumerRecord, Producer } from "../../services/client/index.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { REQUEST_TIMEOUT_MS_DEFAULT } from "../../services/shared/retry.js";
import { waitFor } from "../support/wait-for.js";
import { Clients, createTopics, startTestCluster, uniqueTopic } from "./cluster-helpers.js";
import { partitionInfos, waitForIsr } from "./replication-helpers.js";

const PARTITIONS = 3;
/** Broker lease TTL: a killed or paused broker is dead to the controller after this, ms. */
const SESSION_MS = 2_000;
/** How long setting up a topic or a fault's consequence may take, ms. */
const SETTLE_MS = 30_000;
/**
 * How long the consumer may take to deliver records of a partition that moved off a hung leader,
 * ms: the session, the lateness margin and a metadata attempt to the hung broker, with room on a
 * busy machine; well under the request timeout a consumer stuck on the hung broker would wait.
 */
const FOLLOW_MS = 15_000;
/** How long records of partitions with a live leader may take to arrive, ms. */
const DELIVER_MS = 10_000;

describe("consumer: offline partitions and hung leaders", { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();

  before(async () => {
    assert.ok(FOLLOW_MS < REQUEST_TIMEOUT_MS_DEFAULT, "the deadline is below the request timeout");
    cluster = await startTestCluster({
      controllers: 1,
      brokers: 3,
      brokerArgs: [
        `--broker.session.timeout.ms=${SESSION_MS}`,
        "--replica.lag.time.max.ms=3000",
        "--replica.fetch.wait.max.ms=200",
      ],
      // Leaderships stay where the faults put them: no preferred leader election meanwhile.
      controllerArgs: ["--auto.leader.rebalance.enable=false"],
    });
  });
  after(async () => {
    clients.close();
    await cluster?.stop();
  });

  /** Reads `topic` from the earliest offset into `got` until `stop` aborts. */
  const reader = (consumer: Consumer, topic: string, got: ConsumerRecord[], stop: AbortSignal) =>
    (async () => {
      for await (const r of consumer.consume(topic, { from: "earliest", signal: stop }))
        got.push(r);
    })();

  const values = (got: ConsumerRecord[], partition: number) =>
    got.filter((r) => r.partition === partition).map((r) => r.value!.toString());

  test("records of partitions with a leader keep coming while another partition is offline", async () => {
    const topic = uniqueTopic("consumer-offline");
    const admin = clients.admin((await cluster.activeController()).address);
    const [r] = await createTopics(admin, [
      { name: topic, numPartitions: PARTITIONS, replicationFactor: 1 },
    ]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    const infos = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      () => true,
      SETTLE_MS,
      "leaders",
    );
    const leaders = [...infos.values()].map((p) => p.leader);
    assert.equal(new Set(leaders).size, PARTITIONS, `one partition per broker: ${leaders}`);
    const producerCluster = new Cluster({ bootstrapServers: cluster.bootstrap });
    const consumer = new Consumer({ bootstrapServers: cluster.bootstrap });
    const producer = new Producer({ cluster: producerCluster, acks: 1 });
    const stop = new AbortController();
    const got: ConsumerRecord[] = [];
    const reading = reader(consumer, topic, got, stop.signal);
    try {
      for (let p = 0; p < PARTITIONS; p++)
        await producer.send(topic, [{ value: `before-${p}`, partition: p }]);
      await waitFor(() => got.length === PARTITIONS, { timeoutMs: DELIVER_MS, message: "before" });
      // Partition 0's only replica dies: the partition is offline; the others are not.
      const victim = infos.get(0)!.leader;
      await cluster.broker(victim).kill("SIGKILL");
      await waitFor(
        async () => (await partitionInfos(cluster, clients, topic))?.get(0)?.leader === -1,
        { timeoutMs: SETTLE_MS, message: "partition 0 offline" },
      );
      for (let round = 0; round < 3; round++) {
        for (let p = 1; p < PARTITIONS; p++) {
          await producer.send(topic, [{ value: `after-${round}-${p}`, partition: p }]);
        }
      }
      await waitFor(() => values(got, 1).length === 4 && values(got, 2).length === 4, {
        timeoutMs: DELIVER_MS,
        message: "partitions 1 and 2 while partition 0 is offline",
      });
      for (let p = 1; p < PARTITIONS; p++) {
        assert.deepEqual(values(got, p), [
          `before-${p}`,
          ...[0, 1, 2].map((i) => `after-${i}-${p}`),
        ]);
      }
      assert.deepEqual(values(got, 0), ["before-0"]);
      // Back: partition 0 is read again from where it was.
      await cluster.broker(victim).restart();
      await waitForIsr(
        cluster,
        clients,
        topic,
        PARTITIONS,
        (p) => p.leader >= 0,
        SETTLE_MS,
        "back",
      );
      await producer.send(topic, [{ value: "back-0", partition: 0 }]);
      await waitFor(() => values(got, 0).length === 2, {
        timeoutMs: SETTLE_MS,
        message: "partition 0 again",
      });
      assert.deepEqual(values(got, 0), ["before-0", "back-0"]);
    } finally {
      stop.abort();
      await reading;
      await producer.close();
      producerCluster.close();
      consumer.close();
    }
  });

  test("a partition whose leader hangs (SIGSTOP) is read from its new leader before the hung calls time out", async (t) => {
    const topic = uniqueTopic("consumer-hung");
    const admin = clients.admin((await cluster.activeController()).address);
    const [r] = await createTopics(admin, [
      {
        name: topic,
        numPartitions: PARTITIONS,
        replicationFactor: 3,
        configs: { "min.insync.replicas": "1" },
      },
    ]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    const infos = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => p.isr.length === 3,
      SETTLE_MS,
      "full ISRs",
    );
    const victimId = infos.get(0)!.leader;
    const victim = cluster.broker(victimId);
    // The consumer asks the broker that will hang for metadata first.
    const others = cluster.bootstrap.filter((a) => a !== victim.address);
    const bootstrap = [victim.address, ...others];
    const consumer = new Consumer({ bootstrapServers: bootstrap });
    const producerCluster = new Cluster({ bootstrapServers: cluster.bootstrap });
    const producer = new Producer({ cluster: producerCluster, acks: "all" });
    const stop = new AbortController();
    const got: ConsumerRecord[] = [];
    const reading = reader(consumer, topic, got, stop.signal);
    try {
      await producer.send(topic, [{ value: "before", partition: 0 }]);
      await waitFor(() => values(got, 0).length === 1, {
        timeoutMs: DELIVER_MS,
        message: "before",
      });
      await victim.pause();
      const pausedAtMs = Date.now();
      const moved = await waitFor(
        async () => {
          const p = (await partitionInfos(cluster, clients, topic))?.get(0);
          return p !== undefined && p.leader >= 0 && p.leader !== victimId ? p : undefined;
        },
        { timeoutMs: SETTLE_MS, message: "a new leader of partition 0" },
      );
      // A producer that has not met the hung broker (this test is about the consumer).
      const late = new Producer({ bootstrapServers: others, acks: "all" });
      try {
        await late.send(topic, [{ value: "after", partition: 0 }]);
      } finally {
        await late.close();
      }
      const sentAtMs = Date.now();
      t.diagnostic(
        `partition 0 moved from broker ${victimId} to ${moved.leader} after ${sentAtMs - pausedAtMs} ms`,
      );
      await waitFor(() => values(got, 0).length === 2, {
        timeoutMs: FOLLOW_MS,
        message: `partition 0 read from its new leader ${moved.leader} (the old one, ${victimId}, hung)`,
      });
      t.diagnostic(`read from the new leader ${Date.now() - sentAtMs} ms after the send`);
      assert.deepEqual(values(got, 0), ["before", "after"]);
    } finally {
      stop.abort();
      if (victim.paused) await victim.resume();
      await reading;
      await producer.close();
      producerCluster.close();
      consumer.close();
    }
  });
});

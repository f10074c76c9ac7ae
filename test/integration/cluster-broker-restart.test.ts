/**
 * Broker restarts in a real local cluster (etcd, 2 controllers, 3 brokers as processes): a
 * broker stopped gracefully (SIGTERM) or crashed (SIGKILL) and started again with the same id
 * and data dir serves every record it acknowledged (acks=leader means written to the OS, which
 * survives a process kill), takes its partitions back and continues their offsets.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { LocalCluster, ProcessHandle } from "../../services/local-cluster/local-cluster.js";
import type { BrokerServiceClient } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { unary } from "../../services/shared/grpc/client.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  expectCallError,
  fetchAll,
  produce,
  type ReadRecord,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

const PARTITIONS = 3;

describe("cluster: broker restart", { timeout: 60_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const topic = uniqueTopic("durable");
  /** The partition whose leader is restarted, and that broker. */
  let partition: number;
  let victim: ProcessHandle;
  let initialLeaders: Map<number, number>;
  /** What the victim acknowledged, in offset order. */
  const acked: ReadRecord[] = [];
  const client = (): BrokerServiceClient => clients.broker(victim.address);

  /** Produces `batches` batches of 3 records to the victim's partition; records them as acked. */
  const produceBatches = async (label: string, batches: number) => {
    for (let b = 0; b < batches; b++) {
      const values = [0, 1, 2].map((i) => `${label}-${b}-${i}`);
      const base = await produce(
        client(),
        topic,
        partition,
        values.map((v) => ({ key: Buffer.from(label), value: Buffer.from(v) })),
      );
      assert.equal(base, acked.length, "offsets continue where the log ended");
      for (const [i, value] of values.entries())
        acked.push({ offset: base + i, key: label, value, timestamp: -1 });
    }
  };
  const readBack = async () =>
    (await fetchAll(client(), topic, partition)).map((r) => ({ ...r, timestamp: -1 }));
  const metadataOf = async () => {
    const other = cluster.brokerProcesses.find((b) => b !== victim && b.running)!;
    const md = await unary(clients.broker(other.address), "Metadata", { topics: [topic] });
    return md.topics[0]!.partitions.find((p) => p.partition === partition)!;
  };
  /** Waits until the victim leads its partition again; returns the leader epoch. */
  const waitForLeadership = async () => {
    const leaders = await waitForLeaders(cluster, clients, topic, PARTITIONS);
    assert.equal(leaders.get(partition), Number(victim.id), "the restarted broker leads again");
    return (await metadataOf()).leaderEpoch;
  };

  /**
   * How the victim's last start opened the partition's log, from its JSON log: whether it had
   * to recover (no clean-shutdown marker) and the log end it found.
   */
  const lastOpen = async () => {
    const lines = (await readFile(victim.logFile, "utf8"))
      .split("\n")
      .filter((l) => l.startsWith("{"));
    const opened = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter(
        (l) =>
          l.message === "opened partition log" && l.topic === topic && l.partition === partition,
      )
      .at(-1);
    assert.ok(opened, `${victim.logFile} says how it opened ${topic}-${partition}`);
    return { recovered: opened.recovered, logEndOffset: opened.logEndOffset };
  };

  before(async () => {
    cluster = await startTestCluster();
    await createTopic(clients.admin(cluster.controllers[0]!), topic, PARTITIONS);
    initialLeaders = await waitForLeaders(cluster, clients, topic, PARTITIONS);
    partition = 0;
    victim = cluster.broker(initialLeaders.get(partition)!);
  });
  after(async () => {
    clients.close();
    await cluster?.stop();
  });

  test("SIGTERM and restart: the broker serves what it acknowledged and continues", async () => {
    await produceBatches("before-stop", 5);
    assert.deepEqual(await readBack(), acked);
    const epochBefore = (await metadataOf()).leaderEpoch;

    await victim.stop();
    // With its only replica gone the partition has no leader (no unclean election).
    await waitFor(async () => (await metadataOf()).leaderId === -1, {
      message: "the stopped broker's partition to lose its leader",
    });
    // Partitions led by the other brokers keep working meanwhile.
    for (const [p, id] of initialLeaders) {
      if (id === Number(victim.id)) continue;
      const other = clients.broker(cluster.broker(id).address);
      await produce(other, topic, p, [{ value: Buffer.from("while a broker is down") }]);
    }

    await victim.restart();
    const epochAfter = await waitForLeadership();
    assert.deepEqual(await lastOpen(), { recovered: false, logEndOffset: acked.length });
    assert.ok(epochAfter > epochBefore, `leader epoch ${epochAfter} > ${epochBefore}`);
    assert.deepEqual(await readBack(), acked, "every acknowledged record, at its offset");
    await produceBatches("after-restart", 2);
    assert.deepEqual(await readBack(), acked);
  });

  test("SIGKILL and restart: the broker recovers every acknowledged record", async () => {
    await produceBatches("before-crash", 5);
    await victim.kill("SIGKILL");
    // The restart outwaits the crashed broker's registration lease (about 6 s).
    await victim.restart();
    await waitForLeadership();
    assert.deepEqual(await lastOpen(), { recovered: true, logEndOffset: acked.length });
    assert.deepEqual(await readBack(), acked, "every acknowledged record, at its offset");
    await produceBatches("after-crash", 2);
    assert.deepEqual(await readBack(), acked);
  });

  test("a paused broker answers nothing until it is resumed, then everything", async () => {
    await victim.pause();
    assert.ok(victim.paused && victim.running);
    const hung = unary(client(), "Metadata", { topics: [topic] }, { deadlineMs: 300 });
    await expectCallError(hung, ErrorCode.REQUEST_TIMED_OUT);
    // A call made while paused is answered once the broker runs again.
    const pending = unary(client(), "Metadata", { topics: [topic] }, { deadlineMs: 10_000 });
    await victim.resume();
    assert.equal((await pending).topics[0]!.errorCode, 0);
    assert.deepEqual(await readBack(), acked);
  });
});

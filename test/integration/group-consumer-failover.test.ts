/**
 * GroupConsumers through a coordinator failover, in a real cluster (etcd, a controller, 2 brokers
 * and 2 gateways as processes; sessions and the gateway lease of 3 s): 3 consumers of one group
 * read a 6-partition topic under a steady produce; the gateway coordinating the group is
 * SIGKILLed; the other gateway takes the group over within the lease; the same members keep
 * their partitions and go on reading and committing; the committed offsets survive; every record
 * is processed and nothing committed is processed again.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { GroupClient, type GroupConsumer, Producer } from "../../services/client/index.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import { EventLog, exclusive, localMember } from "./group-consumer-helpers.js";
import { GROUP_GATEWAY_ARGS, TEST_GATEWAY_LEASE_MS, TEST_SESSION_MS } from "./groups-helpers.js";

const PARTITIONS = 6;
const AUTO_COMMIT_MS = 200;
/** Members settle after the joins, ms. */
const SETTLE_TIMEOUT_MS = 15_000;
/** The other gateway coordinates, and commits go through again, within this, ms. */
const TAKEOVER_TIMEOUT_MS = TEST_GATEWAY_LEASE_MS + TEST_SESSION_MS + 10_000;
/** Every record produced is processed within this, ms. */
const DRAIN_TIMEOUT_MS = 20_000;

describe("group consumer: the coordinating gateway is SIGKILLed", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let producer: Producer;
  const consumers: GroupConsumer[] = [];

  before(async () => {
    cluster = await startTestCluster({ brokers: 2, gateways: 2, gatewayArgs: GROUP_GATEWAY_ARGS });
    producer = new Producer({ bootstrapServers: cluster.bootstrap });
  });
  after(async () => {
    await Promise.all(consumers.map((c) => c.disconnect().catch(() => undefined)));
    await producer?.close();
    clients.close();
    await cluster?.stop();
  });

  test("members continue under the other gateway; offsets intact; every record once after its commit", async () => {
    const topic = uniqueTopic("gcfail");
    const group = uniqueTopic("gfailover");
    const all = [...Array(PARTITIONS).keys()].map((p) => `${topic}:${p}`);
    await createTopic(clients.admin(cluster.controllers[0]!), topic, PARTITIONS);
    await waitForLeaders(cluster, clients, topic, PARTITIONS);
    const ends = new Map<number, number>([...Array(PARTITIONS).keys()].map((p) => [p, 0]));
    const produceSome = async (perPartition: number) => {
      for (let p = 0; p < PARTITIONS; p++) {
        const records = Array.from({ length: perPartition }, (_, i) => ({
          value: `v${ends.get(p)! + i}`,
          partition: p,
        }));
        await producer.send(topic, records, { acks: "all" });
        ends.set(p, ends.get(p)! + perPartition);
      }
    };
    const log = new EventLog();
    const options = {
      groupId: group,
      gateways: cluster.gateways,
      bootstrapServers: cluster.bootstrap,
      autoOffsetReset: "earliest" as const,
      autoCommitIntervalMs: AUTO_COMMIT_MS,
      sessionTimeoutMs: TEST_SESSION_MS,
      maxWaitMs: 100,
    };
    const ms = ["a", "b", "c"].map((name) => localMember(name, log, options, topic));
    for (const m of ms) consumers.push(m.consumer);
    const admin = new GroupClient({ gateways: cluster.gateways });
    let producing = true;
    const load = (async () => {
      while (producing) {
        await produceSome(5);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await waitFor(() => exclusive(ms, all) && ms.every((m) => m.partitions().length === 2), {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "3 members share the 6 partitions",
      });
      await waitFor(() => log.events.filter((e) => e.ev === "commit").length >= PARTITIONS, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "the members commit",
      });
      const [before] = await admin.describeGroups([group]);
      const coordinator = before!.coordinator;
      const index = cluster.gateways.indexOf(coordinator);
      assert.ok(index >= 0, `coordinator ${coordinator}`);
      const survivor = cluster.gateways[1 - index]!;
      const idsBefore = ms.map((m) => m.consumer.memberId);
      const ownedBefore = ms.map((m) => m.partitions().join());
      const committedBefore = new Map<number, number>();
      for (const e of log.events)
        if (e.ev === "commit")
          committedBefore.set(e.p, Math.max(committedBefore.get(e.p) ?? 0, e.o));

      const killedAt = Date.now();
      await cluster.gateway(index + 1).kill("SIGKILL");
      // Commits go through again once the survivor owns the group.
      await waitFor(
        () =>
          new Set(
            log.events.filter((e) => e.ev === "commit" && e.t > killedAt + 100).map((e) => e.p),
          ).size === PARTITIONS,
        { timeoutMs: TAKEOVER_TIMEOUT_MS, message: "every partition commits after the kill" },
      );
      const tookMs = Date.now() - killedAt;
      const survivorClient = new GroupClient({ gateways: [survivor] });
      try {
        const [after] = await survivorClient.describeGroups([group]);
        assert.equal(after!.coordinator, survivor, "the other gateway coordinates");
        assert.deepEqual(
          ms.map((m) => m.consumer.memberId),
          idsBefore,
          "the same members (no rejoin)",
        );
        assert.deepEqual(
          ms.map((m) => m.partitions().join()),
          ownedBefore,
          "the same partitions",
        );
        // Intact: no partition's commit went back below what was committed before the kill.
        const offsets = await survivorClient.fetchOffsets(group, [{ topic, partitions: [] }]);
        for (const o of offsets) {
          assert.ok(
            o.offset >= (committedBefore.get(o.partition) ?? 0),
            `partition ${o.partition}: ${o.offset} after the kill, ${committedBefore.get(o.partition)} before`,
          );
        }
      } finally {
        survivorClient.close();
      }
      console.log(`commits of every partition again ${tookMs} ms after the SIGKILL`);
    } finally {
      producing = false;
      await load;
      admin.close();
    }
    await waitFor(() => log.covers(ends), {
      timeoutMs: DRAIN_TIMEOUT_MS,
      message: "every record processed",
    });
    assert.deepEqual(log.reprocessedAfterCommit(), [], "nothing committed was processed again");
    assert.equal(log.duplicates(), 0, "the partitions never moved: nothing was seen twice");
    for (const m of ms) await m.consumer.disconnect();
    for (const m of ms) await m.running;
  });
});

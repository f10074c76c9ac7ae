/**
 * etcd loss (issue 12): the only etcd of a local cluster is paused (SIGSTOP) while acks=all
 * producers run on a topic of replication factor 3. Expected (docs/operations.md, "Without etcd"):
 *
 * - produce (acks=all) and fetch on existing partitions keep working for the whole pause: the
 *   brokers route, lead and replicate from their cached metadata, and nothing needs etcd while
 *   the ISR does not change (leases cannot expire either: etcd's clock is stopped with it);
 * - an admin call (CreateTopics) fails with a typed error within its deadline;
 * - after SIGCONT everything recovers: brokers stay registered or re-register, the admin call
 *   works again, and the controller epoch moves at most once (one re-election), not in a storm
 *   of campaigns;
 * - the oracle holds: every acknowledged record is read back once, in order, at its offset.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { unary } from "../../services/shared/grpc/client.js";
import { Clients, createTopics, startTestCluster, uniqueTopic } from "./cluster-helpers.js";
import {
  checkOracle,
  OracleProducer,
  type PartitionInfo,
  waitForIsr,
} from "./replication-helpers.js";

const PARTITIONS = 3;
const REPLICAS = 3;
/** How long etcd stays paused: longer than the broker and controller lease TTLs. */
const PAUSE_MS = 10_000;
const SESSION_MS = 3_000;
const SETTLE_MS = 30_000;
/** Deadline of the CreateTopics tried while etcd is paused, ms. */
const ADMIN_DEADLINE_MS = 8_000;
/** Acknowledged records expected during the pause, at least. */
const ACKS_DURING_PAUSE = 300;

const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

/** `"elected controller"` lines in every controller's log so far. */
async function elections(cluster: LocalCluster): Promise<number[]> {
  const epochs: number[] = [];
  for (const c of cluster.controllerProcesses) {
    const text = await readFile(c.logFile, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.includes('"elected controller"')) continue;
      epochs.push(Number(JSON.parse(line).epoch));
    }
  }
  return epochs.sort((a, b) => a - b);
}

describe("etcd loss: the only etcd paused", { timeout: 300_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const fresh = new Clients();

  before(async () => {
    cluster = await startTestCluster({
      controllers: 2,
      brokers: 3,
      brokerArgs: [
        `--broker.session.timeout.ms=${SESSION_MS}`,
        "--replica.lag.time.max.ms=30000",
        "--replica.fetch.backoff.ms=100",
        "--replica.fetch.wait.max.ms=200",
      ],
    });
  });
  after(async () => {
    clients.close();
    fresh.close();
    if (cluster?.etcd.paused) await cluster.etcd.resume();
    await cluster?.stop();
  });

  test("data plane keeps serving, admin calls fail typed, all recovers", async () => {
    const topic = uniqueTopic("etcd-loss");
    const active = await cluster.activeController();
    const admin = clients.admin(active.address);
    const [r] = await createTopics(admin, [
      { name: topic, numPartitions: PARTITIONS, replicationFactor: REPLICAS },
    ]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, "full ISRs");
    const electionsBefore = await elections(cluster);

    const producer = new OracleProducer(cluster, clients, topic, PARTITIONS);
    producer.start();
    try {
      await producer.waitForMoreAcks(100, SETTLE_MS, "acks before the pause");
      await cluster.etcd.pause();
      const pausedAt = Date.now();
      const ackedAtPause = producer.ackedCount;

      // An admin call needs etcd: a typed error within its deadline, not a hang.
      const started = Date.now();
      await assert.rejects(
        unary(
          admin,
          "CreateTopics",
          { topics: [{ name: uniqueTopic("no-etcd"), numPartitions: 1, replicationFactor: 1 }] },
          { deadlineMs: ADMIN_DEADLINE_MS },
        ).then((res) => {
          const t = res.topics[0]!;
          // A per-topic error is typed too; NONE would mean it was created without etcd.
          if (t.errorCode !== 0) throw Object.assign(new Error(t.errorMessage), { topic: t });
          return res;
        }),
        (err: unknown) => {
          const typed =
            isSamsaError(err) ||
            (err as { topic?: unknown }).topic !== undefined ||
            isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT);
          assert.ok(typed, `typed error: ${String(err)}`);
          return true;
        },
      );
      assert.ok(Date.now() - started <= ADMIN_DEADLINE_MS + 2_000, "within its deadline");

      // The rest of the pause: acks=all goes on.
      const left = PAUSE_MS - (Date.now() - pausedAt);
      if (left > 0) await new Promise((res) => setTimeout(res, left));
      const ackedDuringPause = producer.ackedCount - ackedAtPause;
      await cluster.etcd.resume();
      assert.ok(
        ackedDuringPause >= ACKS_DURING_PAUSE,
        `acks=all during the ${PAUSE_MS} ms pause: ${ackedDuringPause}, failures ${JSON.stringify([...producer.failures])}`,
      );

      await cluster.waitReady(SETTLE_MS);
      await producer.waitForMoreAcks(100, SETTLE_MS, "acks after the pause");
    } finally {
      await producer.stop();
    }
    await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, "ISR full after");
    await checkOracle(cluster, clients, fresh, topic, producer);

    // Admin works again, and the controller was re-elected at most once.
    const after = await cluster.activeController({ timeoutMs: SETTLE_MS });
    const again = await createTopics(clients.admin(after.address), [
      { name: uniqueTopic("after-etcd"), numPartitions: 1, replicationFactor: 3 },
    ]);
    assert.equal(again[0]!.errorCode, 0, again[0]!.errorMessage);
    const newElections = (await elections(cluster)).slice(electionsBefore.length);
    assert.ok(
      newElections.length <= 1,
      `controller elections after the pause: ${JSON.stringify(newElections)} (epoch ${active.epoch} → ${after.epoch})`,
    );
  });
});

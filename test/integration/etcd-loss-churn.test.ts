/**
 * No churn after etcd returns (issue 12, docs/operations.md "etcd loss"): the only etcd is
 * paused longer than the brokers' sessions, so on SIGCONT it expires every broker's lease at
 * once and the brokers, which never stopped, register again a few seconds later. The controller
 * must not take those deletions for dead brokers: no partition's leader epoch moves and no ISR
 * shrinks (its partition epoch stays), i.e. the outage alone changes no partition's state.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { readPartitionState } from "../../services/shared/etcd/cas.js";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import { EtcdKeys, type PartitionState } from "../../services/shared/etcd/keys.js";
import { Clients, createTopics, startTestCluster, uniqueTopic } from "./cluster-helpers.js";
import { waitForIsr, type PartitionInfo } from "./replication-helpers.js";

const PARTITIONS = 3;
const REPLICAS = 3;
const SESSION_MS = 3_000;
/** Longer than the broker sessions (and the controllers' leases). */
const PAUSE_MS = 10_000;
/** How long after the resume the partitions are watched for changes, ms (past the re-registrations). */
const WATCH_AFTER_MS = 15_000;
const SETTLE_MS = 30_000;
const CLUSTER_ID = "samsa";

const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

describe("etcd loss: no partition churn when etcd returns", { timeout: 240_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();

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
    if (cluster?.etcd.paused) await cluster.etcd.resume();
    await cluster?.stop();
  });

  test("leader epochs and ISRs stay as they were", async () => {
    const topic = uniqueTopic("etcd-churn");
    const active = await cluster.activeController();
    const [r] = await createTopics(clients.admin(active.address), [
      { name: topic, numPartitions: PARTITIONS, replicationFactor: REPLICAS },
    ]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, "full ISRs");

    const keys = EtcdKeys.forCluster(CLUSTER_ID);
    const etcd = createEtcdClient({ endpoints: [cluster.etcdEndpoint] });
    const states = async (): Promise<PartitionState[]> => {
      const out: PartitionState[] = [];
      for (let p = 0; p < PARTITIONS; p++) {
        const read = await readPartitionState(etcd, keys, topic, p);
        assert.ok(read, `partition ${p} has a state`);
        out.push(read.state);
      }
      return out;
    };
    try {
      const before = await states();
      await cluster.etcd.pause();
      await new Promise((res) => setTimeout(res, PAUSE_MS));
      await cluster.etcd.resume();
      // Watch the partitions through the re-registrations.
      const until = Date.now() + WATCH_AFTER_MS;
      while (Date.now() < until) {
        const now = await states().catch(() => undefined);
        if (now) {
          for (const [p, s] of now.entries()) {
            const b = before[p]!;
            assert.equal(s.leaderEpoch, b.leaderEpoch, `partition ${p}'s leader epoch moved`);
            assert.equal(s.leader, b.leader, `partition ${p}'s leader moved`);
            assert.deepEqual(s.isr, b.isr, `partition ${p}'s ISR changed`);
            assert.equal(s.partitionEpoch, b.partitionEpoch, `partition ${p}'s state changed`);
          }
        }
        await new Promise((res) => setTimeout(res, 200));
      }
      await cluster.waitReady(SETTLE_MS);
    } finally {
      etcd.close();
    }
  });
});

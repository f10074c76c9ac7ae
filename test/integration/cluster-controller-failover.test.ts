/**
 * Controller failover in a real local cluster (etcd, 2 controllers, 3 brokers as processes):
 * the standby forwards writes; when the active controller crashes (SIGKILL) the standby takes
 * over once the dead one's election lease expires, with a higher epoch; a graceful stop (SIGTERM)
 * resigns and hands over at once; brokers keep serving throughout.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type {
  ActiveController,
  LocalCluster,
  ProcessHandle,
} from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import { decodeControllerInfo, EtcdKeys, toEtcdKeyValue } from "../../services/shared/etcd/keys.js";
import { unary } from "../../services/shared/grpc/client.js";
import { CONTROLLER_METADATA_KEY } from "../../services/shared/grpc/errors.js";
import { waitFor } from "../support/wait-for.js";
import {
  CALL_DEADLINE_MS,
  Clients,
  createTopic,
  createTopics,
  expectCallError,
  fetchAll,
  produce,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

/**
 * How long a test waits for the standby to take over, ms. It bounds a wait, it is not a
 * measurement: the election lease (6 s) has to expire after a crash, and a loaded machine may
 * take a while longer.
 */
const FAILOVER_TIMEOUT_MS = 20_000;
/** The local cluster's `cluster.id` (the config default). */
const CLUSTER_ID = "samsa";

describe("cluster: controller failover", { timeout: 60_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const admin = (p: ProcessHandle) => clients.admin(p.address);
  const other = (a: ActiveController) => cluster.controllerProcesses.find((c) => c !== a.handle)!;

  /** The ids of the controllers holding an election key in etcd (candidates, leader first). */
  const controllerCandidates = async (): Promise<string[]> => {
    const etcd = createEtcdClient({ endpoints: [cluster.etcdEndpoint] });
    try {
      const prefix = EtcdKeys.forCluster(CLUSTER_ID).controllerPrefix();
      const res = await etcd.getAll().prefix(prefix).exec();
      return res.kvs
        .map((kv) => decodeControllerInfo(toEtcdKeyValue(kv)))
        .sort((a, b) => a.epoch - b.epoch)
        .map((info) => info.id);
    } finally {
      etcd.close();
    }
  };

  /** Waits until a controller other than `old` is active with a higher epoch; returns it. */
  const waitForSuccessor = async (old: ActiveController, timeoutMs: number) => {
    const next = await waitFor(
      async () => {
        const d = await unary(admin(other(old)), "DescribeCluster", {}, { deadlineMs: 1_000 });
        return d.controllerId !== "" && d.controllerId !== old.id ? d : undefined;
      },
      { timeoutMs, intervalMs: 50, message: `a controller other than ${old.id}` },
    );
    assert.equal(next.controllerId, other(old).id);
    assert.ok(
      Number(next.controllerEpoch) > old.epoch,
      `epoch ${next.controllerEpoch} > ${old.epoch}`,
    );
    assert.equal(next.controllerAddress, other(old).address);
    return next;
  };

  before(async () => {
    cluster = await startTestCluster();
  });
  after(async () => {
    clients.close();
    await cluster?.stop();
  });

  test("a standby forwards CreateTopics to the active controller", async () => {
    const active = await cluster.activeController();
    const standby = other(active);
    const d = await unary(admin(standby), "DescribeCluster", {});
    assert.equal(d.controllerId, active.id, "the standby knows who is active");
    const topic = uniqueTopic("via-standby");
    await createTopic(admin(standby), topic, 2);
    const described = await unary(admin(active.handle), "DescribeTopics", { names: [topic] });
    assert.equal(described.topics[0]!.errorCode, 0);
    assert.equal(described.topics[0]!.partitions.length, 2);
  });

  test("SIGKILL of the active controller: the standby takes over with a higher epoch", async () => {
    const topic = uniqueTopic("survives");
    const first = await cluster.activeController();
    await createTopic(admin(first.handle), topic, 1);
    const [leader] = (await waitForLeaders(cluster, clients, topic, 1)).values();
    const broker = clients.broker(cluster.broker(leader!).address);

    await first.handle.kill("SIGKILL");
    const standby = other(first);

    // Until the dead controller's lease expires the standby still names it, cannot forward to
    // it and says so: NOT_CONTROLLER (retriable) with the address it believes active.
    const err = await expectCallError(
      unary(admin(standby), "CreateTopics", { topics: [{ name: uniqueTopic("early") }] }),
      ErrorCode.NOT_CONTROLLER,
    );
    assert.equal(err.retriable, true);
    assert.equal(err.metadata?.[CONTROLLER_METADATA_KEY], first.address);

    // Brokers do not need a controller to serve the partitions they lead.
    assert.equal(await produce(broker, topic, 0, [{ value: Buffer.from("no controller") }]), 0);

    await waitForSuccessor(first, FAILOVER_TIMEOUT_MS);

    // The new controller creates topics, and brokers learn of them.
    const created = uniqueTopic("after-failover");
    await createTopic(admin(standby), created, 3);
    await waitForLeaders(cluster, clients, created, 3);
    assert.deepEqual(
      (await fetchAll(broker, topic, 0)).map((r) => r.value),
      ["no controller"],
    );

    // The crashed controller comes back as a standby, and forwards again.
    await first.handle.restart();
    await waitFor(
      async () => {
        const d = await unary(admin(first.handle), "DescribeCluster", {}, { deadlineMs: 1_000 });
        return d.controllerId === standby.id;
      },
      { message: "the restarted controller to follow the new one" },
    );
    const [r] = await createTopics(admin(first.handle), [{ name: uniqueTopic("forwarded") }]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    assert.equal((await cluster.activeController()).id, standby.id, "no change of controller");
  });

  test("SIGTERM of the active controller resigns: the standby takes over at once", async () => {
    const active = await cluster.activeController();
    assert.ok(
      (await controllerCandidates()).includes(active.id),
      "the active controller's election key is in etcd",
    );
    await active.handle.stop();
    // Resigned, not expired: by the time the process has exited its election key is gone,
    // whereas a crashed controller's key stays until its lease runs out.
    assert.ok(
      !(await controllerCandidates()).includes(active.id),
      "the stopped controller deleted its election key",
    );
    await waitForSuccessor(active, FAILOVER_TIMEOUT_MS);
    const [r] = await createTopics(admin(other(active)), [{ name: uniqueTopic("after-resign") }]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    await active.handle.restart();
    await cluster.waitReady(CALL_DEADLINE_MS);
  });
});

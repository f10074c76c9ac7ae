/**
 * Preferred leader election on a real local cluster (etcd, controllers and 3 brokers as
 * processes), topics with replication factor 3: after the preferred leader of a partition is
 * killed (SIGKILL) another replica leads; once it is restarted, has caught up and is in the ISR
 * again, it gets the leadership back — by the controller's automatic rebalance
 * (`auto.leader.rebalance.enable`, checked every 2 s here), or, with that off, by ElectLeaders
 * (the admin client, a standby controller forwarding it, and `samsa leader-election`). The CLI's
 * `topics describe --under-replicated-partitions` / `--unavailable-partitions` are checked on
 * the degraded cluster too.
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { AdminClient } from "../../services/client/index.js";
import { runCli } from "../../services/cli/commands/program.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { unary } from "../../services/shared/grpc/client.js";
import {
  Clients,
  CALL_DEADLINE_MS,
  createTopics,
  startTestCluster,
  uniqueTopic,
} from "./cluster-helpers.js";
import { type PartitionInfo, waitForIsr } from "./replication-helpers.js";

const PARTITIONS = 3;
const REPLICAS = 3;
/** Broker lease TTL: a killed broker is dead to the controller after this, ms. */
const SESSION_MS = 2_000;
/** `leader.imbalance.check.interval.seconds` of the auto-rebalance cluster. */
const CHECK_INTERVAL_S = 2;
/** How long an election, an ISR change or a rebalance may take, ms. */
const SETTLE_MS = 30_000;
/** The proto's ELECTION_TYPE_PREFERRED. */
const PROTO_PREFERRED = 1;

const BROKER_ARGS = [
  `--broker.session.timeout.ms=${SESSION_MS}`,
  "--replica.lag.time.max.ms=3000",
  "--replica.fetch.backoff.ms=100",
  "--replica.fetch.wait.max.ms=200",
];

const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

/** A new RF 3 topic with full ISRs; its partitions' states, led by their preferred replicas. */
async function replicatedTopic(cluster: LocalCluster, clients: Clients, prefix: string) {
  const topic = uniqueTopic(prefix);
  const admin = clients.admin((await cluster.activeController()).address);
  const [r] = await createTopics(admin, [
    { name: topic, numPartitions: PARTITIONS, replicationFactor: REPLICAS },
  ]);
  assert.equal(r!.errorCode, 0, `create ${topic}: ${r!.errorMessage}`);
  const infos = await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, "full ISR");
  for (const p of infos.values())
    assert.equal(p.leader, p.replicas[0], "a new topic's leader is preferred");
  return { topic, infos };
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

describe("automatic preferred leader rebalance (auto.leader.rebalance.enable)", {
  timeout: 180_000,
}, () => {
  let cluster: LocalCluster;
  const clients = new Clients();

  before(async () => {
    cluster = await startTestCluster({
      controllers: 1,
      brokers: 3,
      brokerArgs: BROKER_ARGS,
      controllerArgs: [`--leader.imbalance.check.interval.seconds=${CHECK_INTERVAL_S}`],
    });
  });
  after(async () => {
    clients.close();
    await cluster?.stop();
  });

  test("a restarted preferred leader catches up, rejoins the ISR and leads its partition again", async () => {
    const { topic, infos } = await replicatedTopic(cluster, clients, "pref-auto");
    const before = infos.get(0)!;
    const victim = cluster.broker(before.leader);
    const id = Number(victim.id);
    await victim.kill("SIGKILL");
    const failedOver = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => p.leader !== id && !p.isr.includes(id),
      SETTLE_MS,
      "another leader without the killed broker",
    );
    assert.ok(failedOver.get(0)!.leaderEpoch > before.leaderEpoch);
    await victim.restart();
    const back = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => full(p) && p.leader === p.replicas[0],
      SETTLE_MS,
      `broker ${id} back in the ISR and leading partition 0 again`,
    );
    const p0 = back.get(0)!;
    assert.equal(p0.leader, id);
    assert.ok(p0.isr.includes(id));
    assert.ok(p0.leaderEpoch > failedOver.get(0)!.leaderEpoch, "the move back bumped the epoch");
  });
});

describe("ElectLeaders with auto rebalance off", { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let admin: AdminClient;

  before(async () => {
    cluster = await startTestCluster({
      controllers: 2,
      brokers: 3,
      brokerArgs: BROKER_ARGS,
      controllerArgs: ["--auto.leader.rebalance.enable=false"],
    });
    admin = new AdminClient({ controllers: cluster.controllers });
  });
  after(async () => {
    admin?.close();
    clients.close();
    await cluster?.stop();
  });

  test("PREFERRED moves leadership back to the returned preferred replica, once", async () => {
    const { topic, infos } = await replicatedTopic(cluster, clients, "pref-elect");
    const victim = cluster.broker(infos.get(0)!.leader);
    const id = Number(victim.id);
    await victim.kill("SIGKILL");
    await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => p.leader !== id && !p.isr.includes(id),
      SETTLE_MS,
      "another leader without the killed broker",
    );

    // While it is down: not available; the CLI sees every partition under-replicated.
    const [down] = await admin.electLeaders("preferred", [{ topic, partition: 0 }]);
    assert.equal(down?.error?.code, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, String(down?.error));
    const under = await samsa(cluster, [
      "topics",
      "describe",
      "--topic",
      topic,
      "--under-replicated-partitions",
    ]);
    assert.equal(under.code, 0, under.stderr);
    assert.equal(under.stdout.trim().split("\n").length, PARTITIONS, under.stdout);
    const unavailable = await samsa(cluster, [
      "topics",
      "describe",
      "--topic",
      topic,
      "--unavailable-partitions",
    ]);
    assert.equal(unavailable.code, 0, unavailable.stderr);
    assert.equal(unavailable.stdout, "", "every partition has a live leader");

    await victim.restart();
    const rejoined = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      full,
      SETTLE_MS,
      "ISR full again",
    );
    const p0 = rejoined.get(0)!;
    assert.notEqual(p0.leader, id, "with auto rebalance off nothing moves it back by itself");

    const [elected] = await admin.electLeaders("preferred", [{ topic, partition: 0 }]);
    assert.equal(elected?.error, null, String(elected?.error));
    assert.equal(elected?.leaderId, id);
    assert.ok(elected!.leaderEpoch > p0.leaderEpoch);
    const moved = await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      (p) => full(p) && p.leader === p.replicas[0],
      SETTLE_MS,
      "the brokers serve the preferred leader",
    );
    assert.equal(moved.get(0)!.leader, id);
    assert.deepEqual([...moved.get(0)!.isr].sort(), [...p0.isr].sort(), "the ISR is unchanged");

    // Again, through the standby controller (which forwards it): nothing left to do.
    const active = await cluster.activeController();
    const standby = cluster.controllers.find((a) => a !== active.address)!;
    const again = await unary(
      clients.admin(standby),
      "ElectLeaders",
      { electionType: PROTO_PREFERRED, topicPartitions: [{ topic, partitions: [0] }] },
      { deadlineMs: CALL_DEADLINE_MS },
    );
    assert.equal(again.topics[0]?.partitions[0]?.errorCode, ErrorCode.ELECTION_NOT_NEEDED);

    const cli = await samsa(cluster, [
      "leader-election",
      "--election-type",
      "preferred",
      "--all-topic-partitions",
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, "No partition needed a leader election.\n");
    const unknown = await samsa(cluster, [
      "leader-election",
      "--election-type",
      "preferred",
      "--topic",
      topic,
      "--partition",
      String(PARTITIONS),
    ]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /UNKNOWN_TOPIC_OR_PARTITION/);
  });
});

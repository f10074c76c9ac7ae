/**
 * Replication across cut links (docs/replication.md#tests): each broker of a local cluster runs
 * in a network namespace of its own (test/support/netns.ts), etcd and the controller in the root
 * namespace on the bridge, and a link is cut with iptables DROP rules inside a broker's namespace,
 * so packets vanish as on a real partition (connections hang; nothing is refused). Topics have
 * replication factor 3 and min.insync.replicas 2, and the oracle's acks=all senders
 * (replication-helpers.ts) run throughout. ISR changes are read from etcd itself. Cases:
 *
 * 1. a follower cut off from its leader: it leaves the ISR (no election), writes go on, it
 *    rejoins once healed;
 * 2. a leader cut off from both followers (not from etcd): it shrinks the ISR to itself, then
 *    refuses acks=all writes; no acknowledgement while it is alone, its high watermark frozen;
 *    the followers rejoin once healed;
 * 3. a leader cut off from etcd and both followers: its lease expires, another broker is elected;
 *    it acknowledges nothing sent to it while isolated, and once healed rejoins as a follower,
 *    truncating the tail it appended meanwhile (none of which is read back).
 *
 * After each case the oracle checks every acknowledged record is read back at its offset, once,
 * in send order, the same for two readers.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, type TestContext, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import type { PartitionState } from "../../services/shared/etcd/keys.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { type NetLab, startNetLab } from "../support/netns.js";
import { waitFor } from "../support/wait-for.js";
import { Clients, createTopics, fetchAll, uniqueTopic } from "./cluster-helpers.js";
import {
  counterSum,
  EtcdPartitions,
  highWatermark,
  PinnedSender,
  startNetnsCluster,
  loggedTruncations,
} from "./cut-link-helpers.js";
import { checkOracle, OracleProducer, waitForIsr } from "./replication-helpers.js";

const BROKERS = 3;
const PARTITIONS = 3;
const REPLICAS = 3;
const MIN_ISR = 2;
/** Broker lease TTL: an isolated broker is dead to the controller after this, ms. */
const SESSION_MS = 2_000;
/** `replica.lag.time.max.ms`: a follower cut off leaves the ISR after this, ms. */
const LAG_MS = 3_000;
/** How long a fault's consequence (ISR change, election, rejoin) may take, ms. */
const SETTLE_MS = 20_000;
/** Acknowledged records to wait for before each cut and after it healed. */
const ACKS_AROUND = 100;
/** Acknowledged records on the affected partition to wait for while a link is cut. */
const ACKS_DURING = 30;
/** NOT_ENOUGH_REPLICAS refusals to wait for while a leader is alone in its ISR. */
const REFUSALS_MIN = 5;
/** Most sends per partition of one case's oracle producer (bounds its loop). */
const ORACLE_SENDS_MAX = 2_000;
/** The acks=all wait a pinned send to the isolated leader asks for, ms. */
const STALE_SEND_TIMEOUT_MS = 1_000;
/** Most sends of the pinned sender to the isolated leader (bounds its loop). */
const STALE_SENDS_MAX = 100;
/** Whole file; well under the 2 minutes it may take. */
const FILE_TIMEOUT_MS = 110_000;

const sorted = (ids: readonly number[]) => [...ids].sort((a, b) => a - b);
const full = (s: { isr: readonly number[] }) => s.isr.length === REPLICAS;

describe("replication: cut links between brokers (RF 3, min ISR 2)", {
  timeout: FILE_TIMEOUT_MS,
}, () => {
  let lab: NetLab | undefined;
  let cluster: LocalCluster;
  let etcd: EtcdPartitions | undefined;
  const clients = new Clients();
  const fresh = new Clients();

  before(async () => {
    lab = await startNetLab(BROKERS);
    cluster = await startNetnsCluster(lab, {
      controllers: 1,
      brokerArgs: [
        `--broker.session.timeout.ms=${SESSION_MS}`,
        `--replica.lag.time.max.ms=${LAG_MS}`,
        "--replica.fetch.backoff.ms=100",
        "--replica.fetch.wait.max.ms=200",
      ],
    });
    etcd = new EtcdPartitions(cluster.etcdEndpoint);
  });
  /** The running case's oracle producer. */
  let current: OracleProducer | undefined;
  /** Heals every link: a failed case must not leave a cut (or a sender) to the next one. */
  const healAll = async () => {
    for (const m of lab?.members ?? []) await lab?.heal(m.index).catch(() => {});
    await current?.stop();
    current = undefined;
  };
  afterEach(healAll);
  after(async () => {
    // Heal first: a broker cut off from etcd would stop slowly.
    await healAll();
    clients.close();
    fresh.close();
    etcd?.close();
    await cluster?.stop();
    await lab?.destroy();
  });

  const netLab = () => lab!;
  const partitions = () => etcd!;
  /** Broker `id`'s address in its namespace (a cut's peer). */
  const peer = (id: number) => ({ address: netLab().member(id).address });

  /** A new RF 3 topic whose ISRs are full in etcd, its states, and its oracle, acknowledging. */
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
    for (let p = 0; p < PARTITIONS; p++) {
      await partitions().waitFor(topic, p, full, SETTLE_MS, `${topic}-${p}: ISR full in etcd`);
    }
    await waitForIsr(
      cluster,
      clients,
      topic,
      PARTITIONS,
      full,
      SETTLE_MS,
      `${topic}: brokers know`,
    );
    const states = await partitions().states(topic);
    const producer = new OracleProducer(cluster, clients, topic, PARTITIONS, ORACLE_SENDS_MAX);
    current = producer;
    producer.start();
    await producer.waitForMoreAcks(ACKS_AROUND, SETTLE_MS, "acks=all sends before the cut");
    return { topic, states, producer };
  };

  /** Waits until `producer` acknowledged `n` more records of `partition`. */
  const moreAcksOn = async (
    producer: OracleProducer,
    partition: number,
    n: number,
    what: string,
  ) => {
    const target = producer.acked.get(partition)!.length + n;
    await waitFor(() => producer.acked.get(partition)!.length >= target, {
      timeoutMs: SETTLE_MS,
      message: what,
    });
  };

  /** After healing: every ISR full in etcd, more acks, stop, then the oracle. */
  const finish = async (t: TestContext, topic: string, producer: OracleProducer) => {
    for (let p = 0; p < PARTITIONS; p++) {
      await partitions().waitFor(
        topic,
        p,
        full,
        SETTLE_MS,
        `${topic}-${p}: ISR full after healing`,
      );
    }
    await producer.waitForMoreAcks(ACKS_AROUND, SETTLE_MS, "acks=all sends after healing");
    await producer.stop();
    await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, `${topic}: ISR full`);
    await checkOracle(cluster, clients, fresh, topic, producer);
    const failed = JSON.stringify(Object.fromEntries(producer.failures));
    t.diagnostic(`${producer.ackedCount} records acknowledged; failed sends: ${failed}`);
  };

  /** Partitions of `states` that `leader` leads. */
  const ledBy = (states: Map<number, PartitionState>, leader: number) =>
    [...states].filter(([, s]) => s.leader === leader).map(([p]) => p);

  test("a follower cut off from its leader leaves the ISR, writes go on, it rejoins once healed", async (t) => {
    const { topic, states, producer } = await replicatedTopic("cut-follower");
    const p0 = states.get(0)!;
    const follower = p0.isr.find((id) => id !== p0.leader)!;
    await netLab().cut(follower, [peer(p0.leader)]);
    const shrunk = await partitions().waitFor(
      topic,
      0,
      (s) => !s.isr.includes(follower),
      SETTLE_MS,
      `broker ${follower} out of ${topic}-0's ISR in etcd`,
    );
    assert.equal(shrunk.leader, p0.leader, "no election: the cut follower is alive");
    assert.equal(shrunk.leaderEpoch, p0.leaderEpoch, "same leader epoch");
    assert.deepEqual(
      sorted(shrunk.isr),
      sorted(p0.replicas.filter((id) => id !== follower)),
      "the ISR is the leader and the other follower",
    );
    await moreAcksOn(producer, 0, ACKS_DURING, "acks=all sends to partition 0 while cut");
    const during = (await partitions().states(topic)).get(0)!;
    assert.ok(!during.isr.includes(follower), "the cut follower stays out while cut");
    await netLab().heal(follower);
    await partitions().waitFor(
      topic,
      0,
      (s) => s.isr.includes(follower),
      SETTLE_MS,
      `broker ${follower} back in ${topic}-0's ISR in etcd`,
    );
    await finish(t, topic, producer);
  });

  test("a leader cut off from both followers shrinks the ISR to itself and acknowledges nothing until healed", async (t) => {
    const { topic, states, producer } = await replicatedTopic("cut-leader");
    const leader = states.get(0)!.leader;
    const led = ledBy(states, leader);
    const address = cluster.broker(leader).address;
    const followers = states.get(0)!.replicas.filter((id) => id !== leader);
    const ackedAtCut = new Map(led.map((p) => [p, producer.acked.get(p)!.length]));
    await netLab().cut(leader, followers.map(peer));
    // Nothing a follower sends arrives any more: what the leader counts as replicated is fixed.
    const hwAtCut = new Map<number, number>();
    for (const p of led) hwAtCut.set(p, await highWatermark(clients, address, topic, p));
    for (const p of led) {
      const alone = await partitions().waitFor(
        topic,
        p,
        (s) => s.isr.length === 1,
        SETTLE_MS,
        `${topic}-${p}'s ISR shrunk to its leader in etcd`,
      );
      assert.deepEqual(alone.isr, [leader], `${topic}-${p}: the ISR is the leader alone`);
      assert.equal(alone.leader, leader, `${topic}-${p}: no election (etcd reachable)`);
      assert.equal(alone.leaderEpoch, states.get(p)!.leaderEpoch, `${topic}-${p}: same epoch`);
    }
    const ackedAlone = new Map(led.map((p) => [p, producer.acked.get(p)!.length]));
    const refused = producer.failures.get("NOT_ENOUGH_REPLICAS") ?? 0;
    await waitFor(
      () => (producer.failures.get("NOT_ENOUGH_REPLICAS") ?? 0) >= refused + REFUSALS_MIN,
      {
        timeoutMs: SETTLE_MS,
        message: `${REFUSALS_MIN} NOT_ENOUGH_REPLICAS refusals while the leader is alone`,
      },
    );
    for (const p of led) {
      const acked = producer.acked.get(p)!;
      assert.equal(acked.length, ackedAlone.get(p), `${topic}-${p}: no ack with the ISR of one`);
      for (const a of acked.slice(ackedAtCut.get(p))) {
        assert.ok(
          a.offset < hwAtCut.get(p)!,
          `${topic}-${p}: ${a.value} at ${a.offset}, acknowledged after the cut, was below the HW ${hwAtCut.get(p)} the followers had reported`,
        );
      }
      assert.equal(
        await highWatermark(clients, address, topic, p),
        hwAtCut.get(p),
        `${topic}-${p}: the high watermark did not move while cut`,
      );
    }
    await netLab().heal(leader);
    await finish(t, topic, producer);
  });

  test("a leader cut off from etcd and both followers is deposed, acknowledges nothing, and rejoins truncating its tail", async (t) => {
    const { topic, states, producer } = await replicatedTopic("cut-isolated");
    // The oracle reads metadata from the first broker that answers: an isolated broker 1 would
    // keep naming itself leader to it, so isolate another leader when there is one.
    const partition = [...states].find(([, s]) => s.leader !== 1)?.[0] ?? [...states.keys()][0]!;
    const victim = states.get(partition)!.leader;
    const led = ledBy(states, victim);
    const handle = cluster.broker(victim);
    const member = netLab().member(victim);
    const others = cluster.brokerProcesses.map((b) => Number(b.id)).filter((id) => id !== victim);
    const truncations = () =>
      counterSum(member.address, handle.metricsPort, "samsa_replica_truncations_total", topic);
    assert.equal(await truncations(), 0, `broker ${victim} truncated nothing of ${topic} yet`);
    const hwAtCut = await highWatermark(clients, handle.address, topic, partition);
    await netLab().cut(victim, [
      ...others.map(peer),
      { address: netLab().rootAddress, port: cluster.etcd.port },
    ]);
    const stale = new PinnedSender(
      clients,
      handle.address,
      topic,
      partition,
      `stale-${topic}`,
      STALE_SEND_TIMEOUT_MS,
      STALE_SENDS_MAX,
    );
    stale.start();
    try {
      for (const p of led) {
        const elected = await partitions().waitFor(
          topic,
          p,
          (s) => s.leader >= 0 && s.leader !== victim,
          SETTLE_MS,
          `${topic}-${p}: a leader other than the isolated broker ${victim}`,
        );
        assert.ok(elected.leaderEpoch > states.get(p)!.leaderEpoch, `${topic}-${p}: epoch up`);
        assert.ok(
          !elected.isr.includes(victim),
          `${topic}-${p}: the isolated broker out of the ISR`,
        );
      }
      await moreAcksOn(producer, partition, ACKS_DURING, "acks=all sends on the new leader");
      // The first pinned send reached the isolated leader while it still led (it cannot learn
      // otherwise): it was appended there and could not be acknowledged.
      // (An acknowledgement ends the wait too, to fail below saying so.)
      await waitFor(
        () => stale.acked.length > 0 || stale.failed(ErrorCode.REQUEST_TIMED_OUT) >= 1,
        {
          timeoutMs: SETTLE_MS,
          message: "a pinned send appended on the isolated leader and timed out",
        },
      );
    } finally {
      await stale.stop();
    }
    assert.deepEqual(stale.acked, [], "the isolated leader acknowledged nothing sent to it");
    t.diagnostic(
      `sends to the isolated leader: ${JSON.stringify(Object.fromEntries(stale.failures))}`,
    );
    await netLab().heal(victim);
    await finish(t, topic, producer);
    assert.ok((await truncations()) > 0, `broker ${victim}'s truncation counter of ${topic}`);
    // It dropped its uncommitted tail, and nothing below the high watermark it had (KIP-101).
    const cuts = await loggedTruncations(handle.logFile, topic, partition);
    assert.ok(
      cuts.some((c) => c.truncateTo < c.logEndOffset && c.truncateTo >= hwAtCut),
      `broker ${victim} truncated ${topic}-${partition} from its log end to at least ${hwAtCut}: ${JSON.stringify(cuts)}`,
    );
    const now = (await partitions().states(topic)).get(partition)!;
    const records = await fetchAll(
      clients.broker(cluster.broker(now.leader).address),
      topic,
      partition,
    );
    const staleValues = new Set(stale.sent);
    const survivors = records.filter((r) => r.value !== null && staleValues.has(r.value));
    assert.deepEqual(survivors, [], "nothing appended on the isolated leader is read back");
  });
});

/**
 * Idempotent producers under real faults (docs/idempotence.md): a local cluster of real
 * processes (etcd, 2 controllers, 3 brokers, 1 gateway).
 *
 * 1. The replication oracle with the idempotent TypeScript producer (`add`) while a leader is
 *    SIGKILLed and then another SIGSTOPped past its session: every record is acknowledged and
 *    read back exactly once (0 duplicates, 0 lost), in send order per partition.
 * 2. A batch whose answer a TCP proxy drops (it forwards the request, holds the answer until the
 *    leader's log shows the append, then cuts the connection) is sent again: written once,
 *    answered with its original offsets.
 * 3. Out-of-order and stale-epoch batches get their typed errors; the state survives a SIGKILL
 *    and restart of the only replica (recovery) and a leader change (RF 3).
 * 4. A producer whose last batch is older than producer.id.expiration.ms is dropped.
 * 5. Publish through the gateway while the leader is SIGKILLed appends each record once.
 */
import assert from "node:assert/strict";
import { createServer, type Server, type Socket, connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { Producer } from "../../services/client/producer.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import type { GatewayServiceClient } from "../../services/shared/generated/samsa/v1/GatewayService.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import { fromProtoErrorCode } from "../../services/shared/grpc/errors.js";
import { gatewayService } from "../../services/shared/grpc/proto.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopics,
  fetchAll,
  listOffset,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import {
  type Acked,
  checkOracle,
  type OracleProducer,
  type PartitionInfo,
  partitionInfos,
  waitForIsr,
} from "./replication-helpers.js";

const PARTITIONS = 3;
const REPLICAS = 3;
const SESSION_MS = 2_000;
const LAG_MS = 3_000;
const SETTLE_MS = 30_000;
/** Producer state expiry of the brokers: longer than any fault here, ms. */
const EXPIRATION_MS = 20_000;
const ACKS_ALL = 3;
/** Longest wait for a round's deliveries: the producer's delivery timeout and then some, ms. */
const DELIVERY_WAIT_MS = 130_000;
const CALL_MS = 10_000;

const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

/** The idempotent producer of the oracle: one loop of add + flush per partition. */
class IdempotentOracle {
  readonly sent = new Map<number, string[]>();
  readonly ackedAt = new Map<string, number>();
  readonly failed: string[] = [];
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(
    readonly producer: Producer,
    private readonly topic: string,
  ) {
    for (let p = 0; p < PARTITIONS; p++) this.sent.set(p, []);
  }

  get ackedCount(): number {
    return this.ackedAt.size;
  }

  start(): void {
    for (let p = 0; p < PARTITIONS; p++) this.loops.push(this.loop(p));
  }

  /** Records added and not yet settled, per partition. */
  private readonly pending = new Map<number, number>();

  /** Rounds of 20 records per partition, each waiting for its own partition's outcomes only. */
  private async loop(partition: number): Promise<void> {
    this.pending.set(partition, 0);
    for (let round = 0; !this.stopped && round < 2_000; round++) {
      for (let i = 0; i < 20; i++) {
        const value = `p${partition}-${round}-${i}`;
        this.sent.get(partition)!.push(value);
        this.pending.set(partition, this.pending.get(partition)! + 1);
        await this.producer.add(this.topic, { partition, value: Buffer.from(value) }, (err, md) => {
          this.pending.set(partition, this.pending.get(partition)! - 1);
          if (err !== null || md === null) this.failed.push(`${value}: ${err?.message}`);
          else this.ackedAt.set(value, md.offset);
        });
      }
      await waitFor(() => this.pending.get(partition) === 0, {
        timeoutMs: DELIVERY_WAIT_MS,
        intervalMs: 5,
        message: `partition ${partition}: the round's records settled`,
      });
    }
  }

  async waitForMoreAcks(n: number, what: string): Promise<void> {
    const target = this.ackedCount + n;
    await waitFor(() => this.ackedCount >= target, { timeoutMs: SETTLE_MS, message: what });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await this.producer.flush().catch(() => undefined);
  }

  /** The acknowledged records per partition in send order, for checkOracle. */
  asOracle(): Pick<OracleProducer, "acked"> {
    const acked = new Map<number, Acked[]>();
    for (const [p, values] of this.sent) {
      acked.set(
        p,
        values
          .filter((v) => this.ackedAt.has(v))
          .map((value) => ({ value, offset: this.ackedAt.get(value)! })),
      );
    }
    return { acked };
  }
}

/**
 * A TCP proxy to one address. While `holdAnswers` is set, bytes from the server are kept back;
 * `cut()` then closes both sides, so a request that went through never gets its answer.
 */
class AnswerDroppingProxy {
  holdAnswers = false;
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  async start(target: string): Promise<string> {
    const [host, port] = target.split(":") as [string, string];
    this.server = createServer((client) => {
      const upstream = connect(Number(port), host);
      this.sockets.add(client);
      this.sockets.add(upstream);
      client.on("data", (d) => upstream.write(d));
      upstream.on("data", (d) => {
        if (!this.holdAnswers) client.write(d);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("close", close).on("error", close);
      upstream.on("close", close).on("error", close);
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    const address = this.server.address();
    assert.ok(address !== null && typeof address === "object");
    return `127.0.0.1:${address.port}`;
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.holdAnswers = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

describe("idempotent producers under faults", { timeout: 600_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const fresh = new Clients();
  let gateway: GatewayServiceClient;

  before(async () => {
    cluster = await startTestCluster({
      controllers: 2,
      brokers: 3,
      gateways: 1,
      brokerArgs: [
        `--broker.session.timeout.ms=${SESSION_MS}`,
        `--replica.lag.time.max.ms=${LAG_MS}`,
        "--replica.fetch.backoff.ms=100",
        "--replica.fetch.wait.max.ms=200",
        `--producer.id.expiration.ms=${EXPIRATION_MS}`,
        "--producer.id.expiration.check.interval.ms=200",
      ],
    });
    gateway = createClient(gatewayService.Client, cluster.gateways[0]!);
  });
  after(async () => {
    gateway?.close();
    clients.close();
    fresh.close();
    await cluster?.stop();
  });

  const topicOf = async (prefix: string, replicationFactor: number, partitions = PARTITIONS) => {
    const topic = uniqueTopic(prefix);
    const admin = clients.admin((await cluster.activeController()).address);
    const [r] = await createTopics(admin, [
      {
        name: topic,
        numPartitions: partitions,
        replicationFactor,
        configs: { "min.insync.replicas": String(Math.min(2, replicationFactor)) },
      },
    ]);
    assert.equal(r!.errorCode, 0, `create ${topic}: ${r!.errorMessage}`);
    const infos = await waitForIsr(
      cluster,
      clients,
      topic,
      partitions,
      (p) => p.isr.length === replicationFactor,
      SETTLE_MS,
      `${topic}: ISR full`,
    );
    // Named in etcd is not yet serving: wait until every leader answers for its partitions.
    await waitForLeaders(cluster, clients, topic, partitions, SETTLE_MS);
    return { topic, infos };
  };

  const initProducerId = async (address: string): Promise<bigint> => {
    const res = await unary(clients.broker(address), "InitProducerId", {}, { deadlineMs: CALL_MS });
    return BigInt(res.producerId);
  };

  /** One idempotent batch of `count` records from `seq`. */
  const batch = (
    pid: bigint,
    epoch: number,
    seq: number,
    count: number,
    tag: string,
    ts?: number,
  ) =>
    buildBatch(
      Array.from({ length: count }, (_, i) => ({
        key: null,
        value: Buffer.from(`${tag}-${seq + i}`),
        timestamp: ts ?? Date.now(),
      })),
      { producerId: pid, producerEpoch: epoch, baseSequence: seq },
    );

  const produceTo = async (address: string, topic: string, records: Buffer) => {
    const res = await unary(
      clients.broker(address),
      "Produce",
      { partitions: [{ topic, partition: 0, records }], acks: ACKS_ALL, timeoutMs: 5_000 },
      { deadlineMs: CALL_MS },
    );
    const r = res.partitions[0]!;
    return { code: fromProtoErrorCode(r.errorCode), base: Number(r.baseOffset), r };
  };

  const leaderAddress = async (topic: string) => {
    const info = await waitFor(
      async () => {
        const p = (await partitionInfos(cluster, clients, topic))?.get(0);
        if (p === undefined || p.leader < 0) return undefined;
        const b = cluster.broker(p.leader);
        return b.running && !b.paused ? p : undefined;
      },
      { timeoutMs: SETTLE_MS, message: `${topic}: a live leader` },
    );
    return { id: info.leader, address: cluster.broker(info.leader).address, info };
  };

  test("the oracle with idempotence: SIGKILL then SIGSTOP of leaders, every record once, none lost", async () => {
    const { topic, infos } = await topicOf("idem-oracle", REPLICAS);
    // A call to the paused leader is abandoned after requestTimeoutMs and retried elsewhere.
    const producer = new Producer({
      bootstrapServers: [...cluster.bootstrap],
      lingerMs: 2,
      requestTimeoutMs: 3_000,
    });
    const oracle = new IdempotentOracle(producer, topic);
    try {
      oracle.start();
      await oracle.waitForMoreAcks(200, "acks before the faults");
      assert.ok(producer.producerId >= 0n, "the producer got a producer id");
      const killed = cluster.broker(infos.get(0)!.leader);
      await killed.kill("SIGKILL");
      await waitForIsr(
        cluster,
        clients,
        topic,
        PARTITIONS,
        (p) => p.leader !== Number(killed.id) && !p.isr.includes(Number(killed.id)),
        SETTLE_MS,
        "new leaders without the killed broker",
      );
      await oracle.waitForMoreAcks(200, "acks on the new leaders");
      await killed.restart();
      const healed = await waitForIsr(
        cluster,
        clients,
        topic,
        PARTITIONS,
        full,
        SETTLE_MS,
        "ISR full",
      );
      const paused = cluster.broker(healed.get(1)!.leader);
      await paused.pause();
      try {
        await waitForIsr(
          cluster,
          clients,
          topic,
          PARTITIONS,
          (p) => p.leader !== Number(paused.id),
          SETTLE_MS,
          "new leaders while one is paused",
        );
        await oracle.waitForMoreAcks(200, "acks while the old leader is paused");
      } finally {
        await paused.resume();
      }
      await oracle.waitForMoreAcks(100, "acks after SIGCONT");
      await oracle.stop();
      await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, "ISR full again");
      assert.deepEqual(oracle.failed, [], "no record failed (0 lost)");
      let sent = 0;
      for (const v of oracle.sent.values()) sent += v.length;
      assert.equal(oracle.ackedCount, sent, "every record sent was acknowledged");
      await checkOracle(cluster, clients, fresh, topic, oracle.asOracle() as OracleProducer);
    } finally {
      await oracle.stop();
      await producer.close().catch(() => undefined);
    }
  });

  test("a batch whose answer was dropped is written once and answered with its first offsets", async () => {
    const { topic } = await topicOf("idem-proxy", REPLICAS, 1);
    const leader = await leaderAddress(topic);
    const pid = await initProducerId(leader.address);
    // Something before it, so the offsets are not trivially 0.
    assert.equal((await produceTo(leader.address, topic, batch(pid, 0, 0, 3, "a"))).code, 0);
    const proxy = new AnswerDroppingProxy();
    const through = new Clients();
    try {
      const proxied = await proxy.start(leader.address);
      // Connect first, so only the request's answer is held back.
      await unary(
        through.broker(proxied),
        "Metadata",
        { topics: [topic] },
        { deadlineMs: CALL_MS },
      );
      const before = Number(
        (await listOffset(clients.broker(leader.address), topic, 0, -1, CALL_MS)).offset,
      );
      const bytes = batch(pid, 0, 3, 4, "a");
      proxy.holdAnswers = true;
      const lost = unary(
        through.broker(proxied),
        "Produce",
        {
          partitions: [{ topic, partition: 0, records: Buffer.from(bytes) }],
          acks: ACKS_ALL,
          timeoutMs: 5_000,
        },
        { deadlineMs: CALL_MS },
      ).then(
        () => "answered",
        () => "lost",
      );
      await waitFor(
        async () =>
          Number(
            (await listOffset(clients.broker(leader.address), topic, 0, -1, CALL_MS)).offset,
          ) >=
          before + 4,
        { timeoutMs: SETTLE_MS, message: "the leader appended the proxied batch" },
      );
      proxy.cut();
      assert.equal(await lost, "lost", "the answer never reached the client");
      const again = await produceTo(leader.address, topic, bytes);
      assert.equal(again.code, ErrorCode.NONE, again.r.errorMessage);
      assert.equal(again.base, before, "the re-send gets the first offsets");
      const end = Number(
        (await listOffset(clients.broker(leader.address), topic, 0, -1, CALL_MS)).offset,
      );
      assert.equal(end, before + 4, "nothing was appended again");
      const values = (await fetchAll(clients.broker(leader.address), topic, 0)).map((r) => r.value);
      assert.deepEqual(
        values,
        [0, 1, 2, 3, 4, 5, 6].map((i) => `a-${i}`),
      );
    } finally {
      through.close();
      await proxy.stop();
    }
  });

  test("typed errors; the state survives a restart of the only replica and a leader change", async (t) => {
    const { topic: single } = await topicOf("idem-rf1", 1, 1);
    let leader = await leaderAddress(single);
    const pid = await initProducerId(leader.address);
    const first = batch(pid, 0, 0, 2, "s");
    assert.equal((await produceTo(leader.address, single, first)).code, ErrorCode.NONE);
    assert.equal(
      (await produceTo(leader.address, single, batch(pid, 0, 5, 1, "s"))).code,
      ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    );
    assert.equal(
      (await produceTo(leader.address, single, batch(pid + 1_000_000n, 0, 3, 1, "s"))).code,
      ErrorCode.UNKNOWN_PRODUCER_ID,
    );
    const bumped = batch(pid, 1, 0, 1, "t");
    assert.equal((await produceTo(leader.address, single, bumped)).base, 2);
    assert.equal(
      (await produceTo(leader.address, single, batch(pid, 0, 2, 1, "s"))).code,
      ErrorCode.INVALID_PRODUCER_EPOCH,
    );
    // SIGKILL: the restart recovers the log and rebuilds the state from it.
    const broker = cluster.broker(leader.id);
    await broker.kill("SIGKILL");
    await broker.restart();
    leader = await leaderAddress(single);
    await waitFor(async () => (await produceTo(leader.address, single, bumped)).code === 0, {
      timeoutMs: SETTLE_MS,
      message: "the restarted broker answers",
    });
    const dup = await produceTo(leader.address, single, bumped);
    assert.equal(dup.base, 2, "after the restart the re-send is still a duplicate");
    assert.equal(
      Number((await listOffset(clients.broker(leader.address), single, 0, -1, CALL_MS)).offset),
      3,
    );

    const { topic: replicated } = await topicOf("idem-rf3", REPLICAS, 1);
    const old = await leaderAddress(replicated);
    const rpid = await initProducerId(old.address);
    const r0 = batch(rpid, 0, 0, 3, "r");
    assert.equal((await produceTo(old.address, replicated, r0)).base, 0);
    await cluster.broker(old.id).kill("SIGKILL");
    t.after(async () => {
      if (!cluster.broker(old.id).running) await cluster.broker(old.id).restart();
    });
    const next = await waitFor(
      async () => {
        const l = await leaderAddress(replicated);
        return l.id !== old.id ? l : undefined;
      },
      { timeoutMs: SETTLE_MS, message: "a new leader" },
    );
    const dupNew = await waitFor(
      async () => {
        const r = await produceTo(next.address, replicated, r0);
        return r.code === ErrorCode.NONE ? r : undefined;
      },
      { timeoutMs: SETTLE_MS, message: "the new leader answers the re-send" },
    );
    assert.equal(dupNew.base, 0, "the new leader answers the first offsets");
    assert.equal(
      (await produceTo(next.address, replicated, batch(rpid, 0, 4, 1, "r"))).code,
      ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    );
    assert.equal((await produceTo(next.address, replicated, batch(rpid, 0, 3, 1, "r"))).base, 3);
    await cluster.broker(old.id).restart();
  });

  test("a producer idle past producer.id.expiration.ms is dropped", async () => {
    const { topic } = await topicOf("idem-expiry", 1, 1);
    const leader = await leaderAddress(topic);
    const pid = await initProducerId(leader.address);
    // Its last batch's timestamp is older than the expiry: the next check drops it.
    const old = Date.now() - 2 * EXPIRATION_MS;
    const first = await produceTo(leader.address, topic, batch(pid, 0, 0, 1, "x", old));
    assert.equal(first.code, 0, first.r.errorMessage);
    const fresh = await initProducerId(leader.address);
    assert.equal((await produceTo(leader.address, topic, batch(fresh, 0, 0, 1, "y"))).code, 0);
    // A gap answers OUT_OF_ORDER while the state is there, UNKNOWN_PRODUCER_ID once it is gone;
    // neither writes anything.
    await waitFor(
      async () =>
        (await produceTo(leader.address, topic, batch(pid, 0, 5, 1, "x"))).code ===
        ErrorCode.UNKNOWN_PRODUCER_ID,
      { timeoutMs: SETTLE_MS, message: "the idle producer expired" },
    );
    assert.equal(
      (await produceTo(leader.address, topic, batch(fresh, 0, 5, 1, "y"))).code,
      ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
      "the producer that wrote recently is still known",
    );
  });

  test("Publish through the gateway while the leader is SIGKILLed appends each record once", async (t) => {
    const { topic, infos } = await topicOf("idem-gateway", REPLICAS, 1);
    const acked = new Map<string, number>();
    const sent: string[] = [];
    let stopped = false;
    const loop = (async () => {
      for (let i = 0; !stopped && i < 5_000; i++) {
        const values = Array.from({ length: 5 }, (_, k) => `g-${i}-${k}`);
        sent.push(...values);
        try {
          const res = await unary(
            gateway,
            "Publish",
            {
              topic,
              records: values.map((v) => ({ partition: 0, value: Buffer.from(v), headers: [] })),
              acks: ACKS_ALL,
              timeoutMs: 5_000,
            },
            { deadlineMs: 20_000 },
          );
          res.results.forEach((r, k) => {
            if (r.errorCode === 0) acked.set(values[k]!, Number(r.offset));
          });
        } catch {
          // Not acknowledged; the next Publish carries new records.
        }
      }
    })();
    await waitFor(() => acked.size >= 100, { timeoutMs: SETTLE_MS, message: "publishes before" });
    const victim = cluster.broker(infos.get(0)!.leader);
    await victim.kill("SIGKILL");
    t.after(async () => {
      if (!victim.running) await victim.restart();
    });
    const target = acked.size + 100;
    await waitFor(() => acked.size >= target, { timeoutMs: SETTLE_MS, message: "publishes after" });
    stopped = true;
    await loop;
    await victim.restart();
    const leader = await leaderAddress(topic);
    const needed = Math.max(...acked.values()) + 1;
    await waitFor(
      async () =>
        Number((await listOffset(clients.broker(leader.address), topic, 0, -1, CALL_MS)).offset) >=
        needed,
      { timeoutMs: SETTLE_MS, message: "the high watermark covers every acknowledged record" },
    );
    const records = await fetchAll(clients.broker(leader.address), topic, 0);
    const seen = new Map<string, number>();
    for (const r of records) {
      assert.ok(!seen.has(r.value ?? ""), `${r.value} is in the log once`);
      seen.set(r.value ?? "", r.offset);
    }
    for (const [value, offset] of acked) {
      assert.equal(seen.get(value), offset, `acknowledged ${value} at ${offset}`);
    }
    assert.ok(sent.length >= acked.size);
  });
});

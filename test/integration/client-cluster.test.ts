/**
 * The client library (Producer, Consumer, AdminClient over one Cluster) against a real local
 * cluster (etcd, 2 controllers, 3 brokers as processes): key partitioning as Kafka's murmur2,
 * round robin without keys, consuming from earliest, latest and a timestamp, a producer riding
 * out a restart of the partition leader's broker, and the admin round trip through the active
 * and through the standby controller.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AdminClient,
  Cluster,
  type ConsumeOptions,
  Consumer,
  type ConsumerRecord,
  ErrorCode,
  murmur2,
  Producer,
  type ProducerRecord,
  type RecordMetadata,
  type TopicDescription,
  toPositive,
} from "../../services/client/index.js";
import {
  type LocalCluster,
  startLocalCluster,
} from "../../services/local-cluster/local-cluster.js";
import { waitFor } from "../support/wait-for.js";

/** Deadline of one client call, ms (short: a hang should fail the test, not the runner). */
const REQUEST_TIMEOUT_MS = 5_000;
/** Deadline of an admin operation or a consume's start, with retries, ms. */
const API_TIMEOUT_MS = 20_000;
/** How long a new topic's partitions may take to get leaders, ms. */
const LEADERS_TIMEOUT_MS = 15_000;
/** How long a consume may take to read what a test expects, ms. */
const CONSUME_TIMEOUT_MS = 15_000;
/** Delivery deadline of a send to a partition whose only replica is restarting, ms. */
const RESTART_DELIVERY_TIMEOUT_MS = 45_000;

/** Pause between two polls that each produce a record, ms. */
const POLL_INTERVAL_MS = 200;

/** A topic name no other test (or run) uses. */
function uniqueTopic(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** Kafka's partition of a key: `toPositive(murmur2(utf8(key))) % n`. */
function kafkaPartition(key: string, partitions: number): number {
  return toPositive(murmur2(Buffer.from(key, "utf8"))) % partitions;
}

/** `partition:offset`, to compare records as sets. */
const at = (r: { partition: number; offset: number }): string => `${r.partition}:${r.offset}`;

/** `KEEP_CLUSTER_DATA=1` keeps the cluster's dir (data and `logs/<name>.log`) to debug a failure. */
const KEEP_DATA = process.env.KEEP_CLUSTER_DATA === "1";

describe("client library against a real cluster", { timeout: 90_000 }, () => {
  let cluster: LocalCluster;
  let client: Cluster;
  let admin: AdminClient;
  let producer: Producer;
  let consumer: Consumer;

  before(async () => {
    cluster = await startLocalCluster({
      controllers: 2,
      brokers: 3,
      keepDataDir: KEEP_DATA,
    });
    if (KEEP_DATA) console.log(`cluster data and logs: ${cluster.dataDir}`);
    client = new Cluster({
      bootstrapServers: cluster.bootstrap,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
    });
    admin = new AdminClient({
      controllers: cluster.controllers,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      apiTimeoutMs: API_TIMEOUT_MS,
    });
    producer = new Producer({ cluster: client, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    consumer = new Consumer({ cluster: client, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  });

  after(async () => {
    await producer?.close();
    consumer?.close();
    client?.close();
    admin?.close();
    await cluster?.stop();
  });

  /** Waits until `describeTopics` shows a leader for every partition of `topic`. */
  const waitForLeaders = (topic: string, via = admin): Promise<TopicDescription> =>
    waitFor(
      async () => {
        const [t] = await via.describeTopics([topic]);
        if (t?.error !== null || t.partitions.length === 0) return undefined;
        return t.partitions.every((p) => p.leaderId >= 0) ? t : undefined;
      },
      { timeoutMs: LEADERS_TIMEOUT_MS, message: `leaders of every partition of ${topic}` },
    );

  /** Creates `topic` (RF 1) through the admin client and waits for its leaders. */
  const createTopic = async (topic: string, partitions: number): Promise<TopicDescription> => {
    const [created] = await admin.createTopics([
      { name: topic, numPartitions: partitions, replicationFactor: 1 },
    ]);
    assert.equal(created?.error, null, `create ${topic}`);
    return waitForLeaders(topic);
  };

  /**
   * Consumes `topic` until `count` records arrived (then stops), or until the consume timeout
   * (then fails, naming how many arrived).
   */
  const collect = async (
    topic: string,
    count: number,
    options: Omit<ConsumeOptions, "signal"> = {},
  ): Promise<ConsumerRecord[]> => {
    const out: ConsumerRecord[] = [];
    const signal = AbortSignal.timeout(CONSUME_TIMEOUT_MS);
    const records = consumer.consume(topic, {
      startTimeoutMs: API_TIMEOUT_MS,
      ...options,
      signal,
    });
    for await (const r of records) {
      out.push(r);
      if (out.length >= count) break;
    }
    assert.equal(out.length, count, `records of ${topic} within ${CONSUME_TIMEOUT_MS} ms`);
    return out;
  };

  /** The log end offset of every partition of `topic`. */
  const latestOffsets = async (topic: string, partitions: number) =>
    consumer.listOffsets(
      topic,
      Array.from({ length: partitions }, (_, p) => p),
      "latest",
    );

  test("keyed records go to murmur2(key) % n, unkeyed ones round robin", async () => {
    const topic = uniqueTopic("keyed");
    const partitions = 4;
    await createTopic(topic, partitions);
    const keys = Array.from({ length: 20 }, (_, k) => `user-${k}`);
    const keyed: ProducerRecord[] = [];
    for (let round = 0; round < 5; round++) {
      for (const key of keys) keyed.push({ key, value: `${key}#${round}` });
    }
    const keyedMeta = await producer.send(topic, keyed);
    keyedMeta.forEach((m, i) => {
      const key = keyed[i]!.key as string;
      assert.equal(m.partition, kafkaPartition(key, partitions), `partition of ${key}`);
    });
    assert.ok(
      new Set(keyedMeta.map((m) => m.partition)).size > 1,
      "20 keys hash to more than one partition",
    );

    const unkeyedCount = 40;
    const unkeyed = Array.from({ length: unkeyedCount }, (_, i) => ({ value: `free-${i}` }));
    const unkeyedMeta = await producer.send(topic, unkeyed);
    const perPartition = new Array<number>(partitions).fill(0);
    for (const m of unkeyedMeta) perPartition[m.partition]!++;
    assert.deepEqual(
      perPartition,
      new Array<number>(partitions).fill(unkeyedCount / partitions),
      "round robin spreads unkeyed records evenly over every partition",
    );

    // What the brokers hold agrees with what the producer reported.
    const total = keyed.length + unkeyedCount;
    const consumed = await collect(topic, total, { from: "earliest" });
    const sent = new Map<string, string>();
    [...keyedMeta, ...unkeyedMeta].forEach((m, i) => {
      sent.set(at(m), String([...keyed, ...unkeyed][i]!.value));
    });
    // Every sent record is read exactly once, from the partition the producer reported, and
    // each partition's records in the order they were sent (the order of their offsets).
    const byPartition = (placed: readonly { partition: number }[], values: string[]) => {
      const out = new Map<number, string[]>();
      placed.forEach((m, i) => {
        out.set(m.partition, [...(out.get(m.partition) ?? []), values[i]!]);
      });
      return out;
    };
    const sentValues = [...keyed, ...unkeyed].map((r) => String(r.value));
    const sentByPartition = byPartition([...keyedMeta, ...unkeyedMeta], sentValues);
    const readByPartition = byPartition(
      consumed,
      consumed.map((r) => r.value?.toString() ?? "<null>"),
    );
    for (let p = 0; p < partitions; p++) {
      assert.deepEqual(
        readByPartition.get(p) ?? [],
        sentByPartition.get(p) ?? [],
        `partition ${p}`,
      );
      const offsets = consumed.filter((r) => r.partition === p).map((r) => r.offset);
      assert.deepEqual(
        offsets,
        offsets.map((_, i) => i),
        `partition ${p}: offsets 0..n-1, each once, in order`,
      );
    }
    assert.equal(new Set(consumed.map((r) => r.value?.toString())).size, sentValues.length);
    const lastRoundOfKey = new Map<string, number>();
    for (const r of consumed) {
      assert.equal(r.value?.toString(), sent.get(at(r)), `value at ${at(r)}`);
      if (r.key === null) continue;
      const key = r.key.toString();
      assert.equal(
        r.partition,
        kafkaPartition(key, partitions),
        `${key} consumed from its partition`,
      );
      const round = Number(r.value!.toString().split("#")[1]);
      assert.ok(round > (lastRoundOfKey.get(key) ?? -1), `${key}: records in send order`);
      lastRoundOfKey.set(key, round);
    }
  });

  test("consume from earliest yields every record once, offsets contiguous per partition", async () => {
    const topic = uniqueTopic("earliest");
    const partitions = 3;
    await createTopic(topic, partitions);
    const sent: RecordMetadata[] = [];
    const values = new Map<string, string>();
    // Three sends, so each partition's log holds several batches.
    for (let s = 0; s < 3; s++) {
      const records = Array.from({ length: 30 }, (_, i) => ({
        key: `k${i % 10}`,
        value: `send${s}-${i}`,
      }));
      const meta = await producer.send(topic, records);
      meta.forEach((m, i) => {
        values.set(at(m), records[i]!.value);
      });
      sent.push(...meta);
    }
    const consumed = await collect(topic, sent.length, { from: "earliest" });
    const nextOffset = new Map<number, number>();
    for (const r of consumed) {
      assert.equal(r.topic, topic);
      const expected = nextOffset.get(r.partition) ?? 0;
      assert.equal(r.offset, expected, `partition ${r.partition}: contiguous offsets`);
      nextOffset.set(r.partition, expected + 1);
      assert.equal(r.value?.toString(), values.get(at(r)), `value at ${at(r)}`);
    }
    // Nothing more in the logs than what was read (no batch written twice).
    const latest = await latestOffsets(topic, partitions);
    for (let p = 0; p < partitions; p++) {
      assert.equal(latest.get(p), nextOffset.get(p) ?? 0, `partition ${p}: read to the end`);
    }
  });

  test("consume from latest sees only records produced after it started", async () => {
    const topic = uniqueTopic("latest");
    const partitions = 3;
    await createTopic(topic, partitions);
    await producer.send(
      topic,
      Array.from({ length: 30 }, (_, i) => ({ value: `old-${i}` })),
    );
    const before = await latestOffsets(topic, partitions);

    const stop = new AbortController();
    const timeout = setTimeout(() => stop.abort(), CONSUME_TIMEOUT_MS);
    const iterator = consumer
      .consume(topic, { from: "latest", signal: stop.signal, startTimeoutMs: API_TIMEOUT_MS })
      [Symbol.asyncIterator]();
    try {
      // The consumer picks its start offsets some time after this first next(): keep producing
      // until it yields, so that it has started before some of these records were written.
      const first = iterator.next();
      let firstSettled = false;
      const noteSettled = (): void => {
        firstSettled = true;
      };
      // Handled here so that a failure is not an unhandled rejection; `await first` rethrows it.
      first.then(noteSettled, noteSettled);
      let round = 0;
      await waitFor(
        async () => {
          if (firstSettled) return true;
          await producer.send(topic, [{ value: `new-${round++}` }]);
          return firstSettled;
        },
        {
          timeoutMs: CONSUME_TIMEOUT_MS,
          intervalMs: POLL_INTERVAL_MS,
          message: "the first record from latest",
        },
      );
      const seen: ConsumerRecord[] = [];
      const head = await first;
      assert.ok(!head.done, "the consumer yields");
      seen.push(head.value);

      // Then a known tail, which must arrive in full.
      const tail = Array.from({ length: 12 }, (_, i) => ({ value: `tail-${i}` }));
      await producer.send(topic, tail);
      while (seen.filter((r) => r.value?.toString().startsWith("tail-")).length < tail.length) {
        const next = await iterator.next();
        assert.ok(!next.done, "consume ended before the tail arrived");
        seen.push(next.value);
      }
      for (const r of seen) {
        const value = r.value?.toString() ?? "";
        assert.match(value, /^(new|tail)-\d+$/, "only records produced after the start");
        assert.ok(r.offset >= before.get(r.partition)!, `${at(r)} is past the old log end`);
      }
      assert.equal(new Set(seen.map(at)).size, seen.length, "no record twice");
    } finally {
      clearTimeout(timeout);
      stop.abort();
      await iterator.return(undefined);
    }
  });

  test("consume from a timestamp starts at the first record at or after it", async () => {
    const topic = uniqueTopic("by-time");
    const partitions = 3;
    await createTopic(topic, partitions);
    // Partition p gets 10 records (one batch) stamped t0 + i s + p * 100 ms.
    const t0 = Date.now() - 60_000;
    const perPartition = 10;
    const records = Array.from({ length: partitions * perPartition }, (_, n) => {
      const p = Math.floor(n / perPartition);
      const i = n % perPartition;
      return { partition: p, value: `p${p}-i${i}`, timestamp: t0 + i * 1_000 + p * 100 };
    });
    await producer.send(topic, records);

    // 4.15 s: partitions 0 and 1 start at i = 5 (4.0 s and 4.1 s are earlier), partition 2 at
    // i = 4 (4.2 s): the lookup is by record, inside a batch.
    const target = t0 + 4_150;
    const expected = records.filter((r) => r.timestamp >= target);
    const consumed = await collect(topic, expected.length, { from: { timestamp: target } });
    const firstOffset = new Map<number, number>();
    for (const r of consumed) {
      assert.ok(r.timestamp >= target, `${at(r)} at or after the target`);
      if (!firstOffset.has(r.partition)) firstOffset.set(r.partition, r.offset);
    }
    assert.deepEqual(
      [...firstOffset].sort(([a], [b]) => a - b),
      [
        [0, 5],
        [1, 5],
        [2, 4],
      ],
      "start offset per partition",
    );
    assert.deepEqual(
      consumed.map((r) => r.value?.toString()).sort(),
      expected.map((r) => r.value).sort(),
      "exactly the records at or after the target",
    );

    // A time after every record starts at the end: only later records are seen.
    const afterAll = consumer.consume(topic, {
      partitions: [0],
      from: { timestamp: t0 + 3_600_000 },
      signal: AbortSignal.timeout(CONSUME_TIMEOUT_MS),
      startTimeoutMs: API_TIMEOUT_MS,
    });
    const pending = afterAll.next();
    pending.catch(() => {}); // Handled here; the race below rethrows a failure.
    let later: RecordMetadata | undefined;
    let round = 0;
    const got = await waitFor(
      async () => {
        [later] = await producer.send(topic, [{ partition: 0, value: `later-${round++}` }]);
        return Promise.race([pending, sleep(POLL_INTERVAL_MS).then(() => undefined)]);
      },
      { timeoutMs: CONSUME_TIMEOUT_MS, message: "a record after a future timestamp" },
    );
    await afterAll.return(undefined);
    assert.ok(!got.done);
    assert.match(got.value.value?.toString() ?? "", /^later-\d+$/);
    assert.ok(got.value.offset >= perPartition && got.value.offset <= later!.offset);
  });

  for (const how of ["stop", "kill"] as const) {
    const what = how === "stop" ? "stopped (SIGTERM)" : "crashed (SIGKILL)";
    test(`a producer keeps working while the partition leader's broker restarts, ${what}`, async () => {
      const topic = uniqueTopic(`restart-${how}`);
      const partitions = 3;
      const description = await createTopic(topic, partitions);
      const victimId = description.partitions[0]!.leaderId;
      const victim = cluster.broker(victimId);
      const others = description.partitions
        .filter((p) => p.leaderId !== victimId)
        .map((p) => p.partition);
      const acked = new Map<string, string>();
      const note = (meta: RecordMetadata[], records: ProducerRecord[]) =>
        meta.forEach((m, i) => {
          acked.set(at(m), String(records[i]!.value));
        });
      const batch = (label: string, partition: number, n = 5): ProducerRecord[] =>
        Array.from({ length: n }, (_, i) => ({ partition, value: `${label}-${partition}-${i}` }));

      for (let p = 0; p < partitions; p++) {
        const records = batch("before", p);
        note(await producer.send(topic, records), records);
      }

      if (how === "stop") await victim.stop();
      else await victim.kill("SIGKILL");
      // Partition 0's only replica is down: the send waits (retrying) for it to come back.
      const during = batch("during", 0);
      let settled = false;
      const pending = producer
        .send(topic, during, { timeoutMs: RESTART_DELIVERY_TIMEOUT_MS })
        .finally(() => {
          settled = true;
        });
      pending.catch(() => {}); // Handled here; `await pending` below rethrows a failure.
      // Partitions led by other brokers are served meanwhile.
      for (const p of others) {
        const records = batch("meanwhile", p);
        note(await producer.send(topic, records, { timeoutMs: API_TIMEOUT_MS }), records);
      }
      assert.equal(settled, false, "no send to an offline partition succeeds");

      await victim.restart();
      const duringMeta = await pending;
      note(duringMeta, during);
      assert.deepEqual(
        duringMeta.map((m) => m.offset),
        [5, 6, 7, 8, 9],
        "the restarted log continues its offsets",
      );
      for (let p = 0; p < partitions; p++) {
        const records = batch("after", p);
        note(await producer.send(topic, records, { timeoutMs: API_TIMEOUT_MS }), records);
      }

      const consumed = await collect(topic, acked.size, { from: "earliest" });
      const read = new Map(consumed.map((r) => [at(r), r.value?.toString()]));
      assert.deepEqual(
        [...read].sort(),
        [...acked].sort(),
        "every acknowledged record is read back",
      );
      const latest = await latestOffsets(topic, partitions);
      const logEnds = [...latest.values()].reduce((a, b) => a + b, 0);
      assert.equal(logEnds, acked.size, "and the logs hold nothing else");
    });
  }

  test("AdminClient creates, describes and deletes topics", async () => {
    const topic = uniqueTopic("admin");
    const [created] = await admin.createTopics([
      {
        name: topic,
        numPartitions: 2,
        replicationFactor: 1,
        configs: { "retention.ms": "3600000" },
      },
    ]);
    assert.equal(created?.error, null);
    assert.equal(created.name, topic);
    assert.equal(created.numPartitions, 2);
    assert.equal(created.replicationFactor, 1);
    assert.notEqual(created.topicId, "");

    const described = await waitForLeaders(topic);
    assert.equal(described.topicId, created.topicId);
    assert.deepEqual(
      described.partitions.map((p) => p.partition),
      [0, 1],
    );
    const brokerIds = cluster.brokerProcesses.map((b) => Number(b.id));
    for (const p of described.partitions) {
      assert.ok(brokerIds.includes(p.leaderId), `partition ${p.partition} led by a broker`);
      assert.deepEqual(p.replicas, [p.leaderId]);
    }
    assert.equal(described.configs["retention.ms"], "3600000");
    assert.ok((await admin.listTopics()).includes(topic));

    const [again] = await admin.createTopics([
      { name: topic, numPartitions: 1, replicationFactor: 1 },
    ]);
    assert.equal(again?.error?.code, ErrorCode.TOPIC_ALREADY_EXISTS);

    const [deleted] = await admin.deleteTopics([topic]);
    assert.equal(deleted?.error, null);
    await waitFor(
      async () => {
        const [t] = await admin.describeTopics([topic]);
        return t?.error?.code === ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
      },
      { timeoutMs: LEADERS_TIMEOUT_MS, message: `${topic} to be gone` },
    );
    assert.ok(!(await admin.listTopics()).includes(topic));
    const [deletedAgain] = await admin.deleteTopics([topic]);
    assert.equal(deletedAgain?.error?.code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
  });

  test("an AdminClient that knows only the standby controller still creates topics", async () => {
    const active = await cluster.activeController();
    const standby = cluster.controllerProcesses.find((c) => c.id !== active.id);
    assert.ok(standby, "a standby controller");
    const viaStandby = new AdminClient({
      controllers: [standby.address],
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      apiTimeoutMs: API_TIMEOUT_MS,
    });
    try {
      const topic = uniqueTopic("standby");
      const [created] = await viaStandby.createTopics([
        { name: topic, numPartitions: 2, replicationFactor: 1 },
      ]);
      assert.equal(created?.error, null, "created through the standby");
      // The active controller has it, and brokers serve it.
      const described = await waitForLeaders(topic);
      assert.equal(described.topicId, created.topicId);
      const [meta] = await producer.send(topic, [{ key: "k", value: "v" }]);
      assert.equal(meta?.partition, kafkaPartition("k", 2));
      const cluster = await viaStandby.describeCluster();
      assert.equal(cluster.controllerId, active.id, "the standby names the active controller");
    } finally {
      viaStandby.close();
    }
  });
});

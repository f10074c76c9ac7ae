/**
 * The client library against the in-process fake cluster (test/support/fake-cluster.ts): admin
 * calls following NOT_CONTROLLER hints, metadata, produce (partitioning, offsets, retries after
 * a leader change, batching mode) and consume (start positions, skipping records below the
 * position, following a leader change).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  AdminClient,
  Cluster,
  CompressionType,
  Consumer,
  type ConsumerRecord,
  ErrorCode,
  isSamsaError,
  Producer,
  partitionForKey,
} from "../../services/client/index.js";
import { type FakeCluster, startFakeCluster } from "../support/fake-cluster.js";
import { waitFor } from "../support/wait-for.js";

let fake: FakeCluster;
let cluster: Cluster;
let topicSeq = 0;
const uniqueTopic = (): string => `t${++topicSeq}-${Date.now()}`;

before(async () => {
  fake = await startFakeCluster(2);
  cluster = new Cluster({ bootstrapServers: fake.brokers.map((b) => b.address) });
});

after(async () => {
  cluster?.close();
  await fake?.stop();
});

/** Reads `n` records of `topic` with `options`, then stops. */
async function take(
  topic: string,
  n: number,
  options: Parameters<Consumer["consume"]>[1] = {},
): Promise<ConsumerRecord[]> {
  const consumer = new Consumer({ cluster });
  const out: ConsumerRecord[] = [];
  if (n === 0) return out;
  for await (const r of consumer.consume(topic, { maxWaitMs: 50, ...options })) {
    out.push(r);
    if (out.length >= n) break;
  }
  return out;
}

describe("AdminClient", () => {
  it("follows the standby's NOT_CONTROLLER hint to the active controller", async () => {
    const admin = new AdminClient({ controllers: [fake.controllers[0]!] });
    try {
      const topic = uniqueTopic();
      const [created] = await admin.createTopics([{ name: topic, numPartitions: 3 }]);
      assert.equal(created?.error, null);
      assert.equal(fake.topics.get(topic)?.length, 3);
      assert.ok((fake.calls.get("standby.CreateTopics") ?? 0) >= 1);
      // Later calls go straight to the controller that answered.
      const before = fake.calls.get("standby.CreateTopics");
      const [again] = await admin.createTopics([{ name: topic }]);
      assert.ok(isSamsaError(again?.error, ErrorCode.TOPIC_ALREADY_EXISTS));
      assert.equal(fake.calls.get("standby.CreateTopics"), before);
      const [described] = await admin.describeTopics([topic]);
      assert.deepEqual(
        described?.partitions.map((p) => p.leaderId),
        [1, 2, 1],
      );
      assert.ok((await admin.listTopics()).includes(topic));
      const info = await admin.describeCluster();
      assert.deepEqual(
        info.brokers.map((b) => b.id),
        [1, 2],
      );
      const [deleted] = await admin.deleteTopics([topic]);
      assert.equal(deleted?.error, null);
      const [missing] = await admin.describeTopics([topic]);
      assert.ok(isSamsaError(missing?.error, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION));
    } finally {
      admin.close();
    }
  });

  it("skips an unreachable controller and gives up with the last error past its deadline", async () => {
    const admin = new AdminClient({ controllers: ["127.0.0.1:1", fake.controllers[1]!] });
    await admin.describeCluster();
    admin.close();
    const dead = new AdminClient({ controllers: "127.0.0.1:1", apiTimeoutMs: 300 });
    await assert.rejects(dead.listTopics(), (err: unknown) =>
      isSamsaError(err, ErrorCode.LEADER_NOT_AVAILABLE),
    );
    dead.close();
  });
});

describe("Producer and Consumer", () => {
  it("sends keyed records by murmur2 and unkeyed ones round robin, with per-record offsets", async () => {
    const topic = uniqueTopic();
    fake.createTopic(topic, 3);
    const producer = new Producer({ cluster });
    const keyed = await producer.send(
      topic,
      ["a", "b", "c", "a"].map((k) => ({ key: k, value: `v-${k}` })),
    );
    for (const [i, k] of ["a", "b", "c", "a"].entries()) {
      assert.equal(keyed[i]?.partition, partitionForKey(k, 3));
    }
    assert.equal(
      keyed[3]?.offset,
      keyed[0]!.offset +
        (keyed[0]!.partition === keyed[1]!.partition ? 2 : 1) +
        (keyed[0]!.partition === keyed[2]!.partition ? 1 : 0),
    );
    const unkeyed = await producer.send(
      topic,
      Array.from({ length: 6 }, (_, i) => ({ value: `u${i}` })),
    );
    const perPartition = [0, 0, 0];
    for (const m of unkeyed) perPartition[m.partition]!++;
    assert.deepEqual(perPartition, [2, 2, 2]);
    const total = fake.topics.get(topic)!.reduce((n, p) => n + p.next, 0);
    assert.equal(total, 10);
    await producer.close();
  });

  it("retries after a leader change (NOT_LEADER → metadata refresh → new leader)", async () => {
    const topic = uniqueTopic();
    fake.createTopic(topic, 1, [1]);
    const producer = new Producer({ cluster, compression: CompressionType.GZIP });
    const first = await producer.send(topic, [{ value: "one" }], { acks: 1 });
    assert.equal(first[0]?.offset, 0);
    fake.setLeader(topic, 0, 2);
    const notLeaderBefore = fake.calls.get("NOT_LEADER") ?? 0;
    const second = await producer.send(topic, [{ value: "two" }, { value: "three" }]);
    assert.deepEqual(
      second.map((m) => m.offset),
      [1, 2],
    );
    assert.ok((fake.calls.get("NOT_LEADER") ?? 0) > notLeaderBefore);
    const records = await take(topic, 3, { from: "earliest" });
    assert.deepEqual(
      records.map((r) => r.value?.toString()),
      ["one", "two", "three"],
    );
    await producer.close();
  });

  it("fails non-retriable errors at once: unknown partition, record too large", async () => {
    const topic = uniqueTopic();
    fake.createTopic(topic, 1);
    const producer = new Producer({ cluster, maxRequestSizeBytes: 1024 });
    await assert.rejects(producer.send(topic, [{ value: "x", partition: 5 }]), (err: unknown) =>
      isSamsaError(err, ErrorCode.INVALID_REQUEST),
    );
    await assert.rejects(producer.send(topic, [{ value: Buffer.alloc(2000) }]), (err: unknown) =>
      isSamsaError(err, ErrorCode.MESSAGE_TOO_LARGE),
    );
    // Many records are cut into batches of at most max.request.size, in order.
    const many = await producer.send(
      topic,
      Array.from({ length: 50 }, (_, i) => ({ value: Buffer.alloc(100, i) })),
    );
    assert.deepEqual(
      many.map((m) => m.offset),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.ok(fake.topics.get(topic)![0]!.batches.length > 1);
    await producer.close();
  });

  it("gives up on an unknown topic after the delivery timeout", async () => {
    const producer = new Producer({ cluster, deliveryTimeoutMs: 300 });
    await assert.rejects(producer.send("no-such-topic", [{ value: "x" }]), (err: unknown) =>
      isSamsaError(err, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    );
    await producer.close();
  });

  it("batches added records (linger.ms, batch.size) and resolves each delivery", async () => {
    const topic = uniqueTopic();
    fake.createTopic(topic, 2);
    const producer = new Producer({ cluster, lingerMs: 20, batchSizeBytes: 4096 });
    const deliveries = [];
    for (let i = 0; i < 200; i++) {
      deliveries.push((await producer.add(topic, { key: `k${i % 7}`, value: `v${i}` })).delivered);
    }
    await producer.flush();
    const metas = await Promise.all(deliveries);
    for (const [i, m] of metas.entries())
      assert.equal(m.partition, partitionForKey(`k${i % 7}`, 2));
    // Per partition, offsets follow the order of add().
    for (const p of [0, 1]) {
      const offsets = metas.filter((m) => m.partition === p).map((m) => m.offset);
      assert.deepEqual(
        offsets,
        [...offsets].sort((a, b) => a - b),
      );
      assert.equal(new Set(offsets).size, offsets.length);
    }
    const produces = (fake.calls.get("1.Produce") ?? 0) + (fake.calls.get("2.Produce") ?? 0);
    assert.ok(produces < 200, `records were batched (${produces} Produce calls)`);
    await producer.close();
  });

  it("bounds buffer.memory: add waits for room, then max.block.ms fails it", async () => {
    const producer = new Producer({
      cluster,
      bufferMemoryBytes: 200,
      maxBlockMs: 200,
      deliveryTimeoutMs: 600,
      lingerMs: 0,
    });
    // The topic does not exist: the first record occupies the buffer until delivery fails.
    const { delivered } = await producer.add("missing-topic", { value: Buffer.alloc(150) });
    await assert.rejects(
      producer.add("missing-topic", { value: Buffer.alloc(150) }),
      (err: unknown) => isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT),
    );
    await assert.rejects(delivered, (err: unknown) =>
      isSamsaError(err, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    );
    await assert.rejects(producer.flush(), (err: unknown) =>
      isSamsaError(err, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    );
    await producer.close();
  });

  it("consumes from an offset inside a batch, skipping the records before it", async () => {
    const topic = uniqueTopic();
    fake.createTopic(topic, 1);
    const producer = new Producer({ cluster });
    await producer.send(
      topic,
      Array.from({ length: 10 }, (_, i) => ({ key: "k", value: `v${i}`, headers: { h: "x" } })),
    );
    const records = await take(topic, 4, { from: { offset: 6 }, partitions: [0] });
    assert.deepEqual(
      records.map((r) => [r.offset, r.value?.toString(), r.key?.toString()]),
      [6, 7, 8, 9].map((o) => [o, `v${o}`, "k"]),
    );
    assert.equal(records[0]?.headers[0]?.value?.toString(), "x");
    await producer.close();
  });

  it("consumes only new records from latest, across partitions and a leader change", async () => {
    const topic = uniqueTopic();
    fake.createTopic(topic, 2);
    const producer = new Producer({ cluster });
    await producer.send(topic, [{ value: "old", partition: 0 }]);
    const stop = new AbortController();
    const seen: ConsumerRecord[] = [];
    const consumer = new Consumer({ cluster });
    const reading = (async () => {
      for await (const r of consumer.consume(topic, { signal: stop.signal, maxWaitMs: 50 }))
        seen.push(r);
    })();
    // Wait for the consumer to be past its start (it asked ListOffsets of both partitions).
    await waitFor(
      () => fake.calls.get("1.Fetch") !== undefined && fake.calls.get("2.Fetch") !== undefined,
    );
    await producer.send(topic, [
      { value: "a", partition: 0 },
      { value: "b", partition: 1 },
    ]);
    await waitFor(() => seen.length === 2);
    fake.setLeader(topic, 0, 2);
    await producer.send(topic, [{ value: "c", partition: 0 }]);
    await waitFor(() => seen.length === 3);
    stop.abort();
    await reading;
    assert.deepEqual(seen.map((r) => r.value?.toString()).sort(), ["a", "b", "c"]);
    assert.deepEqual(
      seen.filter((r) => r.partition === 0).map((r) => r.offset),
      [1, 2],
    );
    await producer.close();
  });

  it("starts by timestamp, and ends quietly when aborted before the topic exists", async () => {
    const topic = uniqueTopic();
    fake.createTopic(topic, 1);
    const producer = new Producer({ cluster });
    await producer.send(
      topic,
      [10, 20, 30].map((t) => ({ value: `at${t}`, timestamp: 1_000 + t })),
    );
    const records = await take(topic, 2, { from: { timestamp: 1_015 } });
    assert.deepEqual(
      records.map((r) => [r.offset, r.timestamp]),
      [
        [1, 1_020],
        [2, 1_030],
      ],
    );
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 100);
    const none = [];
    for await (const r of new Consumer({ cluster }).consume("not-yet", { signal: stop.signal }))
      none.push(r);
    assert.deepEqual(none, []);
    await producer.close();
  });
});

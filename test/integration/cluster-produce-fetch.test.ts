/**
 * A real local cluster (etcd, 2 controllers, 3 brokers as processes): create a topic through the
 * AdminService, produce batches to each partition's leader, read them back with Fetch,
 * Subscribe and ListOffsets, and long-poll.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { SpecialOffset } from "../../services/shared/generated/samsa/v1/SpecialOffset.js";
import { stream, unary } from "../../services/shared/grpc/client.js";
import { FETCH_WAIT_MS_MAX } from "../../services/shared/protocol-limits.js";
import type { ProducerRecord } from "../../services/shared/record-batch/records.js";
import { waitFor } from "../support/wait-for.js";
import {
  CALL_DEADLINE_MS,
  Clients,
  createTopic,
  decodeRecords,
  fetchAll,
  LONG_POLL_WAKE_TIMEOUT_MS,
  listOffset,
  murmur2,
  partitionForKey,
  produce,
  type ReadRecord,
  settledFlag,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

const PARTITIONS = 3;

describe("cluster: produce and fetch", { timeout: 60_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const topic = uniqueTopic("orders");
  let leaders: Map<number, number>;
  /** The client of partition `p`'s leader. */
  const leaderOf = (p: number) => clients.broker(cluster.broker(leaders.get(p)!).address);

  before(async () => {
    cluster = await startTestCluster();
    await createTopic(clients.admin(cluster.controllers[0]!), topic, PARTITIONS);
    leaders = await waitForLeaders(cluster, clients, topic, PARTITIONS);
  });
  after(async () => {
    clients.close();
    await cluster?.stop();
  });

  test("murmur2 matches the Java client's reference values", () => {
    // From the Java client's Utils.murmur2 (the values kafkajs' tests also assert).
    const reference: [string, number][] = [
      ["", 275646681],
      ["0", 971027396],
      ["1", -1993445489],
      ["128", -326012175],
      ["2187", -1508407203],
      ["16384", -325739742],
      ["10000000", -1830336757],
    ];
    for (const [key, hash] of reference) assert.equal(murmur2(Buffer.from(key)), hash, key);
  });

  test("the topic's partitions have one replica each, led by live brokers", async () => {
    const md = await unary(clients.broker(cluster.bootstrap[0]!), "Metadata", { topics: [topic] });
    const t = md.topics[0]!;
    assert.equal(t.errorCode, 0);
    assert.deepEqual(
      t.partitions.map((p) => p.partition).sort(),
      [...Array(PARTITIONS).keys()],
      "partitions 0..2",
    );
    for (const p of t.partitions) {
      assert.deepEqual(p.replicas, [p.leaderId]);
      assert.deepEqual(p.isr, [p.leaderId]);
      assert.ok([1, 2, 3].includes(p.leaderId), `leader ${p.leaderId} is a broker of the cluster`);
    }
    assert.deepEqual(md.brokers.map((b) => b.id).sort(), [1, 2, 3]);
  });

  test("keyed and unkeyed batches come back in order with contiguous per-partition offsets", async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `user-${i}`);
    const expected = new Map<number, { key: string | null; value: string }[]>();
    for (let p = 0; p < PARTITIONS; p++) expected.set(p, []);
    for (let round = 0; round < 4; round++) {
      // Keyed records go where Kafka's default partitioner puts them; unkeyed ones rotate.
      const batches = new Map<number, ProducerRecord[]>();
      for (const key of keys) {
        const p = partitionForKey(Buffer.from(key), PARTITIONS);
        const value = `${key}#${round}`;
        batches.set(p, [
          ...(batches.get(p) ?? []),
          { key: Buffer.from(key), value: Buffer.from(value) },
        ]);
      }
      const unkeyed = round % PARTITIONS;
      batches.set(unkeyed, [
        ...(batches.get(unkeyed) ?? []),
        ...Array.from({ length: 5 }, (_, i) => ({ value: Buffer.from(`free-${round}-${i}`) })),
      ]);
      await Promise.all(
        [...batches].map(async ([p, records]) => {
          const list = expected.get(p)!;
          const base = await produce(leaderOf(p), topic, p, records);
          assert.equal(base, list.length, `partition ${p}: base offset follows the last one`);
          for (const r of records)
            list.push({ key: r.key ? r.key.toString() : null, value: r.value!.toString() });
        }),
      );
    }
    const partitionsOfKey = new Map<string, Set<number>>();
    for (let p = 0; p < PARTITIONS; p++) {
      const read = await fetchAll(leaderOf(p), topic, p);
      const want = expected.get(p)!;
      assert.deepEqual(
        read.map((r) => r.offset),
        want.map((_, i) => i),
        `partition ${p}: offsets are 0..n-1`,
      );
      assert.deepEqual(
        read.map((r) => ({ key: r.key, value: r.value })),
        want,
        `partition ${p}: records in produce order`,
      );
      for (const r of read) {
        if (r.key === null) continue;
        partitionsOfKey.set(r.key, (partitionsOfKey.get(r.key) ?? new Set()).add(p));
      }
    }
    assert.equal(partitionsOfKey.size, keys.length, "every key was read back");
    for (const [key, ps] of partitionsOfKey) {
      assert.deepEqual([...ps], [partitionForKey(Buffer.from(key), PARTITIONS)], key);
    }
  });

  test("Subscribe streams the records produced after it starts", async () => {
    const p = 1;
    const broker = leaderOf(p);
    const start = Number((await listOffset(broker, topic, p, -1)).offset);
    const got: ReadRecord[] = [];
    const abort = new AbortController();
    const wanted = 6;
    const reading = (async () => {
      const request = { topic, partition: p, offset: String(start) };
      for await (const m of stream(broker, "Subscribe", request, { signal: abort.signal })) {
        got.push(...decodeRecords(m.records as Buffer, start));
        if (got.length >= wanted) return;
      }
    })();
    reading.catch(() => undefined); // awaited below
    for (let i = 0; i < wanted / 2; i++) {
      const values = [`live-${i}-a`, `live-${i}-b`].map((v) => ({ value: Buffer.from(v) }));
      await produce(broker, topic, p, values);
    }
    await Promise.race([
      reading,
      waitFor(() => got.length >= wanted, { timeoutMs: 10_000, message: "6 streamed records" }),
    ]);
    abort.abort();
    await reading;
    assert.deepEqual(
      got.map((r) => [r.offset, r.value]),
      [0, 1, 2].flatMap((i) => [
        [start + 2 * i, `live-${i}-a`],
        [start + 2 * i + 1, `live-${i}-b`],
      ]),
    );
  });

  test("Subscribe from LATEST skips what was there and streams what comes", async () => {
    const p = 2;
    const broker = leaderOf(p);
    await produce(broker, topic, p, [{ value: Buffer.from("before") }]);
    const before = Number((await listOffset(broker, topic, p, -1)).offset);
    const got: ReadRecord[] = [];
    const abort = new AbortController();
    const reading = (async () => {
      const request = { topic, partition: p, special: SpecialOffset.SPECIAL_OFFSET_LATEST };
      for await (const m of stream(broker, "Subscribe", request, { signal: abort.signal }))
        got.push(...decodeRecords(m.records as Buffer));
    })();
    reading.catch(() => undefined); // awaited below
    // The stream resolves LATEST on the broker at some point after the call starts: produce
    // until it delivers, then every record it sent must be one produced after `before`.
    let sent = 0;
    await waitFor(
      async () => {
        await produce(broker, topic, p, [{ value: Buffer.from(`after-${sent++}`) }]);
        return got.length > 0;
      },
      { timeoutMs: 10_000, intervalMs: 100, message: "a record from a LATEST subscription" },
    );
    abort.abort();
    await reading;
    assert.ok(got[0]!.offset >= before, `first streamed offset ${got[0]!.offset} ≥ ${before}`);
    for (const [i, r] of got.entries()) {
      assert.match(r.value!, /^after-\d+$/);
      if (i > 0) assert.equal(r.offset, got[i - 1]!.offset + 1, "contiguous offsets");
    }
  });

  test("ListOffsets answers earliest, latest and by timestamp", async () => {
    const tsTopic = uniqueTopic("timestamps");
    await createTopic(clients.admin(cluster.controllers[1]!), tsTopic, 1);
    const [leader] = (await waitForLeaders(cluster, clients, tsTopic, 1)).values();
    const broker = clients.broker(cluster.broker(leader!).address);
    const t0 = 1_600_000_000_000;
    // Three batches of two records: timestamps t0, t0+10, ..., t0+50 at offsets 0..5.
    for (let b = 0; b < 3; b++) {
      await produce(broker, tsTopic, 0, [
        { value: Buffer.from(`v${2 * b}`), timestamp: t0 + 20 * b },
        { value: Buffer.from(`v${2 * b + 1}`), timestamp: t0 + 20 * b + 10 },
      ]);
    }
    const at = async (ts: number) => {
      const r = await listOffset(broker, tsTopic, 0, ts);
      assert.equal(r.errorCode, 0, r.errorMessage);
      return [Number(r.offset), Number(r.timestamp)];
    };
    assert.equal((await at(-2))[0], 0, "earliest");
    assert.equal((await at(-1))[0], 6, "latest = high watermark");
    assert.deepEqual(await at(0), [0, t0], "before everything: the first record");
    assert.deepEqual(await at(t0), [0, t0]);
    assert.deepEqual(await at(t0 + 15), [2, t0 + 20], "between records: the next one");
    assert.deepEqual(await at(t0 + 30), [3, t0 + 30], "inside a batch");
    assert.deepEqual(await at(t0 + 50), [5, t0 + 50], "the last record");
    assert.equal((await at(t0 + 51))[0], -1, "after everything: none");
  });

  test("a long-poll Fetch waits for data and returns when it arrives, an idle one answers empty", async () => {
    const p = 0;
    const broker = leaderOf(p);
    const end = Number((await listOffset(broker, topic, p, -1)).offset);
    const fetchAt = (maxWaitMs: number) =>
      unary(
        broker,
        "Fetch",
        {
          partitions: [{ topic, partition: p, fetchOffset: String(end), currentLeaderEpoch: -1 }],
          maxWaitMs,
          minBytes: 1,
          maxBytes: 1024 * 1024,
        },
        { deadlineMs: CALL_DEADLINE_MS + maxWaitMs },
      );

    // The call's deadline bounds the idle wait: an idle poll answers, empty, at its max wait.
    const idle = await fetchAt(400);
    assert.equal(idle.partitions[0]!.errorCode, 0);
    assert.equal((idle.partitions[0]!.records as Buffer).length, 0, "nothing to read");

    const polling = fetchAt(FETCH_WAIT_MS_MAX);
    const answered = settledFlag(polling);
    // The stimulus, not a wait for a condition: give the fetch time to park on the partition,
    // so that the data must wake it (an immediate answer would prove nothing).
    await delay(300);
    assert.equal(answered(), false, "with nothing to read the long poll has not answered");
    await produce(broker, topic, p, [{ value: Buffer.from("wake-up") }]);
    await waitFor(answered, {
      timeoutMs: LONG_POLL_WAKE_TIMEOUT_MS,
      message: "the data to wake the long poll before its max wait",
    });
    const woken = await polling;
    const records = decodeRecords(woken.partitions[0]!.records as Buffer, end);
    assert.deepEqual(
      records.map((r) => [r.offset, r.value]),
      [[end, "wake-up"]],
    );
  });
});

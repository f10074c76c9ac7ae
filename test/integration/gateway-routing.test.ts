/**
 * The gateway in a real local cluster (etcd, 2 controllers, 3 brokers and 1 gateway as
 * processes): the broker's calls through the gateway get the leaders' own answers; Publish puts
 * keyed records where Kafka's murmur2 puts them and Consume streams them back decoded; and a
 * partition leader's broker restarting (graceful stop, then a crash) under a publish loop and an
 * open Consume stream is invisible to the client: every Publish succeeds within its deadline and
 * the stream delivers every record once, in order per partition.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { LocalCluster, ProcessHandle } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { CONSUME_RECORDS_PER_MESSAGE_MAX } from "../../services/gateway/consume.js";
import type { ConsumeResponse__Output } from "../../services/shared/generated/samsa/v1/ConsumeResponse.js";
import type { FetchRequest } from "../../services/shared/generated/samsa/v1/FetchRequest.js";
import type { GatewayServiceClient } from "../../services/shared/generated/samsa/v1/GatewayService.js";
import type { PublishRecord } from "../../services/shared/generated/samsa/v1/PublishRecord.js";
import { SpecialOffset } from "../../services/shared/generated/samsa/v1/SpecialOffset.js";
import { createClient, stream, unary } from "../../services/shared/grpc/client.js";
import { adminService, gatewayService } from "../../services/shared/grpc/proto.js";
import { FETCH_WAIT_MS_MAX } from "../../services/shared/protocol-limits.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { waitFor } from "../support/wait-for.js";
import {
  ACKS_LEADER,
  CALL_DEADLINE_MS,
  Clients,
  createTopic,
  decodeRecords,
  fetchAll,
  LONG_POLL_WAKE_TIMEOUT_MS,
  partitionForKey,
  settledFlag,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

const PARTITIONS = 3;
/** A fixed record time, ms, so by-time lookups have known answers. */
const T0 = 1_700_000_000_000;
/** Bytes per Fetch answer in these tests. */
const FETCH_MAX_BYTES = 1024 * 1024;
/** How long the gateway's view of the metadata may lag a broker's, ms. */
const METADATA_LAG_TIMEOUT_MS = 10_000;
/**
 * Deadline of one Publish while a leader restarts, ms: covers a crashed broker's registration
 * lease (about 6 s), its start-up and the controller's re-election, with room to spare.
 */
const PUBLISH_DEADLINE_MS = 30_000;
/** Pause between two publishes of the loop, ms. */
const PUBLISH_INTERVAL_MS = 10;
/** Records the loop publishes to the restarted partition before and after the restart. */
const RECORDS_AROUND_RESTART = 5;
/** How long the loop and the stream may take to get past the restart, ms. */
const RESTART_PROGRESS_TIMEOUT_MS = 30_000;

/** buf's CLI (a dev dependency): its `curl --reflect` is what the docs show clients. */
const BUF_BIN = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
const execFileAsync = promisify(execFile);

/** The records of a Consume stream, `partition:offset` → value. */
const keyOf = (r: { partition: number; offset: string | number }) => `${r.partition}:${r.offset}`;

describe("gateway: routing", { timeout: 60_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let gateway: GatewayServiceClient;
  const topic = uniqueTopic("routed");
  let leaders: Map<number, number>;
  const leaderOf = (p: number) => clients.broker(cluster.broker(leaders.get(p)!).address);
  const admin = () => clients.admin(cluster.controllers[0]!);
  /** A new topic whose partitions all serve. */
  const newTopic = async (prefix: string) => {
    const name = uniqueTopic(prefix);
    await createTopic(admin(), name, PARTITIONS);
    return { name, leaders: await waitForLeaders(cluster, clients, name, PARTITIONS) };
  };

  before(async () => {
    cluster = await startTestCluster({ gateways: 1 });
    gateway = createClient(gatewayService.Client, cluster.gateways[0]!);
    await createTopic(admin(), topic, PARTITIONS);
    leaders = await waitForLeaders(cluster, clients, topic, PARTITIONS);
  });
  after(async () => {
    gateway?.close();
    clients.close();
    await cluster?.stop();
  });

  test("Metadata through the gateway equals a broker's", async () => {
    const broker = clients.broker(cluster.bootstrap[1]!);
    for (const topics of [[topic, "no-such-topic", "not a name"], []]) {
      // Both answer from their own etcd mirror: equal once both saw the same revision.
      await waitFor(
        async () => {
          const [viaGateway, direct] = await Promise.all([
            unary(gateway, "Metadata", { topics }, { deadlineMs: CALL_DEADLINE_MS }),
            unary(broker, "Metadata", { topics }, { deadlineMs: CALL_DEADLINE_MS }),
          ]);
          assert.deepEqual(viaGateway, direct);
          return true;
        },
        { timeoutMs: METADATA_LAG_TIMEOUT_MS, message: `equal Metadata of [${topics}]` },
      );
    }
  });

  test("AdminService through the gateway reaches the active controller", async () => {
    const viaGateway = createClient(adminService.Client, cluster.gateways[0]!);
    try {
      const name = `${topic}-admin`;
      const created = await unary(viaGateway, "CreateTopics", {
        topics: [{ name, numPartitions: 2, replicationFactor: 1 }],
      });
      assert.equal(created.topics[0]!.errorCode, 0, created.topics[0]!.errorMessage);
      const again = await unary(viaGateway, "CreateTopics", {
        topics: [{ name, numPartitions: 2 }],
      });
      assert.equal(again.topics[0]!.errorCode, ErrorCode.TOPIC_ALREADY_EXISTS);
      // The controller itself saw the creation: the same topic id there.
      const direct = await unary(admin(), "DescribeTopics", { names: [name] });
      assert.equal(direct.topics[0]!.topicId, created.topics[0]!.topicId);
      const cluster1 = await unary(viaGateway, "DescribeCluster", {});
      assert.equal(cluster1.brokers.length, cluster.bootstrap.length);
      const deleted = await unary(viaGateway, "DeleteTopics", { names: [name] });
      assert.equal(deleted.topics[0]!.errorCode, 0, deleted.topics[0]!.errorMessage);
    } finally {
      viaGateway.close();
    }
  });

  test("server reflection describes the gateway well enough for buf curl", async () => {
    const { stdout } = await execFileAsync(
      BUF_BIN,
      [
        "curl",
        "--protocol=grpc",
        "--http2-prior-knowledge",
        "--reflect",
        `http://${cluster.gateways[0]}/samsa.v1.GatewayService/Metadata`,
        "-d",
        JSON.stringify({ topics: [topic] }),
      ],
      { timeout: CALL_DEADLINE_MS },
    );
    const answer = JSON.parse(stdout) as { topics: { name: string; partitions: unknown[] }[] };
    assert.equal(answer.topics[0]!.name, topic);
    assert.equal(answer.topics[0]!.partitions.length, PARTITIONS);
  });

  test("Produce, Fetch, ListOffsets and Subscribe through the gateway get the leaders' answers", async () => {
    const records = (p: number) =>
      [0, 1, 2].map((i) => ({
        key: Buffer.from(`k${p}`),
        value: Buffer.from(`v${p}-${i}`),
        timestamp: T0 + 10 * i,
      }));
    // Request order 2, 0, 1: answers come back in request order, not by partition.
    const order = [2, 0, 1];
    const produced = await unary(
      gateway,
      "Produce",
      {
        partitions: order.map((p) => ({ topic, partition: p, records: buildBatch(records(p)) })),
        acks: ACKS_LEADER,
      },
      { deadlineMs: CALL_DEADLINE_MS },
    );
    assert.deepEqual(
      produced.partitions.map((r) => [r.partition, r.errorCode, r.baseOffset]),
      order.map((p) => [p, 0, "0"]),
    );
    for (const p of order) {
      const stored = await fetchAll(leaderOf(p), topic, p);
      assert.deepEqual(
        stored.map((r) => [r.offset, r.key, r.value]),
        records(p).map((r, i) => [i, r.key.toString(), r.value.toString()]),
        `partition ${p}'s leader holds its batch`,
      );
    }

    const fetchOf = (ps: number[], offset: number): FetchRequest => ({
      partitions: ps.map((p) => ({
        topic,
        partition: p,
        fetchOffset: String(offset),
        currentLeaderEpoch: -1,
      })),
      maxWaitMs: 0,
      minBytes: 0,
      maxBytes: FETCH_MAX_BYTES,
    });
    for (const offset of [0, 2, 3]) {
      const viaGateway = await unary(gateway, "Fetch", fetchOf(order, offset));
      const direct = await Promise.all(
        order.map(
          async (p) => (await unary(leaderOf(p), "Fetch", fetchOf([p], offset))).partitions[0],
        ),
      );
      assert.deepEqual(viaGateway.partitions, direct, `Fetch at offset ${offset}`);
    }

    for (const ts of [-2, -1, 0, T0 + 10, T0 + 15, T0 + 1_000]) {
      const listOf = (ps: number[]) => ({
        partitions: ps.map((p) => ({ topic, partition: p, timestamp: String(ts) })),
      });
      const viaGateway = await unary(gateway, "ListOffsets", listOf(order));
      const direct = await Promise.all(
        order.map(
          async (p) => (await unary(leaderOf(p), "ListOffsets", listOf([p]))).partitions[0],
        ),
      );
      assert.deepEqual(viaGateway.partitions, direct, `ListOffsets at ${ts}`);
    }

    const firstMessage = async (client: typeof gateway | ReturnType<typeof leaderOf>) => {
      const request = { topic, partition: 1, offset: "1" };
      for await (const m of stream(client, "Subscribe", request, { deadlineMs: CALL_DEADLINE_MS }))
        return m;
      assert.fail("the stream ended without a message");
    };
    assert.deepEqual(await firstMessage(gateway), await firstMessage(leaderOf(1)));
  });

  test("a Fetch long poll through the gateway ends as soon as any partition's leader has data", async () => {
    const latest = await unary(gateway, "ListOffsets", {
      partitions: [0, 1, 2].map((p) => ({ topic, partition: p, timestamp: "-1" })),
    });
    const polling = unary(
      gateway,
      "Fetch",
      {
        partitions: latest.partitions.map((r) => ({
          topic,
          partition: r.partition,
          fetchOffset: r.offset,
          currentLeaderEpoch: -1,
        })),
        maxWaitMs: FETCH_WAIT_MS_MAX,
        minBytes: 1,
        maxBytes: FETCH_MAX_BYTES,
      },
      { deadlineMs: FETCH_WAIT_MS_MAX + CALL_DEADLINE_MS },
    );
    const answered = settledFlag(polling);
    // The stimulus, not a wait for a condition: the fetch must be parked when the data comes.
    await delay(300);
    assert.equal(answered(), false, "with nothing to read the long poll has not answered");
    const published = await unary(gateway, "Publish", {
      topic,
      records: [{ value: Buffer.from("wake-up"), partition: 2 }],
    });
    assert.equal(published.results[0]!.errorCode, 0);
    await waitFor(answered, {
      timeoutMs: LONG_POLL_WAKE_TIMEOUT_MS,
      message: "the data to wake the long poll before its max wait",
    });
    const answer = await polling;
    const woken = answer.partitions.find((p) => p.partition === 2)!;
    const from = Number(published.results[0]!.offset);
    assert.deepEqual(
      decodeRecords(woken.records as Buffer, from).map((r) => r.value),
      ["wake-up"],
    );
    for (const p of answer.partitions) assert.equal(p.errorCode, 0, `partition ${p.partition}`);
  });

  test("Publish puts each key in murmur2(key) % n, and Consume streams the records back decoded", async () => {
    const { name } = await newTopic("published");
    const keys = Array.from({ length: 30 }, (_, i) => `user-${i}`);
    const records: PublishRecord[] = [
      ...keys.map((key, i) => ({
        key: Buffer.from(key),
        value: Buffer.from(`value-${i}`),
        headers: i % 5 === 0 ? [{ key: "trace", value: Buffer.from(`t${i}`) }] : [],
        timestamp: String(T0 + i),
      })),
      ...Array.from({ length: 6 }, (_, i) => ({ value: Buffer.from(`free-${i}`) })),
      { key: Buffer.from("user-0"), value: Buffer.from("pinned"), partition: 2 },
    ];
    const res = await unary(
      gateway,
      "Publish",
      { topic: name, records },
      { deadlineMs: CALL_DEADLINE_MS },
    );
    assert.equal(res.results.length, records.length, "one result per record");
    for (const r of res.results) assert.equal(r.errorCode, 0, r.errorMessage);
    for (const [i, key] of keys.entries()) {
      const want = partitionForKey(Buffer.from(key), PARTITIONS);
      assert.equal(res.results[i]!.partition, want, `${key} goes to murmur2 % ${PARTITIONS}`);
    }
    // Records without a key rotate over the partitions: six of them, two on each.
    const free = res.results.slice(keys.length, keys.length + 6).map((r) => r.partition);
    assert.deepEqual(
      [0, 1, 2].map((p) => free.filter((x) => x === p).length),
      [2, 2, 2],
      `round robin (${free})`,
    );
    assert.equal(res.results.at(-1)!.partition, 2, "an explicit partition wins over the key");
    // Each partition's records got consecutive offsets from 0, in request order.
    for (let p = 0; p < PARTITIONS; p++) {
      const offsets = res.results.filter((r) => r.partition === p).map((r) => Number(r.offset));
      assert.deepEqual(offsets, [...offsets.keys()], `partition ${p} offsets`);
    }

    const got: ConsumeResponse__Output[] = [];
    const request = {
      topic: name,
      special: SpecialOffset.SPECIAL_OFFSET_EARLIEST,
      maxMessages: records.length,
    };
    for await (const m of stream(gateway, "Consume", request, { deadlineMs: CALL_DEADLINE_MS }))
      got.push(m);
    assert.equal(got.length, records.length, "the stream ends after max_messages records");
    const byPosition = new Map(got.map((m) => [keyOf(m), m]));
    for (const [i, sent] of records.entries()) {
      const m = byPosition.get(keyOf(res.results[i]!));
      assert.ok(m, `record ${i} was consumed`);
      assert.deepEqual(m.key, sent.key, `record ${i} key`);
      assert.deepEqual(m.value, sent.value, `record ${i} value`);
      assert.deepEqual(m.headers, sent.headers ?? [], `record ${i} headers`);
      if (sent.timestamp !== undefined) assert.equal(m.timestamp, sent.timestamp);
    }
    for (let p = 0; p < PARTITIONS; p++) {
      const offsets = got.filter((m) => m.partition === p).map((m) => Number(m.offset));
      assert.deepEqual(offsets, [...offsets.keys()], `partition ${p} streamed in order`);
    }

    const one: ConsumeResponse__Output[] = [];
    const fromOffset = { topic: name, partition: 1, offset: "1", maxMessages: 2 };
    for await (const m of stream(gateway, "Consume", fromOffset, { deadlineMs: CALL_DEADLINE_MS }))
      one.push(m);
    assert.deepEqual(
      one.map((m) => [m.partition, m.offset]),
      [
        [1, "1"],
        [1, "2"],
      ],
    );
  });

  test("Consume with max_records_per_message sends each partition's records several to a message, max_messages counting records", async () => {
    const { name } = await newTopic("grouped");
    // Three Publish calls: each partition gets three batches, so messages cross batch borders.
    const sent = new Map<number, string[]>([0, 1, 2].map((p) => [p, []]));
    for (let call = 0; call < 3; call++) {
      const records: PublishRecord[] = Array.from({ length: 30 }, (_, i) => ({
        value: Buffer.from(`c${call}-r${i}`),
        partition: i % PARTITIONS,
        ...(i === 3
          ? { key: Buffer.from("k"), headers: [{ key: "h", value: Buffer.from("v") }] }
          : {}),
      }));
      const res = await unary(
        gateway,
        "Publish",
        { topic: name, records },
        { deadlineMs: CALL_DEADLINE_MS },
      );
      for (const r of res.results) assert.equal(r.errorCode, 0, r.errorMessage);
      for (const r of records) sent.get(r.partition!)!.push(r.value!.toString());
    }
    const PER_MESSAGE = 7;
    const LIMIT = 80; // of the 90 records: the stream ends inside a message's worth
    const request = {
      topic: name,
      special: SpecialOffset.SPECIAL_OFFSET_EARLIEST,
      maxMessages: LIMIT,
      maxRecordsPerMessage: PER_MESSAGE,
    };
    const got = new Map<number, { offset: number; value: string; key?: string; headers: number }[]>(
      [0, 1, 2].map((p) => [p, []]),
    );
    let messages = 0;
    for await (const m of stream(gateway, "Consume", request, { deadlineMs: CALL_DEADLINE_MS })) {
      messages++;
      assert.equal(m.topic, name);
      assert.ok(
        m.records.length >= 1 && m.records.length <= PER_MESSAGE,
        `${m.records.length} records in a message`,
      );
      assert.equal(m.value, undefined, "the single-record value is unset");
      for (const r of m.records)
        got.get(m.partition)!.push({
          offset: Number(r.offset),
          value: r.value!.toString(),
          key: r.key?.toString(),
          headers: r.headers.length,
        });
    }
    const total = [...got.values()].reduce((n, rs) => n + rs.length, 0);
    assert.equal(total, LIMIT, "the stream ends after max_messages records");
    assert.ok(
      messages >= Math.ceil(LIMIT / PER_MESSAGE) && messages < LIMIT,
      `${messages} messages`,
    );
    for (const [p, rs] of got) {
      assert.deepEqual(
        rs.map((r) => r.offset),
        [...rs.keys()],
        `partition ${p}: offsets in order from 0`,
      );
      assert.deepEqual(
        rs.map((r) => r.value),
        sent.get(p)!.slice(0, rs.length),
        `partition ${p}: values`,
      );
    }
    const keyed = got.get(0)!.find((r) => r.key !== undefined);
    assert.deepEqual(keyed && { key: keyed.key, headers: keyed.headers }, { key: "k", headers: 1 });

    const tooMany = { ...request, maxRecordsPerMessage: CONSUME_RECORDS_PER_MESSAGE_MAX + 1 };
    await assert.rejects(
      async () => {
        for await (const _ of stream(gateway, "Consume", tooMany, {
          deadlineMs: CALL_DEADLINE_MS,
        })) {
          // nothing is sent
        }
      },
      (err) => isSamsaError(err, ErrorCode.INVALID_REQUEST),
    );
  });

  /** The gateway's `samsa_gateway_retries_total` of `method`, summed over the codes. */
  const retriesOf = async (method: string) => {
    const { metricsPort } = cluster.gatewayProcesses[0]!;
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return text
      .split("\n")
      .filter((l) => l.startsWith("samsa_gateway_retries_total{") && l.includes(`"${method}"`))
      .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
  };

  /**
   * Publishes one keyed record after another through the gateway with an open Consume stream
   * of every partition, takes partition 0's leader down with `down` and starts it again, and
   * checks what the client saw.
   */
  const restartUnderLoad = async (down: (victim: ProcessHandle) => Promise<void>) => {
    const { name, leaders: initial } = await newTopic("restart");
    const retriesBefore = {
      publish: await retriesOf("Publish"),
      consume: await retriesOf("Consume"),
    };
    const victim = cluster.broker(initial.get(0)!);
    const consumed: ConsumeResponse__Output[] = [];
    const stopConsuming = new AbortController();
    let consumeError: unknown;
    const consuming = (async () => {
      const request = { topic: name, special: SpecialOffset.SPECIAL_OFFSET_EARLIEST };
      for await (const m of stream(gateway, "Consume", request, { signal: stopConsuming.signal }))
        consumed.push(m);
    })().catch((err: unknown) => {
      consumeError = err;
    });
    const acked: { partition: number; offset: number; value: string }[] = [];
    let publishing = true;
    let publishError: unknown;
    const producing = (async () => {
      for (let seq = 0; publishing; seq++) {
        const value = `m-${seq}`;
        const res = await unary(
          gateway,
          "Publish",
          { topic: name, records: [{ key: Buffer.from(value), value: Buffer.from(value) }] },
          { deadlineMs: PUBLISH_DEADLINE_MS },
        );
        const r = res.results[0]!;
        assert.equal(r.errorCode, 0, `publish ${value}: ${r.errorMessage}`);
        acked.push({ partition: r.partition, offset: Number(r.offset), value });
        await delay(PUBLISH_INTERVAL_MS);
      }
    })().catch((err: unknown) => {
      publishError = err;
    });
    const ackedTo0 = () => acked.filter((a) => a.partition === 0).length;
    try {
      await waitFor(() => ackedTo0() >= RECORDS_AROUND_RESTART || publishError, {
        timeoutMs: RESTART_PROGRESS_TIMEOUT_MS,
        message: "publishes to partition 0 before the restart",
      });
      const before = ackedTo0();
      await down(victim);
      await victim.restart();
      await waitFor(() => ackedTo0() >= before + RECORDS_AROUND_RESTART || publishError, {
        timeoutMs: RESTART_PROGRESS_TIMEOUT_MS,
        message: "publishes to partition 0 after the restart",
      });
    } finally {
      publishing = false;
      await producing;
    }
    assert.equal(publishError, undefined, "every Publish succeeded within its deadline");
    assert.equal(
      (await waitForLeaders(cluster, clients, name, PARTITIONS)).get(0),
      Number(victim.id),
      "the restarted broker leads partition 0 again",
    );

    // The stream catches up with everything in the logs, then is cancelled by the client.
    const ends = await unary(gateway, "ListOffsets", {
      partitions: [0, 1, 2].map((p) => ({ topic: name, partition: p, timestamp: "-1" })),
    });
    const count = (p: number) => consumed.filter((m) => m.partition === p).length;
    await waitFor(
      () => consumeError ?? ends.partitions.every((e) => count(e.partition) >= Number(e.offset)),
      { timeoutMs: RESTART_PROGRESS_TIMEOUT_MS, message: "the stream to reach the log ends" },
    );
    stopConsuming.abort();
    await consuming;
    assert.equal(consumeError, undefined, "the Consume stream never failed");

    // Exactly once, in order, per partition: what the stream delivered is the log itself.
    for (let p = 0; p < PARTITIONS; p++) {
      const streamed = consumed.filter((m) => m.partition === p);
      const log = await fetchAll(clients.broker(cluster.broker(initial.get(p)!).address), name, p);
      assert.deepEqual(
        streamed.map((m) => [Number(m.offset), m.value?.toString()]),
        log.map((r) => [r.offset, r.value]),
        `partition ${p}: the stream is the log, once and in order`,
      );
    }
    const streamed = new Map(consumed.map((m) => [keyOf(m), m.value?.toString()]));
    for (const a of acked) assert.equal(streamed.get(keyOf(a)), a.value, `acked ${keyOf(a)}`);
    // Neither saw a failure because the gateway retried them through the restart.
    assert.ok((await retriesOf("Publish")) > retriesBefore.publish, "Publish was retried");
    assert.ok((await retriesOf("Consume")) > retriesBefore.consume, "Consume was resumed");
  };

  test("a leader's broker stopped and restarted under load: Publish and Consume see no failure", async () => {
    await restartUnderLoad((victim) => victim.stop());
  });

  test("a leader's broker crashing and restarting under load: Publish and Consume see no failure", async () => {
    await restartUnderLoad((victim) => victim.kill("SIGKILL"));
    const { metricsPort } = cluster.gatewayProcesses[0]!;
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(text, /samsa_gateway_routed_bytes_total\{[^}]*direction="out"/);
    assert.match(text, /samsa_gateway_routed_bytes_total\{[^}]*direction="in"/);
  });
});

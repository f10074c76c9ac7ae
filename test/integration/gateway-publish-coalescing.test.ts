/**
 * The gateway coalesces concurrent Publish calls (services/gateway/publish-accumulator.ts), in a
 * real local cluster (etcd, a controller, 3 brokers and a gateway as processes), from a plain
 * grpc-js client: many concurrent one-record Publishes become far fewer appends (the gateway's
 * own metric says how many), each caller gets its own offset, no two the same, and reading the
 * partitions back finds each caller's record at the offset it was given; one caller's record
 * that the partition refuses (larger than the topic's max.message.bytes) fails that caller
 * alone, while the callers coalesced with it are written.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { Acks } from "../../services/shared/generated/samsa/v1/Acks.js";
import type { GatewayServiceClient } from "../../services/shared/generated/samsa/v1/GatewayService.js";
import type { PublishResponse__Output } from "../../services/shared/generated/samsa/v1/PublishResponse.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import { gatewayService } from "../../services/shared/grpc/proto.js";
import { GATEWAY_PUBLISH_APPENDS_METRIC } from "../../services/gateway/gateway-metrics.js";
import {
  CALL_DEADLINE_MS,
  Clients,
  createTopics,
  fetchAll,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

const PARTITIONS = 3;
/** Concurrent one-record Publish calls. */
const CALLS = 1000;
/** The topic's max.message.bytes in the refusal test, and a record well past it. */
const SMALL_MAX_MESSAGE_BYTES = 2000;
const TOO_LARGE_VALUE_BYTES = 5000;
/** Good callers published together with the too-large one. */
const GOOD_CALLERS = 60;

describe("gateway: Publish coalescing", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let gateway: GatewayServiceClient;
  const admin = () => clients.admin(cluster.controllers[0]!);

  /** `samsa_gateway_publish_appends_total` of the gateway now. */
  const appendsSoFar = async (): Promise<number> => {
    const g = cluster.gatewayProcesses[0]!;
    const text = await (await fetch(`http://127.0.0.1:${g.metricsPort}/metrics`)).text();
    // The line carries the process's default labels: `name{service=…,id=…} value`.
    const line = text
      .split("\n")
      .find(
        (l) =>
          l.startsWith(`${GATEWAY_PUBLISH_APPENDS_METRIC}{`) ||
          l.startsWith(`${GATEWAY_PUBLISH_APPENDS_METRIC} `),
      );
    assert.ok(line !== undefined, `${GATEWAY_PUBLISH_APPENDS_METRIC} is exported`);
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  };

  const publishOne = (topic: string, partition: number, value: Buffer) =>
    unary(
      gateway,
      "Publish",
      { topic, acks: Acks.ACKS_ALL, records: [{ partition, value }] },
      { deadlineMs: CALL_DEADLINE_MS },
    );

  before(async () => {
    cluster = await startTestCluster({ brokers: 3, gateways: 1 });
    gateway = createClient(gatewayService.Client, cluster.gateways[0]!);
  });
  after(async () => {
    gateway?.close();
    clients.close();
    await cluster?.stop();
  });

  test("concurrent calls share appends; each gets its own offset, where its record is", async () => {
    const topic = uniqueTopic("coalesce");
    const [created] = await createTopics(admin(), [
      { name: topic, numPartitions: PARTITIONS, replicationFactor: 3 },
    ]);
    assert.equal(created!.errorCode, 0, created!.errorMessage);
    const leaders = await waitForLeaders(cluster, clients, topic, PARTITIONS);
    const before = await appendsSoFar();
    const values = Array.from({ length: CALLS }, (_, i) => Buffer.from(`record-${i}`));
    const answers: PublishResponse__Output[] = await Promise.all(
      values.map((v, i) => publishOne(topic, i % PARTITIONS, v)),
    );
    const appends = (await appendsSoFar()) - before;
    assert.ok(
      appends < CALLS / 4,
      `${CALLS} concurrent calls became ${appends} appends (coalesced at least 4 to 1)`,
    );
    const byPartition = new Map<number, Map<number, string>>();
    for (const [i, a] of answers.entries()) {
      const r = a.results[0]!;
      assert.equal(r.errorCode, ErrorCode.NONE, r.errorMessage);
      assert.equal(r.partition, i % PARTITIONS);
      const offsets = byPartition.get(r.partition) ?? new Map<number, string>();
      assert.ok(!offsets.has(Number(r.offset)), `offset ${r.offset} given once`);
      offsets.set(Number(r.offset), values[i]!.toString());
      byPartition.set(r.partition, offsets);
    }
    for (let p = 0; p < PARTITIONS; p++) {
      const offsets = byPartition.get(p)!;
      const leader = clients.broker(cluster.broker(leaders.get(p)!).address);
      const stored = await fetchAll(leader, topic, p, 0);
      assert.equal(stored.length, offsets.size, `partition ${p} holds every record once`);
      for (const rec of stored) {
        assert.equal(
          rec.value,
          offsets.get(rec.offset),
          `partition ${p} offset ${rec.offset} holds the record its caller was given`,
        );
      }
    }
  });

  test("a record the partition refuses fails its caller only", async () => {
    const topic = uniqueTopic("coalesce-refuse");
    const [created] = await createTopics(admin(), [
      {
        name: topic,
        numPartitions: 1,
        replicationFactor: 1,
        configs: { "max.message.bytes": String(SMALL_MAX_MESSAGE_BYTES) },
      },
    ]);
    assert.equal(created!.errorCode, 0, created!.errorMessage);
    const leaders = await waitForLeaders(cluster, clients, topic, 1);
    // A first call keeps the partition busy, so the rest queue up and go as one append.
    const calls: Promise<PublishResponse__Output>[] = [publishOne(topic, 0, Buffer.from("first"))];
    for (let i = 0; i < GOOD_CALLERS; i++) {
      if (i === GOOD_CALLERS / 2)
        calls.push(publishOne(topic, 0, Buffer.alloc(TOO_LARGE_VALUE_BYTES, 1)));
      calls.push(publishOne(topic, 0, Buffer.from(`good-${i}`)));
    }
    const answers = await Promise.all(calls);
    const bad = answers[GOOD_CALLERS / 2 + 1]!.results[0]!;
    assert.equal(bad.errorCode, ErrorCode.MESSAGE_TOO_LARGE, bad.errorMessage);
    const good = answers.filter((_, i) => i !== GOOD_CALLERS / 2 + 1);
    for (const a of good)
      assert.equal(a.results[0]!.errorCode, ErrorCode.NONE, a.results[0]!.errorMessage);
    const leader = clients.broker(cluster.broker(leaders.get(0)!).address);
    const stored = await fetchAll(leader, topic, 0, 0);
    assert.equal(stored.length, good.length, "every good record is written once, the bad one not");
    const expected = new Map(good.map((a, k) => [Number(a.results[0]!.offset), k]));
    for (const rec of stored)
      assert.ok(expected.has(rec.offset), `offset ${rec.offset} was answered`);
  });
});

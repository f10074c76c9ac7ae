/**
 * The gateway as a Kafka-style bootstrap: the TypeScript client and the `samsa` CLI given only
 * the gateway's address work unchanged (the gateway serves BrokerService, and its Metadata names
 * every broker at the gateway's own address, as the client dialled it). A real cluster: etcd, one
 * controller, three brokers and one gateway as processes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { AdminClient, Cluster, Consumer, Producer } from "../../services/client/index.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { type CliRun, runCli } from "../support/cli.js";
import { startTestCluster } from "./cluster-helpers.js";

const PARTITIONS = 3;
const RECORDS = 300;
const KEYS = 11;
/** Longest the consumer may take to read every record back, ms. */
const CONSUME_TIMEOUT_MS = 20_000;
/** Longest one CLI run may take, ms. */
const CLI_RUN_TIMEOUT_MS = 30_000;

/** Runs the CLI with only the gateway as bootstrap and controller. */
function samsa(gateway: string, args: readonly string[], input = ""): Promise<CliRun> {
  return runCli(args, {
    bootstrap: gateway,
    controller: gateway,
    timeoutMs: CLI_RUN_TIMEOUT_MS,
    input,
  });
}

describe("the gateway as the client's and the CLI's bootstrap", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  let gateway: string;

  before(async () => {
    cluster = await startTestCluster({ controllers: 1, brokers: 3, gateways: 1 });
    gateway = cluster.gateways[0]!;
  });
  after(async () => {
    await cluster?.stop();
  });

  test("client: metadata names the real brokers at the gateway; every record read back once at its offset", async () => {
    const topic = `gw-boot-${randomBytes(4).toString("hex")}`;
    const admin = new AdminClient({ controllers: gateway });
    const clusterClient = new Cluster({ bootstrapServers: gateway });
    const producer = new Producer({ cluster: clusterClient });
    const consumer = new Consumer({ cluster: clusterClient });
    try {
      const [created] = await admin.createTopics([
        { name: topic, numPartitions: PARTITIONS, replicationFactor: 1 },
      ]);
      assert.equal(created?.error, null, "topic created through the gateway's AdminService");

      const meta = await clusterClient.topic(topic);
      assert.equal(meta.partitions.length, PARTITIONS);
      const brokerIds = cluster.brokerProcesses.map((b) => Number(b.id)).sort();
      assert.deepEqual(
        clusterClient.brokers.map((b) => b.id).sort(),
        brokerIds,
        "the real broker ids",
      );
      for (const b of clusterClient.brokers) {
        assert.equal(`${b.host}:${b.port}`, gateway, `broker ${b.id} is reached at the gateway`);
      }

      const records = Array.from({ length: RECORDS }, (_, i) => ({
        key: `k${i % KEYS}`,
        value: `v${i}`,
      }));
      const sent = await producer.send(topic, records, { acks: "all" });
      assert.equal(sent.length, RECORDS);
      const sentAt = new Map(sent.map((m, i) => [`${m.partition}/${m.offset}`, i]));
      assert.equal(sentAt.size, RECORDS, "every record got its own partition and offset");

      const stop = new AbortController();
      const timer = setTimeout(() => stop.abort(), CONSUME_TIMEOUT_MS);
      const seen = new Map<string, number>();
      const lastOffset = new Map<number, number>();
      try {
        for await (const r of consumer.consume(topic, { from: "earliest", signal: stop.signal })) {
          const where = `${r.partition}/${r.offset}`;
          assert.ok(!seen.has(where), `${where} read once`);
          const i = sentAt.get(where);
          assert.ok(i !== undefined, `${where} is an acknowledged offset`);
          assert.equal(r.value?.toString(), `v${i}`, `${where} holds the record sent there`);
          assert.ok(r.offset > (lastOffset.get(r.partition) ?? -1), `${where} in order`);
          lastOffset.set(r.partition, r.offset);
          seen.set(where, i);
          if (seen.size === RECORDS) break;
        }
      } finally {
        clearTimeout(timer);
      }
      assert.equal(seen.size, RECORDS, "every acknowledged record read back");
    } finally {
      await producer.close();
      clusterClient.close();
      admin.close();
    }
  });

  test("CLI: topics create, produce and consume with only the gateway's address", async () => {
    const topic = `gw-cli-${randomBytes(4).toString("hex")}`;
    const created = await samsa(gateway, [
      "topics",
      "create",
      "--topic",
      topic,
      "--partitions",
      String(PARTITIONS),
      "--replication-factor",
      "1",
    ]);
    assert.equal(created.code, 0, `create: ${created.stderr}`);
    const count = 100;
    const input = Array.from({ length: count }, (_, i) => `v${i}\n`).join("");
    const produced = await samsa(gateway, ["produce", "--topic", topic], input);
    assert.equal(produced.code, 0, `produce: ${produced.stderr}`);
    const consumed = await samsa(gateway, [
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--max-messages",
      String(count),
      "--timeout-ms",
      "15000",
    ]);
    assert.equal(consumed.code, 0, `consume: ${consumed.stderr}`);
    const lines = consumed.stdout.split("\n").filter((l) => l !== "");
    assert.deepEqual(
      [...lines].sort(),
      Array.from({ length: count }, (_, i) => `v${i}`).sort(),
      "every produced line exactly once",
    );
  });
});

/**
 * A broker with two named listeners (in-process, real etcd, ports 0): it serves on both, registers
 * both addresses in etcd, and its Metadata answer names each broker by the listener the request
 * came in on — a client on one network is told addresses of that network.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Broker } from "../../services/broker/broker.js";
import { loadBrokerConfig } from "../../services/shared/config/services.js";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import {
  decodeBrokerRegistration,
  EtcdKeys,
  toEtcdKeyValue,
} from "../../services/shared/etcd/keys.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import { brokerService } from "../../services/shared/grpc/proto.js";
import { silentLogger } from "../../services/shared/logger.js";
import { type EtcdProcess, startEtcd } from "../support/etcd.js";

const CLUSTER = "listeners-test";

describe("broker with named listeners", () => {
  let etcd: EtcdProcess;
  let broker: Broker;
  let logDir: string;

  before(async () => {
    etcd = await startEtcd();
    logDir = await mkdtemp(join(tmpdir(), "samsa-listeners-"));
    // INSIDE advertises 127.0.0.1, OUTSIDE "localhost": two names of one machine stand for two
    // networks; port 0 advertises the port each bound.
    const config = loadBrokerConfig(
      [
        "--broker.id=7",
        "--listeners=INSIDE://127.0.0.1:0,OUTSIDE://127.0.0.1:0",
        "--advertised.listeners=INSIDE://127.0.0.1:0,OUTSIDE://localhost:0",
        "--inter.broker.listener.name=INSIDE",
        `--log.dirs=${logDir}`,
        "--metrics.port=0",
      ],
      { SAMSA_ETCD_ENDPOINTS: etcd.endpoint, SAMSA_CLUSTER_ID: CLUSTER },
    );
    broker = new Broker(config, { logger: silentLogger() });
    await broker.start();
  });

  after(async () => {
    await broker?.stop();
    await etcd?.stop();
    if (logDir) await rm(logDir, { recursive: true, force: true });
  });

  it("registers the inter-broker address and every listener's", async () => {
    const client = createEtcdClient({ endpoints: [etcd.endpoint] });
    try {
      const kv = (await client.get(EtcdKeys.forCluster(CLUSTER).broker(7)).exec()).kvs[0];
      assert.ok(kv, "brokers/7 registered");
      const registration = decodeBrokerRegistration(toEtcdKeyValue(kv));
      const inside = broker.listenerPort("INSIDE");
      const outside = broker.listenerPort("OUTSIDE");
      assert.ok(inside > 0 && outside > 0 && inside !== outside, "two ports bound");
      assert.equal(broker.port, inside);
      assert.deepEqual(
        { host: registration.host, port: registration.port },
        { host: "127.0.0.1", port: inside },
      );
      assert.deepEqual(registration.listeners, {
        INSIDE: { host: "127.0.0.1", port: inside },
        OUTSIDE: { host: "localhost", port: outside },
      });
    } finally {
      client.close();
    }
  });

  it("Metadata names the broker on the listener the request came in on", async () => {
    for (const [name, host] of [
      ["INSIDE", "127.0.0.1"],
      ["OUTSIDE", "localhost"],
    ] as const) {
      const port = broker.listenerPort(name);
      const client = createClient(brokerService.Client, `127.0.0.1:${port}`);
      try {
        const answer = await unary(client, "Metadata", { topics: [] }, { deadlineMs: 10_000 });
        assert.deepEqual(
          answer.brokers.map((b) => `${b.id}@${b.host}:${b.port}`),
          [`7@${host}:${port}`],
          `through ${name}`,
        );
      } finally {
        client.close();
      }
    }
  });
});

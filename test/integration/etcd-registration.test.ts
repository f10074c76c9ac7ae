/**
 * Broker registration against a real etcd: the key lives with its lease, disappears when the
 * process dies (SIGKILL: after the TTL) or stops (at once), a live duplicate id is refused, and
 * a lost lease leads to a re-registration with a larger epoch.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import {
  decodeBrokerRegistration,
  EtcdKeys,
  toEtcdKeyValue,
} from "../../services/shared/etcd/keys.js";
import { BrokerRegistrar } from "../../services/shared/etcd/registration.js";
import { type CapturedLine, memoryLogger } from "../../services/shared/logger.js";
import { type EtcdProcess, spawnEtcdMember, startEtcd } from "../support/etcd.js";
import { waitFor } from "../support/wait-for.js";

const ttlSeconds = 2;
/** etcd checks lease expiry every 500 ms; leave room for a slow machine. */
const expiryMarginMs = 3_000;
/** What a registrar logs while it waits for another lease's key to go. */
const waitingMessage = "broker.id held by another lease, waiting for it to expire";

describe("broker registration (real etcd)", () => {
  let etcd: EtcdProcess;
  let client: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    client = createEtcdClient({ endpoints: [etcd.endpoint] });
  });
  after(async () => {
    client?.close();
    await etcd?.stop();
  });

  const freshKeys = () => EtcdKeys.forCluster(`t-${randomUUID().slice(0, 8)}`);
  const endpoint = (id: number) => ({ id, host: "127.0.0.1", port: 19092, rack: "r1" });
  const readKey = async (key: string) => (await client.get(key).exec()).kvs[0];

  it("puts brokers/<id> with brokerEpoch = the create revision; SIGKILL removes it after the TTL", async () => {
    const keys = freshKeys();
    const child = spawnEtcdMember("register", etcd.endpoint, keys.prefix, 3, ttlSeconds);
    try {
      const line = await child.firstLine;
      const kv = await readKey(keys.broker(3));
      assert.ok(kv, "registered key exists");
      const registration = decodeBrokerRegistration(toEtcdKeyValue(kv));
      assert.equal(registration.brokerEpoch, line.brokerEpoch);
      assert.equal(registration.brokerEpoch, Number(kv.create_revision));
      assert.notEqual(kv.lease, "0");

      await child.kill();
      // Not gone at once: the lease outlives the process by up to its TTL.
      assert.ok(await readKey(keys.broker(3)), "the key outlives the process for a while");
      await waitFor(async () => (await readKey(keys.broker(3))) === undefined, {
        timeoutMs: ttlSeconds * 1000 + expiryMarginMs,
        message: "brokers/3 to expire",
      });
    } finally {
      await child.kill();
    }
  });

  it("stop() revokes the lease: the key is gone at once", async () => {
    const keys = freshKeys();
    const registrar = new BrokerRegistrar({ client, keys, endpoint: endpoint(1) });
    const registration = await registrar.start();
    assert.equal(registration.id, 1);
    assert.equal(registration.rack, "r1");
    assert.ok(await readKey(keys.broker(1)));
    await registrar.stop();
    assert.equal(await readKey(keys.broker(1)), undefined);
    assert.equal(registrar.current, undefined);
  });

  it("refuses a broker.id held by a live broker", async () => {
    const keys = freshKeys();
    const first = new BrokerRegistrar({ client, keys, endpoint: endpoint(2), ttlSeconds });
    const held = await first.start();
    try {
      const now = new BrokerRegistrar({
        client,
        keys,
        endpoint: endpoint(2),
        ttlSeconds,
        conflictWaitMs: 0,
      });
      await assert.rejects(now.start(), (err) => {
        assert.ok(isSamsaError(err, ErrorCode.INVALID_CONFIG));
        assert.equal(err.message, "broker.id 2 is already registered");
        return true;
      });
      // By default it waits out the holder's TTL first (the next test shows a crashed holder's
      // key expiring within that wait): a live holder keeps its key, so it is refused after all.
      const patientLines: CapturedLine[] = [];
      const patient = new BrokerRegistrar({
        client,
        keys,
        endpoint: endpoint(2),
        ttlSeconds,
        logger: memoryLogger(patientLines),
      });
      await assert.rejects(patient.start(), (err) => {
        assert.ok(isSamsaError(err, ErrorCode.INVALID_CONFIG));
        assert.equal(err.message, "broker.id 2 is already registered");
        return true;
      });
      const waited = patientLines.filter((l) => l.message === waitingMessage);
      assert.ok(waited.length >= 1, "it waited before refusing");
      const kv = await readKey(keys.broker(2));
      assert.ok(kv);
      assert.equal(Number(kv.create_revision), held.brokerEpoch, "the holder is untouched");

      // It waits for the key to go: one that is waiting registers as soon as the holder stops.
      const waiterLines: CapturedLine[] = [];
      const waiter = new BrokerRegistrar({
        client,
        keys,
        endpoint: endpoint(2),
        ttlSeconds,
        conflictWaitMs: 60_000,
        logger: memoryLogger(waiterLines),
      });
      const registered = waiter.start();
      try {
        await waitFor(() => waiterLines.some((l) => l.message === waitingMessage), {
          message: "the second registrar to wait for the key",
        });
        await first.stop();
        const registration = await registered;
        assert.ok(registration.brokerEpoch > held.brokerEpoch, "registered after the holder");
      } finally {
        await registered.catch(() => undefined);
        await waiter.stop();
      }
    } finally {
      await first.stop();
    }
  });

  it("a restarted broker waits out its crashed predecessor's lease", async () => {
    const keys = freshKeys();
    const child = spawnEtcdMember("register", etcd.endpoint, keys.prefix, 4, ttlSeconds);
    const line = await child.firstLine;
    await child.kill();
    const registrar = new BrokerRegistrar({ client, keys, endpoint: endpoint(4), ttlSeconds });
    try {
      const registration = await registrar.start();
      assert.ok(registration.brokerEpoch > Number(line.brokerEpoch));
    } finally {
      await registrar.stop();
    }
  });

  it("re-registers with a new lease and a larger epoch when the lease is revoked", async () => {
    const keys = freshKeys();
    const registrar = new BrokerRegistrar({ client, keys, endpoint: endpoint(5), ttlSeconds });
    const lost: number[] = [];
    registrar.onLost((r) => lost.push(r.brokerEpoch));
    const first = await registrar.start();
    try {
      const kv = await readKey(keys.broker(5));
      assert.ok(kv);
      await client.leaseClient.leaseRevoke({ ID: kv.lease });
      const second = await waitFor(
        () => {
          const current = registrar.current;
          return current && current.brokerEpoch > first.brokerEpoch ? current : undefined;
        },
        { timeoutMs: ttlSeconds * 1000 + expiryMarginMs, message: "re-registration" },
      );
      assert.deepEqual(lost, [first.brokerEpoch]);
      const again = await readKey(keys.broker(5));
      assert.ok(again);
      assert.equal(Number(again.create_revision), second.brokerEpoch);
      assert.notEqual(again.lease, kv.lease);
    } finally {
      await registrar.stop();
    }
    assert.equal(await readKey(keys.broker(5)), undefined);
  });

  it("re-registers, and says so, after etcd was unreachable for longer than the TTL", async () => {
    const keys = freshKeys();
    const lines: CapturedLine[] = [];
    const own = createEtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 1_000 });
    const registrar = new BrokerRegistrar({
      client: own,
      keys,
      endpoint: endpoint(6),
      ttlSeconds,
      logger: memoryLogger(lines),
    });
    try {
      const first = await registrar.start();
      await etcd.pause();
      await sleep(ttlSeconds * 1000 + 1_500);
      await etcd.resume();
      const second = await waitFor(
        () => {
          const current = registrar.current;
          return current && current.brokerEpoch > first.brokerEpoch ? current : undefined;
        },
        { timeoutMs: ttlSeconds * 2000 + expiryMarginMs, message: "re-registration" },
      );
      const kv = await readKey(keys.broker(6));
      assert.ok(kv);
      assert.equal(Number(kv.create_revision), second.brokerEpoch);
      const messages = lines.map((l) => l.message);
      assert.ok(messages.includes("broker lease lost, re-registering"), messages.join("; "));
      assert.ok(messages.includes("broker re-registered"));
    } finally {
      await etcd.resume();
      await registrar.stop();
      own.close();
    }
  });
});

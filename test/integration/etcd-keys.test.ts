/**
 * The etcd key layout and value codecs (no etcd needed): keys build and parse back, names are
 * escaped, and decoding rejects garbage with a typed error.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeBrokerRegistration,
  decodeControllerInfo,
  decodePartitionState,
  decodeTopicRecord,
  type EtcdKeyValue,
  EtcdKeys,
  encodeBrokerEndpoint,
  encodePartitionState,
  encodeTopicRecord,
  MetadataDecodeError,
} from "../../services/shared/etcd/keys.js";

const kv = (key: string, value: string, createRevision = 7, modRevision = 9): EtcdKeyValue => ({
  key,
  value: Buffer.from(value),
  createRevision,
  modRevision,
  lease: "0",
});

const rejectsWith = (fn: () => unknown, reason: RegExp) =>
  assert.throws(fn, (err) => err instanceof MetadataDecodeError && reason.test(err.reason));

describe("etcd keys", () => {
  const keys = EtcdKeys.forCluster("prod-1");

  it("builds the agreed layout under /samsa/<cluster-id>/", () => {
    assert.equal(keys.prefix, "/samsa/prod-1/");
    assert.equal(keys.broker(3), "/samsa/prod-1/brokers/3");
    assert.equal(keys.controllerPrefix(), "/samsa/prod-1/controller/");
    assert.equal(keys.topic("orders"), "/samsa/prod-1/topics/orders");
    assert.equal(keys.partition("orders", 2), "/samsa/prod-1/partitions/orders/2");
    assert.equal(keys.partitionsPrefix("orders"), "/samsa/prod-1/partitions/orders/");
    assert.equal(keys.groupMember("g", "m-1"), "/samsa/prod-1/groups/g/members/m-1");
    assert.equal(keys.groupState("g"), "/samsa/prod-1/groups/g/state");
    assert.equal(keys.offset("g", "orders", 0), "/samsa/prod-1/offsets/g/orders/0");
    assert.equal(new EtcdKeys("/x/y").prefix, "/x/y/");
    assert.equal(EtcdKeys.forCluster("c", "/root/").prefix, "/root/c/");
  });

  it("parses every key kind back, escaping names that contain '/'", () => {
    const cases = [
      [keys.broker(3), { kind: "broker", brokerId: 3 }],
      [`${keys.controllerPrefix()}694d7`, { kind: "controller", candidate: "694d7" }],
      [keys.topic("a.b_c-1"), { kind: "topic", topic: "a.b_c-1" }],
      [keys.partition("t", 11), { kind: "partition", topic: "t", partition: 11 }],
      [keys.groupMember("a/b", "m/1"), { kind: "groupMember", group: "a/b", member: "m/1" }],
      [keys.groupState("a/b"), { kind: "groupState", group: "a/b" }],
      [keys.offset("g%", "t", 4), { kind: "offset", group: "g%", topic: "t", partition: 4 }],
    ] as const;
    for (const [key, parsed] of cases) assert.deepEqual(keys.parse(key), parsed, key);
    assert.equal(keys.groupState("a/b"), "/samsa/prod-1/groups/a%2Fb/state");
    for (const bad of [
      "/samsa/other/brokers/1",
      `${keys.prefix}brokers/01`,
      `${keys.prefix}brokers/x`,
      `${keys.prefix}partitions/t`,
      `${keys.prefix}groups/g/nope`,
      `${keys.prefix}topics/%E0%A4%A`,
      `${keys.prefix}unknown/1`,
    ]) {
      assert.equal(keys.parse(bad), undefined, bad);
    }
  });
});

describe("etcd values", () => {
  it("broker registration: the epoch is the key's create revision", () => {
    const value = encodeBrokerEndpoint({ id: 3, host: "h", port: 9092, rack: "r1" });
    const decoded = decodeBrokerRegistration(kv("/p/brokers/3", value, 42));
    assert.deepEqual(decoded, {
      id: 3,
      host: "h",
      port: 9092,
      rack: "r1",
      metricsPort: undefined,
      brokerEpoch: 42,
    });
    rejectsWith(() => decodeBrokerRegistration(kv("/p/brokers/4", value)), /does not match/);
    rejectsWith(() => decodeBrokerRegistration(kv("/p/brokers/3", "{")), /not JSON/);
    rejectsWith(() => decodeBrokerRegistration(kv("/p/brokers/3", "[1]")), /object/);
    const noPort = JSON.stringify({ id: 3, host: "h", port: 70000 });
    rejectsWith(() => decodeBrokerRegistration(kv("/p/brokers/3", noPort)), /port/);
  });

  it("topic record round-trips; a bad id or config is rejected", () => {
    const topic = {
      id: "0b8f3c2e-5d7a-4c1b-9e2f-1a2b3c4d5e6f",
      name: "orders",
      partitions: 3,
      replicationFactor: 2,
      config: { "retention.ms": "1000" },
      createdAt: 1_700_000_000_000,
    };
    assert.deepEqual(decodeTopicRecord(kv("/p/topics/orders", encodeTopicRecord(topic))), topic);
    const badId = encodeTopicRecord({ ...topic, id: "nope" });
    rejectsWith(() => decodeTopicRecord(kv("/p/topics/orders", badId)), /UUID/);
    const badConfig = JSON.stringify({ ...topic, config: { a: 1 } });
    rejectsWith(() => decodeTopicRecord(kv("/p/topics/orders", badConfig)), /config/);
    const noPartitions = encodeTopicRecord({ ...topic, partitions: 0 });
    rejectsWith(() => decodeTopicRecord(kv("/p/topics/orders", noPartitions)), /partitions/);
  });

  it("partition state: leader in replicas (or -1), ISR a subset, distinct ids", () => {
    const state = { replicas: [1, 2], leader: 1, leaderEpoch: 3, isr: [1], partitionEpoch: 5 };
    assert.deepEqual(decodePartitionState(kv("/p", encodePartitionState(state))), state);
    const offline = { ...state, leader: -1, isr: [] };
    assert.deepEqual(decodePartitionState(kv("/p", encodePartitionState(offline))), offline);
    const bad = (s: object) => kv("/p", JSON.stringify({ ...state, ...s }));
    rejectsWith(() => decodePartitionState(bad({ leader: 9 })), /not a replica/);
    rejectsWith(() => decodePartitionState(bad({ isr: [1, 7] })), /subset/);
    rejectsWith(() => decodePartitionState(bad({ replicas: [1, 1] })), /distinct/);
    rejectsWith(() => decodePartitionState(bad({ replicas: [] })), /empty/);
    rejectsWith(() => decodePartitionState(bad({ leaderEpoch: 1.5 })), /leaderEpoch/);
  });

  it("controller candidate: the epoch is the key's create revision", () => {
    const info = decodeControllerInfo(kv("/p/controller/1", '{"id":"c-2","address":"h:1"}', 11));
    assert.deepEqual(info, { id: "c-2", address: "h:1", epoch: 11, key: "/p/controller/1" });
    rejectsWith(() => decodeControllerInfo(kv("/p/controller/1", '{"id":2,"address":"h"}')), /id/);
  });
});

/**
 * Named listeners: parsing `listeners` / `advertised.listeners` / `inter.broker.listener.name`
 * (services/shared/config/listeners.ts), the broker config built from them, their round trip
 * through the broker's etcd registration, and the Metadata answer per listener.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DEFAULT_LISTENER_NAME,
  ListenerConfigError,
  parseHostPort,
  parseListenerEntry,
  parseListenerList,
  resolveListeners,
} from "../../services/shared/config/listeners.js";
import {
  loadBrokerConfig,
  loadControllerConfig,
  loadGatewayConfig,
} from "../../services/shared/config/services.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import {
  type BrokerRegistration,
  decodeBrokerRegistration,
  encodeBrokerEndpoint,
} from "../../services/shared/etcd/keys.js";
import type { ClusterMetadata } from "../../services/shared/metadata/cluster-metadata.js";
import { describeMetadata } from "../../services/shared/metadata/metadata-answer.js";

const ID = ["--broker.id=1"];

const resolve = (listeners: string, advertisedListeners = "", interBrokerListenerName = "") =>
  resolveListeners({ listeners, advertisedListeners, interBrokerListenerName });

/** Asserts that `fn` throws a ListenerConfigError naming `key`. */
function throwsAt(fn: () => unknown, key: string, reason?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ListenerConfigError, `not a ListenerConfigError: ${err}`);
    assert.equal(err.key, key);
    if (reason) assert.match(err.reason, reason);
    return true;
  });
}

/** Asserts that loading throws INVALID_CONFIG naming `key`. */
function configThrows(fn: () => unknown, key: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isSamsaError(err, ErrorCode.INVALID_CONFIG), `not INVALID_CONFIG: ${err}`);
    assert.match(err.message, new RegExp(`config ${key.replaceAll(".", "\\.")}:`));
    return true;
  });
}

describe("listener entries", () => {
  it("parses host:port, [v6]:port and NAME://host:port, names upper-cased", () => {
    assert.deepEqual(parseListenerEntry("broker-1:9092"), {
      name: undefined,
      address: { host: "broker-1", port: 9092 },
    });
    assert.deepEqual(parseListenerEntry(" internal://0.0.0.0:9092 "), {
      name: "INTERNAL",
      address: { host: "0.0.0.0", port: 9092 },
    });
    assert.deepEqual(parseListenerEntry("EXT_2://[::1]:19092"), {
      name: "EXT_2",
      address: { host: "::1", port: 19092 },
    });
    // Kafka's empty host: every interface.
    assert.deepEqual(parseListenerEntry("PLAINTEXT://:0"), {
      name: "PLAINTEXT",
      address: { host: "0.0.0.0", port: 0 },
    });
  });

  it("refuses bad entries with a reason", () => {
    for (const bad of ["nohost", "a:70000", "2X://a:1", "://a:1", "A-B://a:1", "a:b:1", "a:"]) {
      assert.equal(typeof parseListenerEntry(bad), "string", bad);
    }
  });

  it("parseHostPort keeps its one-address meaning", () => {
    assert.deepEqual(parseHostPort("PLAINTEXT://0.0.0.0:9092"), { host: "0.0.0.0", port: 9092 });
    assert.equal(typeof parseHostPort("A://a:1,B://b:2"), "string");
  });
});

describe("listener lists", () => {
  it("parses a named list in order", () => {
    const list = parseListenerList("INTERNAL://0.0.0.0:9092, EXTERNAL://0.0.0.0:19092");
    assert.ok(Array.isArray(list));
    assert.deepEqual(
      list.map((e) => [e.name, e.address.port]),
      [
        ["INTERNAL", 9092],
        ["EXTERNAL", 19092],
      ],
    );
  });

  it("refuses duplicate names (case-insensitively), unnamed entries among several, empties", () => {
    assert.match(String(parseListenerList("A://a:1,a://b:2")), /appears twice/);
    assert.match(String(parseListenerList("a:1,B://b:2")), /needs a name/);
    assert.match(String(parseListenerList("A://a:1,,B://b:2")), /empty entry/);
    assert.match(String(parseListenerList("")), /empty entry/);
  });
});

describe("resolveListeners", () => {
  it("a plain host:port is the one default listener, advertised on loopback", () => {
    const r = resolve("0.0.0.0:9092");
    assert.equal(r.interBrokerListenerName, DEFAULT_LISTENER_NAME);
    assert.deepEqual(r.listeners, [
      {
        name: "PLAINTEXT",
        bind: { host: "0.0.0.0", port: 9092 },
        advertised: { host: "127.0.0.1", port: 9092 },
      },
    ]);
  });

  it("an unnamed advertised entry belongs to the single listener", () => {
    const r = resolve("INTERNAL://0.0.0.0:9092", "broker-1:9092");
    assert.deepEqual(r.listeners[0]!.advertised, { host: "broker-1", port: 9092 });
    assert.equal(r.interBrokerListenerName, "INTERNAL");
  });

  it("the compose broker: two listeners, each advertised, inter-broker by name", () => {
    const r = resolve(
      "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092",
      "INTERNAL://broker-1:9092,EXTERNAL://127.0.0.1:19192",
      "internal",
    );
    assert.equal(r.interBrokerListenerName, "INTERNAL");
    assert.deepEqual(
      r.listeners.map((l) => [l.name, l.bind.port, `${l.advertised.host}:${l.advertised.port}`]),
      [
        ["INTERNAL", 9092, "broker-1:9092"],
        ["EXTERNAL", 19092, "127.0.0.1:19192"],
      ],
    );
    assert.ok(
      Object.isFrozen(r) && Object.isFrozen(r.listeners) && Object.isFrozen(r.listeners[1]),
    );
  });

  it("defaults: the first listener is inter-broker; an unadvertised one advertises its bind", () => {
    const r = resolve("A://10.0.0.5:1000,B://0.0.0.0:2000", "A://a.example:1000");
    assert.equal(r.interBrokerListenerName, "A");
    assert.deepEqual(r.listeners[1]!.advertised, { host: "127.0.0.1", port: 2000 });
    const s = resolve("A://10.0.0.5:1000,B://0.0.0.0:2000");
    assert.deepEqual(s.listeners[0]!.advertised, { host: "10.0.0.5", port: 1000 });
  });

  it("port 0 binds an ephemeral port, also on several listeners", () => {
    const r = resolve("A://127.0.0.1:0,B://127.0.0.1:0");
    assert.deepEqual(
      r.listeners.map((l) => l.advertised.port),
      [0, 0],
    );
  });

  it("refuses what cannot work, naming the key", () => {
    throwsAt(() => resolve("A://a:1,B://b:1"), "listeners", /port 1 used twice/);
    throwsAt(() => resolve("nohost"), "listeners");
    throwsAt(() => resolve("A://a:1", "B://b:1"), "advertised.listeners", /not in listeners/);
    throwsAt(() => resolve("A://a:1,B://b:2", "x:1"), "advertised.listeners", /name each entry/);
    throwsAt(
      () => resolve("A://a:1", "A://0.0.0.0:1"),
      "advertised.listeners",
      /cannot be dialled/,
    );
    throwsAt(() => resolve("A://a:1", "A://x:1,A://y:1"), "advertised.listeners", /twice/);
    throwsAt(() => resolve("A://a:1", "", "B"), "inter.broker.listener.name", /not in listeners/);
  });
});

describe("service configs with listeners", () => {
  it("the broker takes named listeners from flags and the environment", () => {
    const c = loadBrokerConfig(ID, {
      SAMSA_LISTENERS: "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9192",
      SAMSA_ADVERTISED_LISTENERS: "INTERNAL://broker-1:9092,EXTERNAL://127.0.0.1:29192",
      SAMSA_INTER_BROKER_LISTENER_NAME: "INTERNAL",
    });
    assert.deepEqual(
      c.listeners.map((l) => l.name),
      ["INTERNAL", "EXTERNAL"],
    );
    assert.equal(c.interBrokerListenerName, "INTERNAL");
    // The inter-broker listener is the one every single-address reader sees.
    assert.deepEqual(c.listener, { host: "0.0.0.0", port: 9092 });
    assert.deepEqual(c.advertisedListener, { host: "broker-1", port: 9092 });
    const flags = loadBrokerConfig([
      ...ID,
      "--listeners=A://127.0.0.1:0,B://127.0.0.1:0",
      "--inter.broker.listener.name=b",
    ]);
    assert.equal(flags.interBrokerListenerName, "B");
  });

  it("the broker's defaults stay one PLAINTEXT listener on 0.0.0.0:9092", () => {
    const c = loadBrokerConfig(ID, {});
    assert.equal(c.listeners.length, 1);
    assert.equal(c.interBrokerListenerName, "PLAINTEXT");
    assert.deepEqual(c.advertisedListener, { host: "127.0.0.1", port: 9092 });
  });

  it("refuses bad listener config with INVALID_CONFIG naming the key", () => {
    configThrows(() => loadBrokerConfig([...ID, "--listeners=A://a:1,A://b:2"]), "listeners");
    configThrows(
      () => loadBrokerConfig([...ID, "--listeners=A://a:1", "--advertised.listeners=B://b:1"]),
      "advertised.listeners",
    );
    configThrows(
      () => loadBrokerConfig([...ID, "--inter.broker.listener.name=NOPE"]),
      "inter.broker.listener.name",
    );
    configThrows(
      () => loadBrokerConfig([...ID, "--inter.broker.listener.name=a-b"]),
      "inter.broker.listener.name",
    );
  });

  it("a controller or gateway has one listener; inter.broker.listener.name is the broker's", () => {
    const two = ["--listeners=A://127.0.0.1:1,B://127.0.0.1:2"];
    configThrows(() => loadControllerConfig(two, {}), "listeners");
    configThrows(() => loadGatewayConfig(two, {}), "listeners");
    const g = loadGatewayConfig(["--listeners=GW://0.0.0.0:9094"], {});
    assert.equal(g.interBrokerListenerName, "GW");
    assert.throws(() => loadControllerConfig(["--inter.broker.listener.name=A"], {}));
  });
});

const kv = (key: string, value: string) => ({
  key,
  value: Buffer.from(value),
  createRevision: 7,
  modRevision: 7,
  version: 1,
  lease: "0",
});

describe("registration with listeners", () => {
  it("round-trips every listener's address through etcd's JSON", () => {
    const endpoint = {
      id: 1,
      host: "broker-1",
      port: 9092,
      listeners: {
        INTERNAL: { host: "broker-1", port: 9092 },
        EXTERNAL: { host: "127.0.0.1", port: 9192 },
      },
    };
    const decoded = decodeBrokerRegistration(
      kv("/samsa/c/brokers/1", encodeBrokerEndpoint(endpoint)) as never,
    );
    assert.deepEqual(decoded.listeners, endpoint.listeners);
    assert.equal(decoded.brokerEpoch, 7);
  });

  it("reads registrations without listeners, refuses malformed ones", () => {
    const old = decodeBrokerRegistration(
      kv("/samsa/c/brokers/2", '{"id":2,"host":"h","port":1}') as never,
    );
    assert.equal(old.listeners, undefined);
    for (const bad of ['"x"', '{"A":{"host":"h"}}', '{"A":{"host":"","port":1}}', "[1]"]) {
      assert.throws(
        () =>
          decodeBrokerRegistration(
            kv("/samsa/c/brokers/2", `{"id":2,"host":"h","port":1,"listeners":${bad}}`) as never,
          ),
        /listener|host|port/,
        bad,
      );
    }
  });
});

describe("Metadata per listener", () => {
  const brokers: BrokerRegistration[] = [
    {
      id: 1,
      host: "broker-1",
      port: 9092,
      brokerEpoch: 10,
      listeners: {
        INTERNAL: { host: "broker-1", port: 9092 },
        EXTERNAL: { host: "127.0.0.1", port: 9192 },
      },
    },
    // Registered before it had an EXTERNAL listener.
    {
      id: 2,
      host: "broker-2",
      port: 9092,
      brokerEpoch: 11,
      listeners: { INTERNAL: { host: "broker-2", port: 9092 } },
    },
    // Registered before listeners had names.
    { id: 3, host: "broker-3", port: 9092, brokerEpoch: 12 },
  ];
  const partition = (p: number, leader: number) => ({
    partition: p,
    state: { replicas: [leader], leader, leaderEpoch: 0, isr: [leader], partitionEpoch: 0 },
  });
  const metadata = {
    brokers: () => brokers,
    topics: () => [{ name: "t" }],
    topic: (name: string) => (name === "t" ? { id: "id-t", name: "t", config: {} } : undefined),
    partitions: () => [partition(0, 1), partition(1, 2), partition(2, 3)],
  } as unknown as ClusterMetadata;

  it("gives each broker's address on the listener asked for", () => {
    const answer = describeMetadata(metadata, "c", "ctl", ["t"], "EXTERNAL");
    assert.deepEqual(
      answer.brokers?.map((b) => `${b.id}@${b.host}:${b.port}`),
      ["1@127.0.0.1:9192", "3@broker-3:9092"],
    );
    const partitions = answer.topics?.[0]?.partitions ?? [];
    assert.deepEqual(
      partitions.map((p) => [p.partition, p.leaderId, p.errorCode]),
      [
        [0, 1, ErrorCode.NONE],
        // Its leader has no EXTERNAL address: not available to this client, retriable.
        [1, -1, ErrorCode.LEADER_NOT_AVAILABLE],
        [2, 3, ErrorCode.NONE],
      ],
    );
  });

  it("without a listener name, the registered (inter-broker) addresses", () => {
    const answer = describeMetadata(metadata, "c", "ctl", ["t"]);
    assert.deepEqual(
      answer.brokers?.map((b) => `${b.id}@${b.host}:${b.port}`),
      ["1@broker-1:9092", "2@broker-2:9092", "3@broker-3:9092"],
    );
    const internal = describeMetadata(metadata, "c", "ctl", ["t"], "INTERNAL");
    assert.deepEqual(internal.brokers, answer.brokers);
  });
});

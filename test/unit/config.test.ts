import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DEFAULT_LOG_CONFIG } from "../../services/shared/config/log-config.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import {
  brokerLogConfig,
  camelCase,
  envVarName,
  loadBrokerConfig,
  loadControllerConfig,
  loadConfig,
  loadGatewayConfig,
  NOT_BUILT_KEYS,
  parseHostPort,
  parseProperties,
  parseTopicConfig,
  REPLICATION_FACTOR_MAX,
  SAMSA_SCHEMA,
  topicLogConfig,
} from "../../services/shared/config/index.js";

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;
const ID = ["--broker.id", "1"];

const dir = mkdtempSync(join(tmpdir(), "samsa-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Asserts that `fn` throws INVALID_CONFIG whose message starts with `config <key>:`. */
function throwsConfig(fn: () => unknown, key: string, also?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isSamsaError(err, ErrorCode.INVALID_CONFIG), String(err));
    assert.ok(err.message.startsWith(`config ${key}:`), err.message);
    if (also) assert.match(err.message, also);
    return true;
  });
}

describe("config precedence", () => {
  const props = file("p.properties", "broker.id=1\nnum.partitions=2\nmin.insync.replicas=2\n");

  it("default < file < env < flag", () => {
    const env = { SAMSA_NUM_PARTITIONS: "3", SAMSA_MIN_INSYNC_REPLICAS: "3" };
    const c = loadControllerConfig([props, "--num.partitions=4"], env);
    assert.equal(c.numPartitions, 4);
    assert.equal(c.defaultReplicationFactor, 1);
    assert.equal(loadBrokerConfig([props], env).minInsyncReplicas, 3);
    assert.equal(loadBrokerConfig([props, "--min.insync.replicas=4"], env).minInsyncReplicas, 4);
    assert.equal(loadControllerConfig([props], {}).numPartitions, 2);
    assert.equal(loadControllerConfig(["--config", props], env).numPartitions, 3);
  });

  it("accepts --override k=v, --key value, --key=value and bare boolean flags", () => {
    const c = loadBrokerConfig(
      [
        "--override",
        "broker.id=7",
        "--log.dirs",
        "/a,/b",
        "--log.flush.strict",
        "--min.insync.replicas=5",
      ],
      {},
    );
    assert.equal(c.brokerId, 7);
    assert.deepEqual(c.logDirs, ["/a", "/b"]);
    assert.equal(c.logFlushStrict, true);
    assert.equal(c.minInsyncReplicas, 5);
    assert.equal(
      loadBrokerConfig([...ID, "--log.flush.strict", "false"], {}).logFlushStrict,
      false,
    );
  });

  it("SAMSA_CONFIG names the file when the command line does not", () => {
    assert.equal(loadBrokerConfig([], { SAMSA_CONFIG: props }).brokerId, 1);
  });

  it("resolves a relative file against cwd", () => {
    assert.equal(loadBrokerConfig(["p.properties"], {}, dir).minInsyncReplicas, 2);
  });
});

describe("config files", () => {
  it("reads properties with comments, separators and continuations", () => {
    const lines = parseProperties("# c\n! c\n a = 1 \nb:2\nc 3\nd=x,\\\n   y\ne=\\u0041\\t\n");
    assert.deepEqual(
      lines.map((l) => [l.name, l.value, l.line]),
      [
        ["a", "1", 3],
        ["b", "2", 4],
        ["c", "3", 5],
        ["d", "x,y", 6],
        ["e", "A", 8],
      ],
    );
  });

  it("reads YAML with nested maps and flat dotted keys", () => {
    const yaml = file(
      "b.yaml",
      "broker:\n  id: 3\n  rack: r1\nlog:\n  dirs: [/x, /y]\n  retention.hours: 2\nlisteners: PLAINTEXT://0.0.0.0:9999\n",
    );
    const c = loadBrokerConfig([yaml], {});
    assert.equal(c.brokerId, 3);
    assert.equal(c.brokerRack, "r1");
    assert.deepEqual(c.logDirs, ["/x", "/y"]);
    assert.equal(c.logRetentionMs, 2 * HOUR_MS);
    assert.deepEqual(c.listener, { host: "0.0.0.0", port: 9999 });
  });

  it("rejects a missing file and a YAML list where a number belongs", () => {
    assert.throws(() => loadBrokerConfig([join(dir, "nope.properties")], {}), /not found/);
    throwsConfig(() => loadBrokerConfig([file("l.yml", "broker.id: [1, 2]\n")], {}), "broker.id");
  });
});

describe("Kafka's unit variants", () => {
  it("retention: ms > minutes > hours within one source; default 168 h", () => {
    assert.equal(loadBrokerConfig(ID, {}).logRetentionMs, 168 * HOUR_MS);
    const all = file("r.properties", "log.retention.hours=1\nlog.retention.minutes=2\n");
    assert.equal(loadBrokerConfig([all, ...ID], {}).logRetentionMs, 2 * MINUTE_MS);
    const env = { SAMSA_LOG_RETENTION_MS: "5000", SAMSA_LOG_RETENTION_HOURS: "9" };
    assert.equal(loadBrokerConfig(ID, env).logRetentionMs, 5000);
    assert.equal(loadBrokerConfig([...ID, "--log.retention.ms=-1"], {}).logRetentionMs, -1);
  });

  it("a later source setting any variant replaces the earlier source's", () => {
    const ms = file("ms.properties", "log.retention.ms=1000\n");
    const c = loadBrokerConfig([ms, ...ID, "--log.retention.hours=3"], {});
    assert.equal(c.logRetentionMs, 3 * HOUR_MS);
  });

  it("segment roll: log.segment.ms or log.roll.ms over log.roll.hours", () => {
    assert.equal(loadBrokerConfig(ID, {}).logSegmentMs, 168 * HOUR_MS);
    assert.equal(loadBrokerConfig([...ID, "--log.roll.hours=2"], {}).logSegmentMs, 2 * HOUR_MS);
    assert.equal(loadBrokerConfig([...ID, "--log.roll.ms=7"], {}).logSegmentMs, 7);
    assert.equal(loadBrokerConfig([...ID, "--log.segment.ms=8"], {}).logSegmentMs, 8);
  });

  it("log.dirs wins over log.dir; log.dir alone works", () => {
    assert.deepEqual(loadBrokerConfig([...ID, "--log.dir=/d"], {}).logDirs, ["/d"]);
    const both = loadBrokerConfig([...ID, "--log.dir=/d", "--log.dirs=/e"], {});
    assert.deepEqual(both.logDirs, ["/e"]);
  });

  it("Long.MAX_VALUE means unlimited where Kafka uses it so", () => {
    const c = loadBrokerConfig([...ID, "--log.flush.interval.messages=9223372036854775807"], {});
    assert.equal(c.logFlushIntervalMessages, -1);
  });
});

describe("listeners", () => {
  it("parses host:port, Kafka's NAME://host:port and IPv6", () => {
    assert.deepEqual(parseHostPort("PLAINTEXT://0.0.0.0:9092"), { host: "0.0.0.0", port: 9092 });
    assert.deepEqual(parseHostPort("broker-1:19092"), { host: "broker-1", port: 19092 });
    assert.deepEqual(parseHostPort("[::1]:9092"), { host: "::1", port: 9092 });
    assert.deepEqual(parseHostPort(":0"), { host: "0.0.0.0", port: 0 });
    assert.equal(typeof parseHostPort("nohost"), "string");
    assert.equal(typeof parseHostPort("a:1,b:2"), "string");
  });

  it("advertises loopback for a wildcard listener unless told otherwise", () => {
    const c = loadBrokerConfig([...ID, "--listeners=PLAINTEXT://0.0.0.0:0"], {});
    assert.deepEqual(c.listener, { host: "0.0.0.0", port: 0 });
    assert.deepEqual(c.advertisedListener, { host: "127.0.0.1", port: 0 });
    const adv = loadBrokerConfig([...ID, "--advertised.listeners=PLAINTEXT://b1:9092"], {});
    assert.deepEqual(adv.advertisedListener, { host: "b1", port: 9092 });
    assert.deepEqual(loadGatewayConfig([], {}).listener, { host: "0.0.0.0", port: 9094 });
  });

  it("rejects bad listeners naming the key", () => {
    throwsConfig(() => loadBrokerConfig([...ID, "--listeners=x:70000"], {}), "listeners");
    const wild = ["--advertised.listeners=0.0.0.0:1"];
    throwsConfig(() => loadBrokerConfig([...ID, ...wild], {}), "advertised.listeners");
  });
});

describe("validation", () => {
  it("a missing broker.id names broker.id", () => {
    throwsConfig(() => loadBrokerConfig([], {}), "broker.id", /SAMSA_BROKER_ID/);
  });

  it("bad int, out of range, bad bool and bad enum name the key and source", () => {
    throwsConfig(() => loadBrokerConfig([], { SAMSA_BROKER_ID: "x" }), "broker.id", /SAMSA_/);
    throwsConfig(() => loadBrokerConfig(["--broker.id=-1"], {}), "broker.id", /out of range/);
    throwsConfig(() => loadControllerConfig(["--num.partitions=0"], {}), "num.partitions");
    const rf = `--default.replication.factor=${REPLICATION_FACTOR_MAX + 1}`;
    throwsConfig(() => loadControllerConfig([rf], {}), "default.replication.factor", /range/);
    throwsConfig(() => loadBrokerConfig([...ID, "--log.flush.strict=yes"], {}), "log.flush.strict");
    throwsConfig(() => loadGatewayConfig(["--log.level=loud"], {}), "log.level");
    throwsConfig(
      () => loadBrokerConfig([...ID, "--log.segment.bytes=10"], {}),
      "log.segment.bytes",
    );
    throwsConfig(() => loadBrokerConfig([...ID, "--log.retention.ms=0"], {}), "log.retention.ms");
  });

  it("unknown keys are errors with a suggestion", () => {
    throwsConfig(
      () => loadBrokerConfig([...ID, "--num.partition=2"], {}),
      "num.partition",
      /did you mean --num.partitions/,
    );
    throwsConfig(
      () => loadBrokerConfig(ID, { SAMSA_BROKR_ID: "1" }),
      "brokr.id",
      /SAMSA_BROKER_ID/,
    );
    const zk = file("zk.properties", "broker.id=1\nzookeeper.connect=localhost:2181\n");
    throwsConfig(() => loadBrokerConfig([zk], {}), "zookeeper.connect", /etcd.endpoints/);
  });

  it("another service's key: error as a flag, ignored from env and files", () => {
    throwsConfig(() => loadGatewayConfig(["--broker.id=1"], {}), "broker.id", /gateway/);
    // Topic defaults belong to the service that reads them.
    throwsConfig(() => loadBrokerConfig([...ID, "--num.partitions=2"], {}), "num.partitions");
    const minIsr = "--min.insync.replicas=2";
    throwsConfig(() => loadControllerConfig([minIsr], {}), "min.insync.replicas", /controller/);
    const c = loadGatewayConfig([], { SAMSA_BROKER_ID: "1", SAMSA_GATEWAY_ID: "g1" });
    assert.equal(c.gatewayId, "g1");
    assert.equal("brokerId" in c, false);
  });

  it("cross-field checks", () => {
    const jitter = [...ID, "--log.segment.ms=100", "--log.segment.jitter.ms=100"];
    throwsConfig(() => loadBrokerConfig(jitter, {}), "log.*", /segment.jitter.ms/);
    throwsConfig(() => loadBrokerConfig(["--log.dirs=/a,/a", ...ID], {}), "log.dirs");
  });

  it("results are frozen, lists and listeners too", () => {
    const c = loadBrokerConfig(ID, {});
    assert.ok(Object.isFrozen(c));
    assert.ok(Object.isFrozen(c.logDirs));
    assert.ok(Object.isFrozen(c.etcdEndpoints));
    assert.ok(Object.isFrozen(c.listener));
    assert.throws(() => {
      (c as { brokerId: number }).brokerId = 2;
    }, TypeError);
  });
});

describe("service configs", () => {
  it("defaults", () => {
    const b = loadBrokerConfig(ID, {});
    assert.equal(b.clusterId, "samsa");
    assert.deepEqual(b.etcdEndpoints, ["http://127.0.0.1:2379"]);
    assert.equal(b.etcdClusterPrefix, "/samsa/samsa/");
    assert.equal(b.metricsPort, 9101);
    assert.equal(b.brokerRack, undefined);
    assert.equal(b.brokerSessionTimeoutMs, 6000);
    assert.equal(b.messageMaxBytes, 1_048_588);
    const ctl = loadControllerConfig(["--num.partitions=3", "--metrics.port=0"], {});
    assert.equal(ctl.numPartitions, 3);
    assert.equal(ctl.metricsPort, 0);
    assert.match(ctl.controllerId, /-\d+$/);
    assert.equal(b.etcdConnectionTimeoutMs, 5000);
    assert.equal("replicaLagTimeMaxMs" in b, false);
  });

  it("keys of features not built yet are refused from every source, naming the feature", () => {
    const names = Object.keys(NOT_BUILT_KEYS);
    assert.deepEqual(names.sort(), ["delete.topic.enable"]);
    for (const name of names)
      assert.equal(
        SAMSA_SCHEMA.some((k) => k.name === name),
        false,
      );
    const why = /not supported: .*not built yet|cannot be switched off yet/;
    throwsConfig(
      () => loadBrokerConfig([...ID, "--delete.topic.enable=false"], {}),
      "delete.topic.enable",
      why,
    );
    const env = { SAMSA_DELETE_TOPIC_ENABLE: "false" };
    throwsConfig(() => loadGatewayConfig([], env), "delete.topic.enable", why);
    const f = file("del.properties", "delete.topic.enable=false\n");
    throwsConfig(() => loadControllerConfig([f], {}), "delete.topic.enable", why);
    // Refused even by a service the key would not apply to: it is read by none.
    throwsConfig(() => loadBrokerConfig([f, ...ID], {}), "delete.topic.enable", why);
  });

  it("generic loader gives camelCase names and env naming round-trips", () => {
    const v = loadConfig(SAMSA_SCHEMA, {
      service: "controller",
      env: { SAMSA_ETCD_ENDPOINTS: "a:1, b:2" },
    });
    assert.deepEqual(v.etcdEndpoints, ["a:1", "b:2"]);
    assert.equal(camelCase("log.retention.check.interval.ms"), "logRetentionCheckIntervalMs");
    assert.equal(envVarName("broker.id"), "SAMSA_BROKER_ID");
  });

  it("brokerLogConfig maps log.* onto the per-topic LogConfig", () => {
    const b = loadBrokerConfig(
      [...ID, "--log.retention.bytes=1000", "--log.segment.bytes=2048", "--log.flush.strict"],
      { SAMSA_LOG_FLUSH_INTERVAL_MS: "50", SAMSA_MESSAGE_MAX_BYTES: "4096" },
    );
    const lc = brokerLogConfig(b);
    assert.ok(Object.isFrozen(lc));
    assert.deepEqual(lc, {
      ...DEFAULT_LOG_CONFIG,
      retentionBytes: 1000,
      segmentBytes: 2048,
      flushStrict: true,
      flushMs: 50,
      maxMessageBytes: 4096,
    });
    assert.deepEqual(brokerLogConfig(loadBrokerConfig(ID, {})), DEFAULT_LOG_CONFIG);
    const topic = topicLogConfig(lc, parseTopicConfig({ "retention.ms": "60000" }));
    assert.equal(topic.retentionMs, 60_000);
    assert.equal(topic.segmentBytes, 2048);
  });

  it("docs/configuration.md documents every key", () => {
    const doc = readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8");
    for (const key of SAMSA_SCHEMA) assert.ok(doc.includes(`\`${key.name}\``), key.name);
  });
});

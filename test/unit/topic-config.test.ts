import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DEFAULT_LOG_CONFIG,
  EMPTY_TOPIC_CONFIG,
  MIN_INSYNC_REPLICAS_MAX,
  parseTopicConfig,
  TOPIC_CONFIG_KEYS,
  topicConfigOf,
  topicLogConfig,
  UNLIMITED,
  validateLogConfig,
} from "../../services/shared/config/index.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { BATCH_BYTES_MAX } from "../../services/shared/record-batch/layout.js";

/** Asserts INVALID_CONFIG naming `key` and, when given, the value. */
function refused(props: Record<string, string>, key: string, also?: RegExp): void {
  assert.throws(
    () => parseTopicConfig(props),
    (err: unknown) => {
      assert.ok(isSamsaError(err, ErrorCode.INVALID_CONFIG), String(err));
      assert.match(err.message, new RegExp(`config ${key.replaceAll(".", "\\.")}: `));
      const value = props[key];
      if (value !== undefined) assert.ok(err.message.includes(value), err.message);
      if (also) assert.match(err.message, also);
      return true;
    },
  );
}

describe("parseTopicConfig", () => {
  it("parses every accepted key into a typed field, units in the names", () => {
    const c = parseTopicConfig({
      "segment.bytes": "2048",
      "segment.ms": "60000",
      "segment.jitter.ms": "10",
      "index.interval.bytes": "100",
      "segment.index.bytes": "4096",
      "retention.ms": "3600000",
      "retention.bytes": "-1",
      "flush.messages": "1",
      "flush.ms": "1000",
      "flush.strict": "true",
      "max.message.bytes": "10000",
      "file.delete.delay.ms": "0",
      "min.insync.replicas": "2",
      "unclean.leader.election.enable": "false",
      "cleanup.policy": "delete",
      "compression.type": "producer",
      "message.timestamp.type": "CreateTime",
    });
    assert.deepEqual(c, {
      segmentBytes: 2048,
      segmentMs: 60_000,
      segmentJitterMs: 10,
      indexIntervalBytes: 100,
      segmentIndexBytes: 4096,
      retentionMs: 3_600_000,
      retentionBytes: -1,
      flushMessages: 1,
      flushMs: 1000,
      flushStrict: true,
      maxMessageBytes: 10_000,
      fileDeleteDelayMs: 0,
      minInsyncReplicas: 2,
      uncleanLeaderElectionEnable: false,
      cleanupPolicy: "delete",
      compressionType: "producer",
      messageTimestampType: "CreateTime",
    });
    assert.equal(Object.keys(c).length, Object.keys(TOPIC_CONFIG_KEYS).length);
  });

  it("returns a frozen object; unset keys stay absent (the service's default applies)", () => {
    const c = parseTopicConfig({ "retention.ms": "1000" });
    assert.ok(Object.isFrozen(c));
    assert.deepEqual(c, { retentionMs: 1000 });
    assert.equal("segmentBytes" in c, false);
    assert.throws(() => {
      (c as { retentionMs: number }).retentionMs = 2;
    }, TypeError);
    assert.deepEqual(parseTopicConfig({}), EMPTY_TOPIC_CONFIG);
    assert.ok(Object.isFrozen(EMPTY_TOPIC_CONFIG));
  });

  it("trims values and reads Kafka's Long.MAX_VALUE as unlimited where Kafka does", () => {
    const c = parseTopicConfig({
      "retention.ms": " 9223372036854775807 ",
      "retention.bytes": "9223372036854775807",
      "flush.messages": "9223372036854775807",
      "flush.ms": "9223372036854775807",
    });
    assert.deepEqual(c, {
      retentionMs: UNLIMITED,
      retentionBytes: UNLIMITED,
      flushMessages: UNLIMITED,
      flushMs: UNLIMITED,
    });
    refused({ "segment.ms": "9223372036854775807" }, "segment.ms", /out of range/);
  });

  it("refuses unknown names, naming the key and the value", () => {
    refused({ "no.such.config": "1" }, "no.such.config", /unknown/);
    // Broker-level names are not topic configs.
    refused({ "log.retention.ms": "1000" }, "log.retention.ms", /unknown/);
  });

  it("refuses values that do not parse or are out of range", () => {
    refused({ "retention.ms": "abc" }, "retention.ms", /not an integer/);
    refused({ "retention.ms": "1.5" }, "retention.ms", /not an integer/);
    refused({ "retention.ms": "0" }, "retention.ms");
    refused({ "segment.bytes": "-1" }, "segment.bytes");
    refused({ "segment.bytes": "1023" }, "segment.bytes");
    refused({ "segment.index.bytes": "47" }, "segment.index.bytes");
    refused({ "max.message.bytes": String(BATCH_BYTES_MAX + 1) }, "max.message.bytes");
    refused({ "flush.messages": "0" }, "flush.messages");
    refused({ "flush.strict": "yes" }, "flush.strict", /true or false/);
    refused({ "unclean.leader.election.enable": "TRUE " }, "unclean.leader.election.enable");
    refused({ "min.insync.replicas": "0" }, "min.insync.replicas", /range/);
    const tooMany = String(MIN_INSYNC_REPLICAS_MAX + 1);
    refused({ "min.insync.replicas": tooMany }, "min.insync.replicas", /range/);
  });

  it("checks log settings together over Kafka's defaults", () => {
    refused({ "segment.ms": "100", "segment.jitter.ms": "100" }, "segment.jitter.ms");
    assert.equal(parseTopicConfig({ "segment.jitter.ms": "100" }).segmentJitterMs, 100);
  });

  it("refuses values of features not built yet, saying what is missing", () => {
    refused({ "cleanup.policy": "compact" }, "cleanup.policy", /compaction is not built/);
    refused({ "cleanup.policy": "delete,compact" }, "cleanup.policy", /only "delete"/);
    refused({ "compression.type": "gzip" }, "compression.type", /only "producer"/);
    refused({ "message.timestamp.type": "LogAppendTime" }, "message.timestamp.type", /only/);
  });
});

describe("topicLogConfig", () => {
  it("lays a topic's log settings over the broker's, ignoring non-log settings", () => {
    const base = validateLogConfig({ ...DEFAULT_LOG_CONFIG, segmentBytes: 4096, flushMs: 5 });
    const topic = parseTopicConfig({ "retention.ms": "60000", "min.insync.replicas": "2" });
    const lc = topicLogConfig(base, topic);
    assert.ok(Object.isFrozen(lc));
    assert.deepEqual(lc, { ...base, retentionMs: 60_000 });
    assert.deepEqual(topicLogConfig(base, EMPTY_TOPIC_CONFIG), base);
  });

  it("fails when the merged settings disagree (jitter above the broker's roll age)", () => {
    const base = validateLogConfig({ ...DEFAULT_LOG_CONFIG, segmentMs: 1000 });
    const topic = parseTopicConfig({ "segment.jitter.ms": "5000" });
    assert.throws(
      () => topicLogConfig(base, topic),
      (err: unknown) =>
        isSamsaError(err, ErrorCode.INVALID_CONFIG) && /segment\.jitter\.ms/.test(err.message),
    );
  });
});

describe("topicConfigOf", () => {
  it("parses a record's config once and remembers it per record", () => {
    const record = { config: { "min.insync.replicas": "2" } };
    const first = topicConfigOf(record);
    assert.equal(first.minInsyncReplicas, 2);
    assert.equal(topicConfigOf(record), first);
    // A new version of the record (a new config object) is parsed again.
    const next = topicConfigOf({ config: { "min.insync.replicas": "3" } });
    assert.equal(next.minInsyncReplicas, 3);
  });

  it("throws INVALID_CONFIG for a record whose config is bad", () => {
    assert.throws(
      () => topicConfigOf({ config: { "retention.ms": "soon" } }),
      (err: unknown) => isSamsaError(err, ErrorCode.INVALID_CONFIG),
    );
  });
});

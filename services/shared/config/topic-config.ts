/**
 * Per-topic configuration. Topic configs travel as Kafka-named string maps (the CreateTopics
 * request, the etcd topic record, DescribeTopics); they are parsed at the edge, once, into a
 * frozen, typed {@link TopicConfig} that the controller's validation, the broker and the gateway
 * share. A key is either read by code or refused with INVALID_CONFIG: unknown names, bad values
 * and values of features not built yet (`cleanup.policy=compact`, ...) never fall back to a
 * default silently.
 */
import { ErrorCode, SamsaError } from "../errors.js";
import { DEFAULT_LOG_CONFIG, type LogConfig, UNLIMITED, validateLogConfig } from "./log-config.js";

/**
 * Largest replication factor of a topic: the controller places at most this many replicas of a
 * partition (`default.replication.factor` and CreateTopics are both bounded by it).
 */
export const REPLICATION_FACTOR_MAX = 32;
/** Partitions one topic may have at most (`num.partitions` and CreateTopics). */
export const TOPIC_PARTITIONS_MAX = 10_000;
/** Largest `min.insync.replicas`: more replicas than a topic can have are never in sync. */
export const MIN_INSYNC_REPLICAS_MAX = REPLICATION_FACTOR_MAX;

/**
 * A topic's configs, parsed and frozen. Every field is an override: absent means "the broker's
 * (or the controller's) default", which only the service that owns that default knows. Log
 * fields are those of {@link LogConfig}; units are in the names.
 */
export interface TopicConfig extends Partial<LogConfig> {
  /** `min.insync.replicas`: fewest in-sync replicas for an `acks=all` produce. */
  readonly minInsyncReplicas?: number;
  /** `unclean.leader.election.enable`: elect an out-of-sync replica when no ISR member lives. */
  readonly uncleanLeaderElectionEnable?: boolean;
  /** `cleanup.policy`: only `delete` is built (compaction is not). */
  readonly cleanupPolicy?: "delete";
  /** `compression.type`: only `producer` is built (batches are stored as produced). */
  readonly compressionType?: "producer";
  /** `message.timestamp.type`: only `CreateTime` is built (`LogAppendTime` is not). */
  readonly messageTimestampType?: "CreateTime";
}

type Field = keyof TopicConfig;

/** How one topic config's string value is parsed. */
type KeySpec =
  /** An integer; `unlimited`: Kafka's Long.MAX_VALUE means {@link UNLIMITED}. */
  | { kind: "int"; field: Field; min?: number; max?: number; unlimited?: boolean }
  | { kind: "bool"; field: Field }
  /** Only the value that is built is accepted; `why` says what is missing. */
  | { kind: "only"; field: Field; value: string; why: string };

/** Every accepted topic config, by Kafka name. */
export const TOPIC_CONFIG_KEYS: Readonly<Record<string, KeySpec>> = Object.freeze({
  "segment.bytes": { kind: "int", field: "segmentBytes" },
  "segment.ms": { kind: "int", field: "segmentMs" },
  "segment.jitter.ms": { kind: "int", field: "segmentJitterMs" },
  "index.interval.bytes": { kind: "int", field: "indexIntervalBytes" },
  "segment.index.bytes": { kind: "int", field: "segmentIndexBytes" },
  "retention.ms": { kind: "int", field: "retentionMs", unlimited: true },
  "retention.bytes": { kind: "int", field: "retentionBytes", unlimited: true },
  "flush.messages": { kind: "int", field: "flushMessages", unlimited: true },
  "flush.ms": { kind: "int", field: "flushMs", unlimited: true },
  "flush.strict": { kind: "bool", field: "flushStrict" },
  "max.message.bytes": { kind: "int", field: "maxMessageBytes" },
  "file.delete.delay.ms": { kind: "int", field: "fileDeleteDelayMs" },
  "min.insync.replicas": {
    kind: "int",
    field: "minInsyncReplicas",
    min: 1,
    max: MIN_INSYNC_REPLICAS_MAX,
  },
  "unclean.leader.election.enable": { kind: "bool", field: "uncleanLeaderElectionEnable" },
  "cleanup.policy": {
    kind: "only",
    field: "cleanupPolicy",
    value: "delete",
    why: "compaction is not built yet",
  },
  "compression.type": {
    kind: "only",
    field: "compressionType",
    value: "producer",
    why: "broker-side recompression is not built",
  },
  "message.timestamp.type": {
    kind: "only",
    field: "messageTimestampType",
    value: "CreateTime",
    why: "log-append time is not built yet",
  },
});

/** The {@link LogConfig} fields, which {@link topicLogConfig} lays over the broker's defaults. */
const LOG_FIELDS: readonly (keyof LogConfig)[] = Object.keys(
  DEFAULT_LOG_CONFIG,
) as (keyof LogConfig)[];

/** An empty topic config: every setting takes its default. */
export const EMPTY_TOPIC_CONFIG: TopicConfig = Object.freeze({});

function invalid(name: string, why: string): SamsaError {
  return new SamsaError(ErrorCode.INVALID_CONFIG, `invalid topic config ${name}: ${why}`);
}

function parseValue(name: string, spec: KeySpec, raw: string): number | boolean | string {
  const text = raw.trim();
  switch (spec.kind) {
    case "bool":
      if (text === "true" || text === "false") return text === "true";
      throw invalid(name, `"${raw}" is not true or false`);
    case "only":
      if (text === spec.value) return text;
      throw invalid(name, `"${raw}" is not supported (only "${spec.value}": ${spec.why})`);
    case "int": {
      if (!/^-?\d+$/.test(text)) throw invalid(name, `"${raw}" is not an integer`);
      const n = Number(text);
      // Kafka writes "no limit" as Long.MAX_VALUE, which is not a safe JS number.
      if (!Number.isSafeInteger(n) && n > 0 && spec.unlimited) return UNLIMITED;
      const min = spec.min ?? Number.MIN_SAFE_INTEGER;
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        throw invalid(name, `"${raw}" is out of range [${min}, ${max}]`);
      }
      return n;
    }
  }
}

/**
 * Parses Kafka-named string configs into a frozen {@link TopicConfig}. Throws INVALID_CONFIG
 * naming the key and the value for an unknown name, a value that does not parse or is out of
 * range, or a value of a feature not built yet. Log settings are checked as a whole over
 * Kafka's defaults (e.g. `segment.jitter.ms` below `segment.ms`).
 */
export function parseTopicConfig(props: Readonly<Record<string, string>>): TopicConfig {
  const out: Record<string, number | boolean | string> = {};
  for (const [name, raw] of Object.entries(props)) {
    const spec = TOPIC_CONFIG_KEYS[name];
    if (spec === undefined) throw invalid(name, `unknown topic config (value "${raw}")`);
    out[spec.field] = parseValue(name, spec, raw);
  }
  const config = out as TopicConfig;
  topicLogConfig(DEFAULT_LOG_CONFIG, config);
  return Object.freeze(config);
}

const parsed = new WeakMap<object, TopicConfig>();

/**
 * The parsed config of a topic record (anything carrying the wire's `config` string map),
 * parsed on first use and remembered for as long as the record lives: records are immutable,
 * so each version of a topic is parsed once. Throws as {@link parseTopicConfig} does.
 */
export function topicConfigOf(record: {
  readonly config: Readonly<Record<string, string>>;
}): TopicConfig {
  let config = parsed.get(record.config);
  if (config === undefined) {
    config = parseTopicConfig(record.config);
    parsed.set(record.config, config);
  }
  return config;
}

/**
 * A topic's log config: its overrides over `base` (the broker's `log.*` defaults, see
 * `brokerLogConfig`), validated and frozen. Throws INVALID_CONFIG naming the bad setting.
 */
export function topicLogConfig(base: LogConfig, topic: TopicConfig): LogConfig {
  const merged: Record<string, unknown> = { ...base };
  for (const field of LOG_FIELDS) {
    const value = topic[field];
    if (value !== undefined) merged[field] = value;
  }
  return validateLogConfig(merged as unknown as LogConfig, "topic config");
}

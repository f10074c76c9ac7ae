/**
 * The declarative schema of every configuration key of every Samsa service, with Kafka's dotted
 * names. Each key says its type, default, bounds, documentation and which services read it; the
 * loader (`loader.ts`) is generic over this table and `docs/configuration.md` mirrors it.
 */
import { keyRootDefault } from "../etcd/keys.js";
import { BATCH_BYTES_MAX } from "../record-batch/layout.js";
import {
  FILE_DELETE_DELAY_MS_DEFAULT,
  FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT,
  HOUR_MS,
  INDEX_INTERVAL_BYTES_DEFAULT,
  MAX_MESSAGE_BYTES_DEFAULT,
  MAX_MESSAGE_BYTES_MIN,
  PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT,
  PRODUCER_ID_EXPIRATION_MS_DEFAULT,
  RECOVERY_CONCURRENCY_DEFAULT,
  RETENTION_CHECK_INTERVAL_MS_DEFAULT,
  RETENTION_MS_DEFAULT,
  SEGMENT_BYTES_DEFAULT,
  SEGMENT_BYTES_MAX,
  SEGMENT_BYTES_MIN,
  SEGMENT_INDEX_BYTES_DEFAULT,
  SEGMENT_INDEX_BYTES_MIN,
  SEGMENT_MS_DEFAULT,
  UNLIMITED,
} from "./log-config.js";
import {
  MIN_INSYNC_REPLICAS_MAX,
  REPLICATION_FACTOR_MAX,
  TOPIC_PARTITIONS_MAX,
} from "./topic-config.js";
import { parseListenerList, PORT_MAX } from "./listeners.js";

export {
  formatHostPort,
  type HostPort,
  LOOPBACK_HOST,
  PORT_MAX,
  parseHostPort,
  WILDCARD_HOSTS,
} from "./listeners.js";

/** The services a key can apply to. */
export type ServiceName = "broker" | "controller" | "gateway";

/** Value types: `int` is 32-bit, `long` any safe integer, `list` comma-separated strings. */
export type KeyType = "int" | "long" | "bool" | "string" | "list" | "enum";

/** A parsed configuration value. */
export type ConfigValue = number | boolean | string | readonly string[];

/** One configuration key. */
export interface ConfigKey {
  /** Kafka's dotted name, e.g. `log.retention.ms`. */
  readonly name: string;
  readonly type: KeyType;
  /** Default value; absent means "unset" (or required, with {@link ConfigKey.required}). */
  readonly default?: ConfigValue;
  /** Defaults that differ per service (e.g. ports); win over {@link ConfigKey.default}. */
  readonly serviceDefaults?: Partial<Readonly<Record<ServiceName, ConfigValue>>>;
  /** The service refuses to start without a value. */
  readonly required?: boolean;
  /** Inclusive bounds of numeric types. */
  readonly min?: number;
  readonly max?: number;
  /** Allowed values of `enum` keys (matched case-insensitively). */
  readonly choices?: readonly string[];
  /** Numbers beyond the safe range (Kafka's Long.MAX_VALUE) mean {@link UNLIMITED}. */
  readonly maxMeansUnlimited?: boolean;
  /** Extra check on a parsed value: returns why it is invalid, or undefined. */
  readonly check?: (value: ConfigValue) => string | undefined;
  /** Other accepted names (Kafka synonyms), mapped to this key. */
  readonly aliases?: readonly string[];
  /**
   * Keys of one group express one setting in different units (Kafka's `log.retention.ms|minutes|
   * hours`). A source that sets any member replaces what lower-precedence sources set for the
   * group; within one source the most specific member wins.
   */
  readonly group?: string;
  /** Unit shown in the docs (`ms`, `bytes`, ...). */
  readonly unit?: string;
  /** One or two sentences for the docs. */
  readonly doc: string;
  readonly services: readonly ServiceName[];
}

/** Every service. */
export const ALL_SERVICES: readonly ServiceName[] = ["broker", "controller", "gateway"];
const BROKER: readonly ServiceName[] = ["broker"];
const CONTROLLER: readonly ServiceName[] = ["controller"];
const GATEWAY: readonly ServiceName[] = ["gateway"];

/** Largest 32-bit signed integer (Kafka's `int`). */
export const INT_MAX = 2 ** 31 - 1;
/** Default `log.retention.hours`: 168 (7 days), Kafka's. */
export const LOG_RETENTION_HOURS_DEFAULT = RETENTION_MS_DEFAULT / HOUR_MS;
/** Default `log.roll.hours`: 168 (7 days), Kafka's. */
export const LOG_ROLL_HOURS_DEFAULT = SEGMENT_MS_DEFAULT / HOUR_MS;
/**
 * Default `socket.request.max.bytes`: 100 MiB, Kafka's; also the gRPC server's receive limit
 * when it is given none.
 */
export const SOCKET_REQUEST_MAX_BYTES_DEFAULT = 100 * 1024 * 1024;
/**
 * Default `max.connections`: client connections (HTTP/2 sessions) one gRPC server holds at once.
 * Each costs a socket, HTTP/2 state and its flow-control windows; 4,096 is far above what a
 * cluster's own traffic needs (a few per broker, gateway and controller) and well below the
 * process's file descriptor limit.
 */
export const SERVER_CONNECTIONS_MAX_DEFAULT = 4_096;
/**
 * Default `max.concurrent.streams.per.connection`: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, the
 * calls (unary or streaming) one connection may have open at once.
 */
export const SERVER_CONCURRENT_STREAMS_PER_CONNECTION_MAX_DEFAULT = 2_000;
/**
 * Default `max.inflight.requests.per.connection`: unary calls one connection may have in flight
 * (Kafka's `queued.max.requests` is 500 for a whole broker; ours bounds each client so that one
 * cannot take the whole server's share). Above the 1,000 calls in flight that a client of the
 * gateway's Publish keeps (issue 10's workload), below the streams, so streams stay possible past it.
 */
export const SERVER_INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT = 1_500;
/** Default `max.inflight.requests`: unary calls one gRPC server has in flight, all connections. */
export const SERVER_INFLIGHT_REQUESTS_MAX_DEFAULT = 10_000;
/** Default `broker.session.timeout.ms` (the etcd lease TTL of a broker's registration). */
export const BROKER_SESSION_TIMEOUT_MS_DEFAULT = 6000;
/** Default `controlled.shutdown.timeout.ms`: how long a stopping broker waits for its leaderships to move. */
export const CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT = 30_000;
/** Default `leader.imbalance.check.interval.seconds`: Kafka's 300 (5 minutes). */
export const LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS_DEFAULT = 300;
/** Default `leader.imbalance.per.broker.percentage`: Kafka's 10. */
export const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_DEFAULT = 10;
/** Default `replica.lag.time.max.ms`: a follower not caught up this long leaves the ISR (Kafka's 30 s). */
export const REPLICA_LAG_TIME_MS_MAX_DEFAULT = 30_000;
/** Default `replica.fetch.wait.max.ms`: a follower's long-poll wait (Kafka's 500). */
export const REPLICA_FETCH_WAIT_MS_MAX_DEFAULT = 500;
/** Default `replica.fetch.max.bytes`: bytes per partition per replica fetch (Kafka's 1 MiB). */
export const REPLICA_FETCH_BYTES_MAX_DEFAULT = 1024 * 1024;
/** Default `replica.fetch.response.max.bytes`: bytes per replica fetch (Kafka's 10 MiB). */
export const REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT = 10 * 1024 * 1024;
/** Default `replica.fetch.backoff.ms`: a follower's pause after a failed fetch (Kafka's 1000). */
export const REPLICA_FETCH_BACKOFF_MS_DEFAULT = 1000;
/** Smallest `broker.session.timeout.ms`: etcd leases are granted in whole seconds. */
export const BROKER_SESSION_TIMEOUT_MS_MIN = 1000;
/** Default `group.consumer.session.timeout.ms`: a group member's session (Kafka's 45 s). */
export const GROUP_SESSION_TIMEOUT_MS_DEFAULT = 45_000;
/** Default `group.min.session.timeout.ms` (Kafka's 6 s). */
export const GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT = 6_000;
/** Default `group.max.session.timeout.ms` (Kafka's 30 min). */
export const GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT = 1_800_000;
/** Default `group.consumer.heartbeat.interval.ms` (Kafka's 5 s). */
export const GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT = 5_000;
/** Default `group.initial.rebalance.delay.ms` (Kafka's 3 s). */
export const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT = 3_000;
/** Default `gateway.session.timeout.ms`: the TTL of the lease a gateway holds its groups with. */
export const GATEWAY_SESSION_TIMEOUT_MS_DEFAULT = 6_000;
/**
 * Default `etcd.connection.timeout.ms`: how long a service waits at start-up for etcd's first
 * answer; also the etcd client's default (`connectEtcd`).
 */
export const ETCD_CONNECTION_TIMEOUT_MS_DEFAULT = 5000;
/** Default gRPC listener of each service. */
export const LISTENER_DEFAULTS: Readonly<Record<ServiceName, string>> = Object.freeze({
  broker: "0.0.0.0:9092",
  controller: "0.0.0.0:9093",
  gateway: "0.0.0.0:9094",
});
/** Default `/metrics` port of each service. */
export const METRICS_PORT_DEFAULTS: Readonly<Record<ServiceName, number>> = Object.freeze({
  broker: 9101,
  controller: 9102,
  gateway: 9103,
});

const listenerError = (v: ConfigValue) => {
  const parsed = parseListenerList(String(v));
  return typeof parsed === "string" ? parsed : undefined;
};
const optionalListenerError = (v: ConfigValue) =>
  String(v).trim() === "" ? undefined : listenerError(v);
const listenerNameError = (v: ConfigValue) =>
  /^([A-Za-z_][A-Za-z0-9_]*)?$/.test(String(v).trim()) ? undefined : "not a listener name";
const nonZero = (v: ConfigValue) => (v === 0 ? "0 is not allowed (use -1 or > 0)" : undefined);
const nonEmptyList = (v: ConfigValue) =>
  Array.isArray(v) && v.length === 0 ? "the list is empty" : undefined;
const clusterIdError = (v: ConfigValue) =>
  /^[A-Za-z0-9._-]+$/.test(String(v)) ? undefined : "use letters, digits, '.', '_' or '-'";
const prefixError = (v: ConfigValue) =>
  /^\/[^\s]*[^/\s]$/.test(String(v)) ? undefined : "must start with '/' and not end with '/'";

// biome-ignore format: one key per entry, kept compact so the schema reads as a table
const common: ConfigKey[] = [
  { name: "cluster.id", type: "string", default: "samsa", check: clusterIdError, services: ALL_SERVICES,
    doc: "Name of the cluster; metadata lives under `<etcd.prefix>/<cluster.id>/`." },
  { name: "etcd.endpoints", type: "list", default: ["http://127.0.0.1:2379"], check: nonEmptyList,
    services: ALL_SERVICES, doc: "etcd client URLs (Kafka: `zookeeper.connect`)." },
  { name: "etcd.connection.timeout.ms", type: "int", default: ETCD_CONNECTION_TIMEOUT_MS_DEFAULT,
    min: 1, unit: "ms", services: ALL_SERVICES,
    doc: "How long start-up waits for etcd's first answer." },
  { name: "etcd.prefix", type: "string", default: keyRootDefault, check: prefixError,
    services: ALL_SERVICES, doc: "Root of Samsa's keys in etcd." },
  { name: "log.level", type: "enum", default: "info", choices: ["error", "warn", "info", "debug"],
    services: ALL_SERVICES, doc: "Lowest level of the JSON log lines written." },
  { name: "metrics.host", type: "string", default: "0.0.0.0", services: ALL_SERVICES,
    doc: "Address the `/metrics` and `/healthz` HTTP server binds." },
  { name: "metrics.port", type: "int", serviceDefaults: METRICS_PORT_DEFAULTS, min: 0,
    max: PORT_MAX, services: ALL_SERVICES, doc: "Port of the metrics HTTP server; 0 = ephemeral." },
  { name: "listeners", type: "string", serviceDefaults: LISTENER_DEFAULTS, check: listenerError,
    services: ALL_SERVICES,
    doc: "Where the gRPC server binds: `host:port`, or named `NAME://host:port,...` (broker only: several)." },
  { name: "advertised.listeners", type: "string", default: "", check: optionalListenerError,
    services: ALL_SERVICES,
    doc: "What others dial, per listener name; default: each listener's address, 0.0.0.0 as 127.0.0.1." },
  { name: "max.connections", type: "int", default: SERVER_CONNECTIONS_MAX_DEFAULT, min: 1,
    services: ALL_SERVICES,
    doc: "Client connections one gRPC listener holds at once; more are closed at accept." },
  { name: "max.concurrent.streams.per.connection", type: "int", min: 1,
    default: SERVER_CONCURRENT_STREAMS_PER_CONNECTION_MAX_DEFAULT, services: ALL_SERVICES,
    doc: "Calls one connection may have open at once (HTTP/2 max concurrent streams)." },
  { name: "max.inflight.requests.per.connection", type: "int", min: 1,
    default: SERVER_INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT, services: ALL_SERVICES,
    doc: "Unary calls one connection may have in flight; more get TOO_MANY_REQUESTS." },
  { name: "max.inflight.requests", type: "int", min: 1,
    default: SERVER_INFLIGHT_REQUESTS_MAX_DEFAULT, services: ALL_SERVICES,
    doc: "Unary calls one gRPC listener has in flight, all connections; more get TOO_MANY_REQUESTS." },
];

// biome-ignore format: one key per entry, kept compact so the schema reads as a table
const topicDefaults: ConfigKey[] = [
  { name: "num.partitions", type: "int", default: 1, min: 1, max: TOPIC_PARTITIONS_MAX,
    services: CONTROLLER, doc: "Partitions of a topic created without a count." },
  { name: "default.replication.factor", type: "int", default: 1, min: 1,
    max: REPLICATION_FACTOR_MAX, services: CONTROLLER,
    doc: "Replicas of a topic created without a factor." },
  { name: "min.insync.replicas", type: "int", default: 1, min: 1, max: MIN_INSYNC_REPLICAS_MAX,
    services: BROKER, doc: "Fewest in-sync replicas for an `acks=all` produce (topic default)." },
  { name: "unclean.leader.election.enable", type: "bool", default: false, services: CONTROLLER,
    doc: "Elect an out-of-sync replica when no ISR member lives (topic default)." },
];

// biome-ignore format: one key per entry, kept compact so the schema reads as a table
const broker: ConfigKey[] = [
  { name: "broker.id", type: "int", required: true, min: 0, services: BROKER,
    doc: "Unique id of this broker." },
  { name: "broker.rack", type: "string", default: "", services: BROKER,
    doc: "Rack (or zone) of this broker, for replica placement; empty = none." },
  { name: "log.dirs", type: "list", group: "log.dirs", check: nonEmptyList, services: BROKER,
    doc: "Directories holding partition logs; wins over `log.dir`." },
  { name: "log.dir", type: "string", default: "/tmp/samsa-logs", group: "log.dirs",
    services: BROKER, doc: "The single log directory, when `log.dirs` is not set." },
  { name: "log.retention.ms", type: "long", min: -1, check: nonZero, maxMeansUnlimited: true,
    group: "log.retention", unit: "ms", services: BROKER,
    doc: "Delete segments older than this; -1 = forever. Wins over minutes and hours." },
  { name: "log.retention.minutes", type: "int", min: -1, check: nonZero, group: "log.retention",
    unit: "min", services: BROKER, doc: "Retention in minutes; wins over hours." },
  { name: "log.retention.hours", type: "int", default: LOG_RETENTION_HOURS_DEFAULT, min: -1,
    check: nonZero, group: "log.retention", unit: "h", services: BROKER,
    doc: "Retention in hours." },
  { name: "log.retention.bytes", type: "long", default: UNLIMITED, min: -1,
    maxMeansUnlimited: true, unit: "bytes", services: BROKER,
    doc: "Delete oldest segments while a partition is larger; -1 = no limit." },
  { name: "log.segment.bytes", type: "int", default: SEGMENT_BYTES_DEFAULT, min: SEGMENT_BYTES_MIN,
    max: SEGMENT_BYTES_MAX, unit: "bytes", services: BROKER, doc: "Size at which a segment rolls." },
  { name: "log.segment.ms", type: "long", min: 1, aliases: ["log.roll.ms"], group: "log.roll",
    unit: "ms", services: BROKER, doc: "Age at which a segment rolls; wins over `log.roll.hours`." },
  { name: "log.roll.hours", type: "int", default: LOG_ROLL_HOURS_DEFAULT, min: 1, group: "log.roll",
    unit: "h", services: BROKER, doc: "Age at which a segment rolls, in hours." },
  { name: "log.segment.jitter.ms", type: "long", default: 0, min: 0, unit: "ms",
    aliases: ["log.roll.jitter.ms"], services: BROKER,
    doc: "Random jitter subtracted from the roll age, so segments do not all roll at once." },
  { name: "log.index.interval.bytes", type: "int", default: INDEX_INTERVAL_BYTES_DEFAULT, min: 0,
    unit: "bytes", services: BROKER, doc: "Bytes of log between two offset-index entries." },
  { name: "log.index.size.max.bytes", type: "int", default: SEGMENT_INDEX_BYTES_DEFAULT,
    min: SEGMENT_INDEX_BYTES_MIN, max: SEGMENT_BYTES_MAX,
    unit: "bytes", services: BROKER, doc: "Size cap of one index file; a full index rolls." },
  { name: "log.segment.delete.delay.ms", type: "long", default: FILE_DELETE_DELAY_MS_DEFAULT,
    min: 0, unit: "ms", services: BROKER, doc: "Delay before a deleted segment's files go." },
  { name: "log.retention.check.interval.ms", type: "long", min: 1, unit: "ms", services: BROKER,
    default: RETENTION_CHECK_INTERVAL_MS_DEFAULT, doc: "How often retention is enforced." },
  { name: "log.flush.interval.messages", type: "long", default: UNLIMITED, min: -1,
    check: nonZero, maxMeansUnlimited: true, services: BROKER,
    doc: "fsync after this many messages; -1 = leave it to time and the OS." },
  { name: "log.flush.interval.ms", type: "long", default: UNLIMITED, min: -1,
    maxMeansUnlimited: true, unit: "ms", services: BROKER,
    doc: "fsync when the last flush is this old; -1 = never on a timer." },
  { name: "log.flush.strict", type: "bool", default: false, services: BROKER,
    doc: "fsync before an append is acknowledged (group commit)." },
  { name: "log.flush.scheduler.interval.ms", type: "long", min: 1, unit: "ms", services: BROKER,
    default: FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT, doc: "How often `flush.ms` is checked." },
  { name: "producer.id.expiration.ms", type: "long", min: 1, unit: "ms", services: BROKER,
    default: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
    doc: "An idempotent producer's state in a partition goes this long after its last batch." },
  { name: "producer.id.expiration.check.interval.ms", type: "long", min: 1, unit: "ms",
    services: BROKER, default: PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT,
    doc: "How often expired producer ids are removed." },
  { name: "num.recovery.threads.per.data.dir", type: "int", default: RECOVERY_CONCURRENCY_DEFAULT,
    min: 1, services: BROKER, doc: "Logs recovered in parallel at start-up." },
  { name: "message.max.bytes", type: "int", default: MAX_MESSAGE_BYTES_DEFAULT,
    min: MAX_MESSAGE_BYTES_MIN, max: BATCH_BYTES_MAX, unit: "bytes", services: BROKER,
    doc: "Largest record batch accepted (topic default of `max.message.bytes`)." },
  { name: "socket.request.max.bytes", type: "int", default: SOCKET_REQUEST_MAX_BYTES_DEFAULT,
    min: 1, unit: "bytes", services: BROKER, doc: "Largest gRPC message received." },
  { name: "controlled.shutdown.enable", type: "bool", default: true, services: BROKER,
    doc: "On SIGTERM, move this broker's leaderships to other in-sync replicas before stopping." },
  { name: "controlled.shutdown.timeout.ms", type: "long",
    default: CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT, min: 0, unit: "ms", services: BROKER,
    doc: "Longest wait of a controlled shutdown for the leaderships to move." },
  { name: "replica.lag.time.max.ms", type: "long", default: REPLICA_LAG_TIME_MS_MAX_DEFAULT,
    min: 100, unit: "ms", services: BROKER,
    doc: "A follower not caught up with the leader this long leaves the ISR." },
  { name: "replica.fetch.wait.max.ms", type: "int", default: REPLICA_FETCH_WAIT_MS_MAX_DEFAULT,
    min: 1, max: 30_000, unit: "ms", services: BROKER, doc: "A follower's long-poll wait." },
  { name: "replica.fetch.max.bytes", type: "int", default: REPLICA_FETCH_BYTES_MAX_DEFAULT,
    min: 1024, unit: "bytes", services: BROKER, doc: "Bytes per partition per replica fetch." },
  { name: "replica.fetch.response.max.bytes", type: "int",
    default: REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT, min: 1024, unit: "bytes", services: BROKER,
    doc: "Bytes per replica fetch answer." },
  { name: "replica.fetch.backoff.ms", type: "int", default: REPLICA_FETCH_BACKOFF_MS_DEFAULT,
    min: 0, unit: "ms", services: BROKER, doc: "A follower's pause after a failed fetch." },
  { name: "broker.session.timeout.ms", type: "long", default: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
    min: BROKER_SESSION_TIMEOUT_MS_MIN, unit: "ms", services: BROKER,
    doc: "TTL of the broker's etcd lease: silent this long = dead." },
  { name: "inter.broker.listener.name", type: "string", default: "", check: listenerNameError,
    services: BROKER,
    doc: "The listener the cluster's own services dial (registered as the broker's address); empty = the first." },
];

// biome-ignore format: one key per entry, kept compact so the schema reads as a table
const controller: ConfigKey[] = [
  { name: "controller.id", type: "string", default: "", services: CONTROLLER,
    doc: "Id in the controller election; empty = `<hostname>-<pid>`." },
  { name: "auto.leader.rebalance.enable", type: "bool", default: true, services: CONTROLLER,
    doc: "Give leaderships back to preferred replicas (alive and in the ISR) periodically." },
  { name: "leader.imbalance.check.interval.seconds", type: "int",
    default: LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS_DEFAULT, min: 1, unit: "s",
    services: CONTROLLER, doc: "How often the leader imbalance is checked." },
  { name: "leader.imbalance.per.broker.percentage", type: "int",
    default: LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_DEFAULT, min: 0, max: 100, unit: "%",
    services: CONTROLLER,
    doc: "Rebalance a broker's partitions when more than this share of them is not led by it." },
];

// biome-ignore format: one key per entry, kept compact so the schema reads as a table
const gateway: ConfigKey[] = [
  { name: "gateway.id", type: "string", default: "", services: GATEWAY,
    doc: "Id of this gateway; empty = `<hostname>-<pid>`." },
  { name: "gateway.session.timeout.ms", type: "long", default: GATEWAY_SESSION_TIMEOUT_MS_DEFAULT,
    min: BROKER_SESSION_TIMEOUT_MS_MIN, unit: "ms", services: GATEWAY,
    doc: "TTL of the etcd lease holding the groups this gateway coordinates: a dead gateway's groups move after this." },
  { name: "group.consumer.session.timeout.ms", type: "int", default: GROUP_SESSION_TIMEOUT_MS_DEFAULT,
    min: 1, unit: "ms", services: GATEWAY,
    doc: "Session of a group member that asks for none: no heartbeat this long removes it." },
  { name: "group.min.session.timeout.ms", type: "int", default: GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT,
    min: 1, unit: "ms", services: GATEWAY, doc: "Shortest session a member may ask for." },
  { name: "group.max.session.timeout.ms", type: "int", default: GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT,
    min: 1, unit: "ms", services: GATEWAY, doc: "Longest session a member may ask for." },
  { name: "group.consumer.heartbeat.interval.ms", type: "int",
    default: GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT, min: 1, unit: "ms", services: GATEWAY,
    doc: "How often members heartbeat (at most a third of their session)." },
  { name: "group.initial.rebalance.delay.ms", type: "int",
    default: GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT, min: 0, unit: "ms", services: GATEWAY,
    doc: "How long an empty group waits for more members before its first assignment." },
];

/** Every key of every service. */
export const SAMSA_SCHEMA: readonly ConfigKey[] = Object.freeze([
  ...common,
  ...topicDefaults,
  ...broker,
  ...controller,
  ...gateway,
]);

/**
 * Kafka keys of features not built yet: refused from every source (rather than accepted and
 * ignored) with what is missing. A key moves into the schema when the code that reads it lands.
 */
export const NOT_BUILT_KEYS: Readonly<Record<string, string>> = Object.freeze({
  "delete.topic.enable": "topic deletion cannot be switched off yet",
});

/** Names people bring from Kafka that Samsa spells differently: a hint for the error. */
export const RENAMED_KEYS: Readonly<Record<string, string>> = Object.freeze({
  "zookeeper.connect": "etcd.endpoints",
  "zookeeper.connection.timeout.ms": "etcd.connection.timeout.ms",
  "zookeeper.session.timeout.ms": "broker.session.timeout.ms",
  "node.id": "broker.id",
});

/**
 * The typed, frozen configuration of each service, built from the generic loader's values:
 * listeners resolved by name to bind and advertised addresses, Kafka's unit variants (`log.retention.hours|minutes|ms`)
 * resolved to one number, ids defaulted. Constructors take these objects; nothing else reads
 * the environment.
 */
import { hostname } from "node:os";
import { isSamsaError } from "../errors.js";
import type { LogLevel } from "../logger.js";
import { configError, type LoadedConfig, loadConfig } from "./loader.js";
import { HOUR_MS, type LogConfig, UNLIMITED, validateLogConfig } from "./log-config.js";
import { type Listener, ListenerConfigError, resolveListeners } from "./listeners.js";
import { type HostPort, SAMSA_SCHEMA, type ServiceName } from "./schema.js";

/** Milliseconds in a minute, for Kafka's `*.minutes` keys. */
const MINUTE_MS = 60_000;

/** Environment as `process.env` has it. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Keys every service reads (see docs/configuration.md for each one's default). */
export interface CommonConfig {
  /** `cluster.id`. Default "samsa". */
  readonly clusterId: string;
  /** `etcd.endpoints`. Default ["http://127.0.0.1:2379"]. */
  readonly etcdEndpoints: readonly string[];
  /** `etcd.connection.timeout.ms`: start-up's wait for etcd's first answer. Default 5000. */
  readonly etcdConnectionTimeoutMs: number;
  /** `etcd.prefix`. Default "/samsa". */
  readonly etcdPrefix: string;
  /** `<etcd.prefix>/<cluster.id>/`: the root of this cluster's keys in etcd. */
  readonly etcdClusterPrefix: string;
  /** `log.level`. Default "info". */
  readonly logLevel: LogLevel;
  /** `metrics.host`. Default "0.0.0.0". */
  readonly metricsHost: string;
  /** `metrics.port`; 0 = ephemeral. Default 9101 / 9102 / 9103 (broker / controller / gateway). */
  readonly metricsPort: number;
  /**
   * `listeners` with `advertised.listeners`, named (see listeners.ts); one gRPC server each.
   * Default one listener, PLAINTEXT, on 0.0.0.0:9092 / 9093 / 9094. Only a broker has several.
   */
  readonly listeners: readonly Listener[];
  /**
   * `inter.broker.listener.name`: the listener the cluster's services dial (a broker registers
   * its address as the broker's); the only listener of a controller or gateway.
   */
  readonly interBrokerListenerName: string;
  /** Where the {@link interBrokerListenerName} listener binds. */
  readonly listener: HostPort;
  /**
   * What others dial for the {@link interBrokerListenerName} listener. Default its bind address
   * with a wildcard host replaced by 127.0.0.1. Port 0 means "the port actually bound", which
   * the service fills in at start.
   */
  readonly advertisedListener: HostPort;
  /** `max.connections`, `max.concurrent.streams.per.connection`, `max.inflight.requests*`. */
  readonly serverLimits: ServerLimits;
}

/** The bounds of one gRPC server (each listener has its own), from the `max.*` keys. */
export interface ServerLimits {
  /** `max.connections`. Default 4096. */
  readonly connectionsMax: number;
  /** `max.concurrent.streams.per.connection`. Default 2000. */
  readonly concurrentStreamsPerConnectionMax: number;
  /** `max.inflight.requests.per.connection`. Default 1,500. */
  readonly inflightRequestsPerConnectionMax: number;
  /** `max.inflight.requests`. Default 10000. */
  readonly inflightRequestsMax: number;
}

/** Topic defaults the controller applies: to creation requests, and in leader elections. */
export interface TopicDefaults {
  /** `num.partitions`. Default 1. */
  readonly numPartitions: number;
  /** `default.replication.factor`. Default 1. */
  readonly defaultReplicationFactor: number;
  /** `unclean.leader.election.enable`, for topics without their own. Default false. */
  readonly uncleanLeaderElectionEnable: boolean;
}

/** The broker's configuration. Log fields are the defaults topics override. */
export interface BrokerConfig extends CommonConfig {
  /** `min.insync.replicas`, for topics without their own. Default 1. */
  readonly minInsyncReplicas: number;
  /** `broker.id` (required, ≥ 0). */
  readonly brokerId: number;
  /** `broker.rack`; undefined when empty. */
  readonly brokerRack: string | undefined;
  /** `log.dirs`, else [`log.dir`]. Default ["/tmp/samsa-logs"]. */
  readonly logDirs: readonly string[];
  /** `log.retention.ms`, else minutes, else hours, in ms; -1 = forever. Default 7 days. */
  readonly logRetentionMs: number;
  /** `log.retention.bytes`; -1 = no limit. */
  readonly logRetentionBytes: number;
  /** `log.segment.bytes`. Default 1 GiB. */
  readonly logSegmentBytes: number;
  /** `log.segment.ms` (`log.roll.ms`), else `log.roll.hours`, in ms. Default 7 days. */
  readonly logSegmentMs: number;
  /** `log.segment.jitter.ms` (`log.roll.jitter.ms`). Default 0. */
  readonly logSegmentJitterMs: number;
  /** `log.index.interval.bytes`. Default 4096. */
  readonly logIndexIntervalBytes: number;
  /** `log.index.size.max.bytes`. Default 10 MiB. */
  readonly logIndexSizeMaxBytes: number;
  /** `log.segment.delete.delay.ms`. Default 60000. */
  readonly logSegmentDeleteDelayMs: number;
  /** `log.retention.check.interval.ms`. Default 300000. */
  readonly logRetentionCheckIntervalMs: number;
  /** `log.flush.interval.messages`; -1 = none. */
  readonly logFlushIntervalMessages: number;
  /** `log.flush.interval.ms`; -1 = none. */
  readonly logFlushIntervalMs: number;
  /** `log.flush.strict`. Default false. */
  readonly logFlushStrict: boolean;
  /** `log.flush.scheduler.interval.ms`. Default 1000. */
  readonly logFlushSchedulerIntervalMs: number;
  /** `producer.id.expiration.ms`. Default 86400000 (1 day). */
  readonly producerIdExpirationMs: number;
  /** `producer.id.expiration.check.interval.ms`. Default 600000. */
  readonly producerIdExpirationCheckIntervalMs: number;
  /** `num.recovery.threads.per.data.dir`. Default 2. */
  readonly numRecoveryThreadsPerDataDir: number;
  /** `message.max.bytes`. Default 1048588. */
  readonly messageMaxBytes: number;
  /** `socket.request.max.bytes`. Default 104857600. */
  readonly socketRequestMaxBytes: number;
  /** `broker.session.timeout.ms`: the etcd lease TTL. Default 6000. */
  readonly brokerSessionTimeoutMs: number;
  /** `controlled.shutdown.enable`. Default true. */
  readonly controlledShutdownEnable: boolean;
  /** `controlled.shutdown.timeout.ms`. Default 30000. */
  readonly controlledShutdownTimeoutMs: number;
  /** `replica.lag.time.max.ms`. Default 30000. */
  readonly replicaLagTimeMsMax: number;
  /** `replica.fetch.wait.max.ms`. Default 500. */
  readonly replicaFetchWaitMsMax: number;
  /** `replica.fetch.max.bytes`. Default 1 MiB. */
  readonly replicaFetchBytesMax: number;
  /** `replica.fetch.response.max.bytes`. Default 10 MiB. */
  readonly replicaFetchResponseBytesMax: number;
  /** `replica.fetch.backoff.ms`. Default 1000. */
  readonly replicaFetchBackoffMs: number;
}

/** The controller's configuration. */
export interface ControllerConfig extends CommonConfig, TopicDefaults {
  /** `controller.id`. Default `<hostname>-<pid>`. */
  readonly controllerId: string;
  /** `auto.leader.rebalance.enable`. Default true. */
  readonly autoLeaderRebalanceEnable: boolean;
  /** `leader.imbalance.check.interval.seconds`, in ms. Default 300000. */
  readonly leaderImbalanceCheckIntervalMs: number;
  /** `leader.imbalance.per.broker.percentage`, 0..100. Default 10. */
  readonly leaderImbalancePerBrokerPercentage: number;
}

/** The gateway's configuration. */
export interface GatewayConfig extends CommonConfig {
  /** `gateway.id`. Default `<hostname>-<pid>`. */
  readonly gatewayId: string;
  /** `gateway.session.timeout.ms`: TTL of the lease holding this gateway's groups. Default 6000. */
  readonly gatewaySessionTimeoutMs: number;
  /** `group.consumer.session.timeout.ms`. Default 45000. */
  readonly groupSessionTimeoutMs: number;
  /** `group.min.session.timeout.ms`. Default 6000. */
  readonly groupMinSessionTimeoutMs: number;
  /** `group.max.session.timeout.ms`. Default 1800000. */
  readonly groupMaxSessionTimeoutMs: number;
  /** `group.consumer.heartbeat.interval.ms`. Default 5000. */
  readonly groupHeartbeatIntervalMs: number;
  /** `group.initial.rebalance.delay.ms`. Default 3000. */
  readonly groupInitialRebalanceDelayMs: number;
}

/**
 * Loads the broker's config from `argv` (`process.argv.slice(2)`), `env` (default
 * `process.env`) and the file they name. Throws `INVALID_CONFIG` naming the bad key.
 */
export function loadBrokerConfig(argv?: readonly string[], env?: Env, cwd?: string): BrokerConfig {
  const v = load("broker", argv, env, cwd);
  const logDirs = (v.logDirs as readonly string[] | undefined) ?? [v.logDir as string];
  if (new Set(logDirs).size !== logDirs.length) throw configError("log.dirs", "duplicate entry");
  const config: BrokerConfig = {
    ...common(v, "broker"),
    minInsyncReplicas: v.minInsyncReplicas as number,
    brokerId: v.brokerId as number,
    brokerRack: (v.brokerRack as string) === "" ? undefined : (v.brokerRack as string),
    logDirs: Object.freeze([...logDirs]),
    // Kafka's precedence: ms, then minutes, then hours (which always has its default).
    logRetentionMs:
      toMs(v.logRetentionMs, 1) ??
      toMs(v.logRetentionMinutes, MINUTE_MS) ??
      toMs(v.logRetentionHours, HOUR_MS)!,
    logRetentionBytes: v.logRetentionBytes as number,
    logSegmentBytes: v.logSegmentBytes as number,
    logSegmentMs: toMs(v.logSegmentMs, 1) ?? toMs(v.logRollHours, HOUR_MS)!,
    logSegmentJitterMs: v.logSegmentJitterMs as number,
    logIndexIntervalBytes: v.logIndexIntervalBytes as number,
    logIndexSizeMaxBytes: v.logIndexSizeMaxBytes as number,
    logSegmentDeleteDelayMs: v.logSegmentDeleteDelayMs as number,
    logRetentionCheckIntervalMs: v.logRetentionCheckIntervalMs as number,
    logFlushIntervalMessages: v.logFlushIntervalMessages as number,
    logFlushIntervalMs: v.logFlushIntervalMs as number,
    logFlushStrict: v.logFlushStrict as boolean,
    logFlushSchedulerIntervalMs: v.logFlushSchedulerIntervalMs as number,
    producerIdExpirationMs: v.producerIdExpirationMs as number,
    producerIdExpirationCheckIntervalMs: v.producerIdExpirationCheckIntervalMs as number,
    numRecoveryThreadsPerDataDir: v.numRecoveryThreadsPerDataDir as number,
    messageMaxBytes: v.messageMaxBytes as number,
    socketRequestMaxBytes: v.socketRequestMaxBytes as number,
    brokerSessionTimeoutMs: v.brokerSessionTimeoutMs as number,
    controlledShutdownEnable: v.controlledShutdownEnable as boolean,
    controlledShutdownTimeoutMs: v.controlledShutdownTimeoutMs as number,
    replicaLagTimeMsMax: v.replicaLagTimeMaxMs as number,
    replicaFetchWaitMsMax: v.replicaFetchWaitMaxMs as number,
    replicaFetchBytesMax: v.replicaFetchMaxBytes as number,
    replicaFetchResponseBytesMax: v.replicaFetchResponseMaxBytes as number,
    replicaFetchBackoffMs: v.replicaFetchBackoffMs as number,
  };
  try {
    brokerLogConfig(config);
  } catch (err) {
    if (!isSamsaError(err)) throw err;
    throw configError("log.*", err.message);
  }
  return Object.freeze(config);
}

/** Loads the controller's config; see {@link loadBrokerConfig}. */
export function loadControllerConfig(
  argv?: readonly string[],
  env?: Env,
  cwd?: string,
): ControllerConfig {
  const v = load("controller", argv, env, cwd);
  return Object.freeze({
    ...common(v, "controller"),
    ...topicDefaults(v),
    controllerId: (v.controllerId as string) || defaultId(),
    autoLeaderRebalanceEnable: v.autoLeaderRebalanceEnable as boolean,
    leaderImbalanceCheckIntervalMs: (v.leaderImbalanceCheckIntervalSeconds as number) * 1000,
    leaderImbalancePerBrokerPercentage: v.leaderImbalancePerBrokerPercentage as number,
  });
}

/** Loads the gateway's config; see {@link loadBrokerConfig}. */
export function loadGatewayConfig(
  argv?: readonly string[],
  env?: Env,
  cwd?: string,
): GatewayConfig {
  const v = load("gateway", argv, env, cwd);
  const min = v.groupMinSessionTimeoutMs as number;
  const max = v.groupMaxSessionTimeoutMs as number;
  if (min > max) throw configError("group.min.session.timeout.ms", `larger than the max ${max}`);
  return Object.freeze({
    ...common(v, "gateway"),
    gatewayId: (v.gatewayId as string) || defaultId(),
    gatewaySessionTimeoutMs: v.gatewaySessionTimeoutMs as number,
    // The default session is kept within the bounds, so a member asking for none is accepted.
    groupSessionTimeoutMs: Math.min(Math.max(v.groupConsumerSessionTimeoutMs as number, min), max),
    groupMinSessionTimeoutMs: min,
    groupMaxSessionTimeoutMs: max,
    groupHeartbeatIntervalMs: v.groupConsumerHeartbeatIntervalMs as number,
    groupInitialRebalanceDelayMs: v.groupInitialRebalanceDelayMs as number,
  });
}

/**
 * The broker's `log.*` defaults as a per-topic {@link LogConfig} (what a topic without overrides
 * gets), validated and frozen.
 */
export function brokerLogConfig(c: BrokerConfig): LogConfig {
  return validateLogConfig({
    segmentBytes: c.logSegmentBytes,
    segmentMs: c.logSegmentMs,
    segmentJitterMs: c.logSegmentJitterMs,
    indexIntervalBytes: c.logIndexIntervalBytes,
    segmentIndexBytes: c.logIndexSizeMaxBytes,
    retentionMs: c.logRetentionMs,
    retentionBytes: c.logRetentionBytes,
    flushMessages: c.logFlushIntervalMessages,
    flushMs: c.logFlushIntervalMs,
    flushStrict: c.logFlushStrict,
    maxMessageBytes: c.messageMaxBytes,
    fileDeleteDelayMs: c.logSegmentDeleteDelayMs,
  });
}

function load(service: ServiceName, argv?: readonly string[], env?: Env, cwd?: string) {
  return loadConfig(SAMSA_SCHEMA, {
    service,
    ...(argv === undefined ? {} : { argv }),
    ...(env === undefined ? {} : { env }),
    ...(cwd === undefined ? {} : { cwd }),
  });
}

function common(v: LoadedConfig, service: ServiceName): CommonConfig {
  const { listeners, interBrokerListenerName } = listenersOf(v, service);
  const primary = listeners.find((l) => l.name === interBrokerListenerName)!;
  return {
    clusterId: v.clusterId as string,
    etcdEndpoints: v.etcdEndpoints as readonly string[],
    etcdConnectionTimeoutMs: v.etcdConnectionTimeoutMs as number,
    etcdPrefix: v.etcdPrefix as string,
    etcdClusterPrefix: `${v.etcdPrefix as string}/${v.clusterId as string}/`,
    logLevel: v.logLevel as LogLevel,
    metricsHost: v.metricsHost as string,
    metricsPort: v.metricsPort as number,
    listeners,
    interBrokerListenerName,
    listener: primary.bind,
    advertisedListener: primary.advertised,
    serverLimits: Object.freeze({
      connectionsMax: v.maxConnections as number,
      concurrentStreamsPerConnectionMax: v.maxConcurrentStreamsPerConnection as number,
      inflightRequestsPerConnectionMax: v.maxInflightRequestsPerConnection as number,
      inflightRequestsMax: v.maxInflightRequests as number,
    }),
  };
}

function topicDefaults(v: LoadedConfig): TopicDefaults {
  return {
    numPartitions: v.numPartitions as number,
    defaultReplicationFactor: v.defaultReplicationFactor as number,
    uncleanLeaderElectionEnable: v.uncleanLeaderElectionEnable as boolean,
  };
}

/** `listeners`, `advertised.listeners` and `inter.broker.listener.name` resolved (listeners.ts). */
function listenersOf(v: LoadedConfig, service: ServiceName) {
  try {
    const resolved = resolveListeners({
      listeners: v.listeners as string,
      advertisedListeners: v.advertisedListeners as string,
      interBrokerListenerName: (v.interBrokerListenerName as string | undefined) ?? "",
    });
    if (service !== "broker" && resolved.listeners.length > 1) {
      throw new ListenerConfigError("listeners", `a ${service} has one listener`);
    }
    return resolved;
  } catch (err) {
    if (err instanceof ListenerConfigError) throw configError(err.key, err.reason);
    throw err;
  }
}

/** A duration key in `unit` ms as ms, keeping -1 (unlimited); undefined when unset. */
function toMs(value: unknown, unitMs: number): number | undefined {
  if (value === undefined) return undefined;
  const n = value as number;
  return n === UNLIMITED ? UNLIMITED : n * unitMs;
}

function defaultId(): string {
  return `${hostname()}-${process.pid}`;
}

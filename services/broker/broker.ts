/**
 * A broker: storage (log manager), metadata (etcd mirror), partition hosting (replica manager),
 * the BrokerService over gRPC (one server per listener, listener-servers.ts), registration in
 * etcd with every listener's address, and /metrics. `start()` brings them up in dependency order
 * and registers last, so the controller only sees a broker that can serve; `stop()` deregisters
 * first, so leadership moves before the broker goes.
 */
import type { Etcd3 } from "etcd3";
import type { Registry } from "prom-client";
import { type BrokerConfig, brokerLogConfig, formatHostPort } from "../shared/config/index.js";
import { BrokerRegistrar } from "../shared/etcd/registration.js";
import { unary } from "../shared/grpc/client.js";
import { ConnectionPool } from "../shared/grpc/connection-pool.js";
import { brokerLifecycleService, brokerService, replicationService } from "../shared/grpc/proto.js";
import { backoffMs, Deadline, sleep } from "../shared/retry.js";
import { createGrpcServer, type GrpcServer } from "../shared/grpc/server.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { runShutdownSteps } from "../shared/run-service.js";
import { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { createRegistry, type MetricsServer, startMetricsServer } from "../shared/metrics.js";
import { connectClusterEtcd } from "../shared/service-setup.js";
import { BrokerMetrics } from "./broker-metrics.js";
import {
  type BrokerServiceDeps,
  brokerServiceHandlers,
  replicationServiceHandlers,
} from "./broker-service.js";
import { describeListeners, type ListenerServers, listenOnEvery } from "./listener-servers.js";
import { LogManager } from "./log/log-manager.js";
import { controllerAllocator, controllerPool, ProducerIdManager } from "./producer-ids.js";
import { ReplicaManager } from "./replica-manager.js";
import { ReplicationMetrics } from "./replication/replication-metrics.js";

/** Deadline of one ControlledShutdown call, ms. */
export const CONTROLLED_SHUTDOWN_CALL_MS = 5_000;
/** Pause between two looks at whether the moved leaderships were applied here, ms. */
export const CONTROLLED_SHUTDOWN_POLL_MS = 20;

/** Options beyond the config (tests inject a logger). */
export interface BrokerOptions {
  logger?: Logger;
}

export class Broker {
  private readonly logger: Logger;
  private readonly registry: Registry;
  private etcd: Etcd3 | undefined;
  private logManager: LogManager | undefined;
  private metadata: ClusterMetadata | undefined;
  private replicas: ReplicaManager | undefined;
  private listening: ListenerServers | undefined;
  private registrar: BrokerRegistrar | undefined;
  private metricsServer: MetricsServer | undefined;
  private stopping: Promise<void> | undefined;
  private readonly controllerPool = controllerPool();

  constructor(
    private readonly config: BrokerConfig,
    options: BrokerOptions = {},
  ) {
    this.logger =
      options.logger ??
      createLogger({
        service: "broker",
        level: config.logLevel,
        fields: { brokerId: config.brokerId },
      });
    this.registry = createRegistry("broker", { id: String(config.brokerId) });
  }

  /** The gRPC port bound by the inter-broker listener (useful with port 0). */
  get port(): number {
    return this.listenerPort(this.config.interBrokerListenerName);
  }

  /** The gRPC port bound by the listener `name`; 0 before start or for an unknown name. */
  listenerPort(name: string): number {
    return this.listening?.boundPorts.get(name.toUpperCase()) ?? 0;
  }

  /** The metrics port bound. */
  get metricsPort(): number {
    return this.metricsServer?.port ?? 0;
  }

  /** Starts every part; throws (after cleaning up) if any fails. */
  async start(): Promise<void> {
    const c = this.config;
    try {
      const { etcd, keys } = await connectClusterEtcd(c, this.registry);
      this.etcd = etcd;
      const baseLogConfig = brokerLogConfig(c);
      this.logManager = new LogManager({
        logDirs: c.logDirs,
        defaultConfig: baseLogConfig,
        logger: this.logger,
        retentionCheckIntervalMs: c.logRetentionCheckIntervalMs,
        flushSchedulerIntervalMs: c.logFlushSchedulerIntervalMs,
        recoveryConcurrency: c.numRecoveryThreadsPerDataDir,
        producerIdExpirationMs: c.producerIdExpirationMs,
        producerIdExpirationCheckIntervalMs: c.producerIdExpirationCheckIntervalMs,
      });
      await this.logManager.start();
      this.metadata = new ClusterMetadata(this.etcd, keys, this.logger);
      await this.metadata.start();
      const logManager = this.logManager;
      const metrics = new BrokerMetrics(
        this.registry,
        () => this.replicas,
        () => logManager.logDirStates(),
      );
      const replicationMetrics = new ReplicationMetrics(this.registry, () => this.replicas);
      this.replicas = new ReplicaManager({
        brokerId: c.brokerId,
        logManager: this.logManager,
        metadata: this.metadata,
        baseLogConfig,
        logger: this.logger,
        etcd,
        keys,
        brokerEpoch: () => this.registrar?.current?.brokerEpoch ?? -1,
        minInsyncReplicas: c.minInsyncReplicas,
        replicaLagTimeMsMax: c.replicaLagTimeMsMax,
        fetcher: {
          fetchWaitMsMax: c.replicaFetchWaitMsMax,
          fetchPartitionBytesMax: c.replicaFetchBytesMax,
          fetchResponseBytesMax: c.replicaFetchResponseBytesMax,
          fetchBackoffMs: c.replicaFetchBackoffMs,
        },
        events: replicationMetrics.events,
        onReplicaFetched: (bytes) => replicationMetrics.recordReplicaFetch(bytes),
      });
      await this.replicas.start();
      this.logManager.onDirOffline(() => this.onLogDirOffline());
      const metadata = this.metadata;
      const replicas = this.replicas;
      const serviceLogger = this.logger.child({ component: "broker-service" });
      const serviceDeps: BrokerServiceDeps = {
        brokerId: c.brokerId,
        clusterId: c.clusterId,
        replicas,
        metadata,
        metrics,
        logger: serviceLogger,
        producerIds: new ProducerIdManager(
          controllerAllocator(
            {
              brokerId: c.brokerId,
              brokerEpoch: () => this.registrar?.current?.brokerEpoch ?? -1,
              metadata,
            },
            this.controllerPool,
          ),
          this.logger.child({ component: "producer-ids" }),
        ),
        controllerId: () => (metadata.activeController()?.id ?? "").toString(),
      };
      const createServer = (listenerName: string): GrpcServer => {
        const server = createGrpcServer({
          registry: this.registry,
          logger: this.logger,
          socketRequestMaxBytes: c.socketRequestMaxBytes,
          limits: c.serverLimits,
        });
        const deps = { ...serviceDeps, listenerName };
        server.addService(brokerService, brokerServiceHandlers(deps));
        // Followers fetch on the inter-broker listener only; clients never see the service.
        if (listenerName === c.interBrokerListenerName) {
          server.addService(replicationService, replicationServiceHandlers(deps));
        }
        return server;
      };
      this.listening = await listenOnEvery(c.listeners, createServer);
      const advertised = this.listening.advertised[c.interBrokerListenerName]!;
      this.metricsServer = await startMetricsServer({
        port: c.metricsPort,
        host: c.metricsHost,
        registry: this.registry,
        health: () => ({
          ok: this.registrar?.current !== undefined,
          detail: { brokerId: c.brokerId },
        }),
      });
      this.registrar = new BrokerRegistrar({
        client: this.etcd,
        keys,
        endpoint: {
          id: c.brokerId,
          host: advertised.host,
          port: advertised.port,
          rack: c.brokerRack,
          metricsPort: this.metricsServer.port,
          listeners: this.listening.advertised,
          offlinePartitions: this.logManager.offlineDirs().flatMap((d) => d.partitions),
        },
        ttlSeconds: Math.max(1, Math.round(c.brokerSessionTimeoutMs / 1000)),
        logger: this.logger,
      });
      await this.registrar.start();
      this.logger.info("broker started", {
        port: this.port,
        advertised: formatHostPort(advertised),
        listeners: describeListeners(c.listeners, this.listening, formatHostPort),
        metricsPort: this.metricsServer.port,
        logDirs: c.logDirs,
      });
    } catch (err) {
      this.logger.error("broker failed to start", { error: (err as Error).message });
      await this.stop();
      throw err;
    }
  }

  /**
   * A log dir went offline (disk full, I/O error): its partitions stop leading and following
   * here, and the registration lists them as offline, so that the controller moves their
   * leadership to other in-sync replicas and drops this broker from their ISR. The registration
   * update is retried until it lands or the broker stops (etcd may be away).
   */
  private onLogDirOffline(): void {
    const partitions = this.logManager!.offlineDirs().flatMap((d) => d.partitions);
    this.replicas?.takeOffline(partitions);
    void (async () => {
      for (let attempt = 0; !this.stopping; attempt++) {
        try {
          await this.registrar?.setOfflinePartitions(partitions);
          return;
        } catch (err) {
          this.logger.warn("cannot publish the offline partitions; retrying", {
            error: (err as Error).message,
          });
          await sleep(backoffMs(attempt));
        }
      }
    })();
  }

  /** Deregisters, finishes in-flight requests, flushes and closes everything. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  /**
   * Kafka's controlled shutdown: asks the active controller to move this broker's leaderships to
   * other in-sync replicas, until none is left or `controlled.shutdown.timeout.ms` passed, then
   * waits (bounded by the same deadline) until the replica manager has applied the moves.
   */
  private async controlledShutdown(): Promise<void> {
    const c = this.config;
    const registration = this.registrar?.current;
    const { metadata, replicas } = this;
    if (!c.controlledShutdownEnable || !registration || !metadata || !replicas) return;
    const leading = () => replicas.hosted().filter((p) => p.isLeader).length;
    if (leading() === 0) {
      await replicas.stopFetching();
      return;
    }
    const deadline = new Deadline(c.controlledShutdownTimeoutMs);
    const pool = new ConnectionPool(brokerLifecycleService.Client);
    try {
      // Partitions with no other live in-sync replica cannot move; asking again only helps while
      // the answer improves (a follower catching up, a lost CAS race), so it stops when it does not.
      let remaining = -1;
      for (let attempt = 0; remaining !== 0 && !deadline.expired; attempt++) {
        const previous = remaining;
        const active = metadata.activeController();
        try {
          if (active === undefined) throw new Error("no active controller");
          const request = { brokerId: c.brokerId, brokerEpoch: String(registration.brokerEpoch) };
          const deadlineMs = deadline.requestMs(CONTROLLED_SHUTDOWN_CALL_MS);
          const res = await unary(pool.get(active.address), "ControlledShutdown", request, {
            deadlineMs,
          });
          remaining = res.partitionsRemaining;
          if (previous >= 0 && remaining >= previous) break;
        } catch (err) {
          this.logger.warn("controlled shutdown call failed", { error: (err as Error).message });
        }
        if (remaining !== 0) await sleep(backoffMs(attempt), undefined, deadline);
      }
      // The moves reach this broker through its etcd watch.
      const unmovable = Math.max(remaining, 0);
      while (leading() > unmovable && !deadline.expired) {
        await sleep(CONTROLLED_SHUTDOWN_POLL_MS, undefined, deadline);
      }
      await replicas.stopFetching();
      this.logger.info("controlled shutdown done", { stillLeading: leading(), unmovable });
    } finally {
      pool.close();
    }
  }

  private async shutdown(): Promise<void> {
    await runShutdownSteps(this.logger, [
      ["controlledShutdown", () => this.controlledShutdown()],
      ["deregister", () => this.registrar?.stop()],
      [
        "grpc",
        async () => void (await Promise.all(this.listening?.servers.map((s) => s.stop()) ?? [])),
      ],
      ["replicas", () => this.replicas?.stop()],
      ["logs", () => this.logManager?.stop()],
      ["controllerPool", async () => this.controllerPool.close()],
      ["metadata", () => this.metadata?.close()],
      ["metrics", () => this.metricsServer?.close()],
      ["etcd", async () => this.etcd?.close()],
    ]);
    this.logger.info("broker stopped");
  }
}

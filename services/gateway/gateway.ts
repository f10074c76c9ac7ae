/**
 * A gateway: one client endpoint in front of the brokers. It keeps no state of its own: it
 * mirrors the cluster metadata from etcd (ClusterMetadata), keeps one channel per live broker
 * (BrokerPool), and serves the GatewayService, the BrokerService (so Kafka-style clients can
 * bootstrap from it: broker-face.ts), the AdminService (passed to the active controller), health
 * and reflection over gRPC, routing each partition to its current leader. `/metrics` and `/healthz` are served over HTTP.
 * `start()` brings the parts up in dependency order; `stop()` stops serving first (in-flight
 * calls finish, streams end with a retriable LEADER_NOT_AVAILABLE so clients move to another
 * gateway), then closes the broker channels and the etcd mirror.
 */
import type { Etcd3 } from "etcd3";
import type { Registry } from "prom-client";
import { Partitioner } from "../shared/partitioner.js";
import { formatHostPort, type GatewayConfig } from "../shared/config/index.js";
import { adminService, brokerService, gatewayService, groupService } from "../shared/grpc/proto.js";
import { createGrpcServer, type GrpcServer } from "../shared/grpc/server.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { runShutdownSteps } from "../shared/run-service.js";
import { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { createRegistry, type MetricsServer, startMetricsServer } from "../shared/metrics.js";
import { advertisedAddress, connectClusterEtcd } from "../shared/service-setup.js";
import { adminProxyHandlers } from "./admin-proxy.js";
import { brokerFaceHandlers } from "./broker-face.js";
import { BrokerPool } from "./broker-pool.js";
import { GATEWAY_BROKER_FLOW_CONTROL_WINDOW_BYTES } from "./consume.js";
import { GatewayMetrics } from "./gateway-metrics.js";
import { gatewayServiceHandlers } from "./gateway-service.js";
import { type Groups, startGroups } from "./groups/groups.js";
import { MetadataWatch } from "./metadata-watch.js";
import { GatewayProducers } from "./idempotence.js";
import { initProducerId } from "./producer-id.js";
import { Router } from "./router.js";
import { Routing } from "./routing.js";

/** Options beyond the config (tests inject a logger). */
export interface GatewayOptions {
  logger?: Logger;
}

export class Gateway {
  private readonly logger: Logger;
  private readonly registry: Registry;
  private etcd: Etcd3 | undefined;
  private metadata: ClusterMetadata | undefined;
  private closeAdminProxy: (() => void) | undefined;
  private watch: MetadataWatch | undefined;
  private pool: BrokerPool | undefined;
  private groups: Groups | undefined;
  private server: GrpcServer | undefined;
  private metricsServer: MetricsServer | undefined;
  private stopping: Promise<void> | undefined;
  private boundPort = 0;

  constructor(
    private readonly config: GatewayConfig,
    options: GatewayOptions = {},
  ) {
    this.logger =
      options.logger ??
      createLogger({
        service: "gateway",
        level: config.logLevel,
        fields: { gatewayId: config.gatewayId },
      });
    this.registry = createRegistry("gateway", { id: config.gatewayId });
  }

  /** The gRPC port bound (useful with port 0). */
  get port(): number {
    return this.boundPort;
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
      this.metadata = new ClusterMetadata(this.etcd, keys, this.logger);
      await this.metadata.start();
      this.watch = new MetadataWatch(this.metadata);
      // A small window: the gateway holds it for every partition of a stream whose client stalls.
      this.pool = new BrokerPool(this.metadata, {
        flowControlWindowBytes: GATEWAY_BROKER_FLOW_CONTROL_WINDOW_BYTES,
      });
      const metrics = new GatewayMetrics(this.registry);
      const routing = new Routing({
        metadata: this.metadata,
        pool: this.pool,
        watch: this.watch,
        metrics,
        logger: this.logger.child({ component: "router" }),
      });
      this.server = createGrpcServer({
        registry: this.registry,
        logger: this.logger,
        limits: c.serverLimits,
      });
      const producers = new GatewayProducers(async (deadline, signal) =>
        BigInt((await initProducerId(routing, deadline, signal)).producerId),
      );
      metrics.watchProducerIds(() => producers.activeProducerIds);
      const serviceDeps = {
        routing,
        router: new Router(routing, c.clusterId),
        partitioner: new Partitioner(),
        producers,
      };
      this.server.addService(gatewayService, gatewayServiceHandlers(serviceDeps));
      this.server.addService(
        brokerService,
        brokerFaceHandlers(serviceDeps, () => advertisedAddress(c, this.boundPort)),
      );
      const adminProxy = adminProxyHandlers(this.metadata);
      this.closeAdminProxy = adminProxy.close;
      this.server.addService(adminService, adminProxy.handlers);
      this.groups = await startGroups({
        etcd,
        keys,
        config: c,
        metadata: this.metadata,
        router: serviceDeps.router,
        routing,
        registry: this.registry,
        logger: this.logger,
        selfAddress: () => formatHostPort(advertisedAddress(c, this.boundPort)),
      });
      this.server.addService(groupService, this.groups.handlers);
      this.boundPort = await this.server.listen(c.listener.host, c.listener.port);
      const metadata = this.metadata;
      this.metricsServer = await startMetricsServer({
        port: c.metricsPort,
        host: c.metricsHost,
        registry: this.registry,
        health: () => ({
          ok: this.stopping === undefined,
          detail: { gatewayId: c.gatewayId, brokers: metadata.brokers().length },
        }),
      });
      this.logger.info("gateway started", {
        port: this.boundPort,
        advertised: formatHostPort(advertisedAddress(c, this.boundPort)),
        metricsPort: this.metricsServer.port,
      });
    } catch (err) {
      this.logger.error("gateway failed to start", { error: (err as Error).message });
      await this.stop();
      throw err;
    }
  }

  /** Stops serving (in-flight calls finish), then closes every connection. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await runShutdownSteps(this.logger, [
      ["grpc", () => this.server?.stop()],
      ["groups", () => this.groups?.stop()],
      ["brokers", async () => this.pool?.close()],
      ["watch", async () => this.watch?.close()],
      ["closeAdminProxy", () => this.closeAdminProxy?.()],
      ["metadata", () => this.metadata?.close()],
      ["metrics", () => this.metricsServer?.close()],
      ["etcd", async () => this.etcd?.close()],
    ]);
    this.logger.info("gateway stopped");
  }
}

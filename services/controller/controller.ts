/**
 * A controller: campaigns in etcd; while active it creates and deletes topics and elects
 * partition leaders when brokers come and go; standby it forwards writes to the active one.
 * It keeps no state of its own: everything is read from and written to etcd.
 */
import type { Etcd3 } from "etcd3";
import { Counter, Gauge, type Registry } from "prom-client";
import type { ControllerConfig } from "../shared/config/index.js";
import { ControllerElection } from "../shared/etcd/election.js";
import { type EtcdKeys, isReassigning, noLeader } from "../shared/etcd/keys.js";
import { formatHostPort, topicConfigOf } from "../shared/config/index.js";
import { adminService, brokerLifecycleService } from "../shared/grpc/proto.js";
import { createGrpcServer, type GrpcServer } from "../shared/grpc/server.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { runShutdownSteps } from "../shared/run-service.js";
import { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { createRegistry, type MetricsServer, startMetricsServer } from "../shared/metrics.js";
import { advertisedAddress, connectClusterEtcd } from "../shared/service-setup.js";
import { adminServiceHandlers } from "./admin-service.js";
import { LeaderBalancer } from "./leader-balancer.js";
import { brokerLifecycleHandlers } from "./controlled-shutdown.js";
import { LeaderElector } from "./leader-elector.js";
import { notControllerError } from "./not-controller.js";
import { PartitionReassigner } from "./partition-reassigner.js";

/** Options beyond the config (tests inject a logger). */
export interface ControllerOptions {
  logger?: Logger;
}

export class Controller {
  private readonly logger: Logger;
  private readonly registry: Registry;
  private etcd: Etcd3 | undefined;
  private metadata: ClusterMetadata | undefined;
  private election: ControllerElection | undefined;
  private server: GrpcServer | undefined;
  private metricsServer: MetricsServer | undefined;
  private closeAdmin: (() => void) | undefined;
  private balancer: LeaderBalancer | undefined;
  private reassigner: PartitionReassigner | undefined;
  private stopping: Promise<void> | undefined;
  private boundPort = 0;

  constructor(
    private readonly config: ControllerConfig,
    options: ControllerOptions = {},
  ) {
    this.logger =
      options.logger ??
      createLogger({
        service: "controller",
        level: config.logLevel,
        fields: { controllerId: config.controllerId },
      });
    this.registry = createRegistry("controller", { id: config.controllerId });
  }

  /** The gRPC port bound. */
  get port(): number {
    return this.boundPort;
  }

  /** Whether this controller is the active one. */
  get isActive(): boolean {
    return this.election?.leadership !== undefined;
  }

  /** Starts serving and campaigning. */
  async start(): Promise<void> {
    const c = this.config;
    try {
      const { etcd, keys } = await connectClusterEtcd(c, this.registry);
      this.etcd = etcd;
      this.metadata = new ClusterMetadata(this.etcd, keys, this.logger);
      await this.metadata.start();
      this.server = createGrpcServer({
        registry: this.registry,
        logger: this.logger,
        limits: c.serverLimits,
      });
      const self = this;
      const admin = adminServiceHandlers({
        clusterId: c.clusterId,
        controllerId: c.controllerId,
        client: this.etcd,
        keys,
        metadata: this.metadata,
        get election() {
          return self.election!;
        },
        get elections() {
          return self.balancer!;
        },
        get reassignments() {
          return self.reassigner!;
        },
        defaults: {
          numPartitions: c.numPartitions,
          defaultReplicationFactor: c.defaultReplicationFactor,
        },
        logger: this.logger.child({ component: "admin-service" }),
      });
      this.closeAdmin = admin.close;
      this.server.addService(adminService, admin.handlers);
      this.server.addService(
        brokerLifecycleService,
        brokerLifecycleHandlers({
          client: this.etcd,
          keys,
          metadata: this.metadata,
          leadership: () => self.election?.leadership,
          notController: () => notControllerError(self.election?.leader()),
          logger: this.logger.child({ component: "controlled-shutdown" }),
        }),
      );
      this.boundPort = await this.server.listen(c.listener.host, c.listener.port);
      const advertised = advertisedAddress(c, this.boundPort);
      this.election = new ControllerElection({
        client: this.etcd,
        keys,
        candidate: { id: c.controllerId, address: formatHostPort(advertised) },
        logger: this.logger,
      });
      this.wireElection(this.etcd, keys, this.metadata, this.election);
      this.metricsServer = await startMetricsServer({
        port: c.metricsPort,
        host: c.metricsHost,
        registry: this.registry,
        health: () => ({ ok: true, detail: { active: this.isActive } }),
      });
      await this.election.start();
      this.logger.info("controller started", {
        port: this.boundPort,
        address: formatHostPort(advertised),
        metricsPort: this.metricsServer.port,
      });
    } catch (err) {
      this.logger.error("controller failed to start", { error: (err as Error).message });
      await this.stop();
      throw err;
    }
  }

  private wireElection(
    etcd: Etcd3,
    keys: EtcdKeys,
    metadata: ClusterMetadata,
    election: ControllerElection,
  ): LeaderElector {
    const c = this.config;
    const elections = new Counter({
      name: "samsa_controller_elections_total",
      help: "Times this controller became active.",
      registers: [this.registry],
    });
    const leaderChanges = new Counter({
      name: "samsa_controller_leader_changes_total",
      help: "Partition leader changes made by this controller.",
      registers: [this.registry],
    });
    new Gauge({
      name: "samsa_controller_active",
      help: "1 while this controller is the active one.",
      registers: [this.registry],
      collect: function () {
        this.set(election.leadership ? 1 : 0);
      },
    });
    new Gauge({
      name: "samsa_controller_offline_partitions",
      help: "Partitions without a live leader (as seen by this controller).",
      registers: [this.registry],
      collect: function () {
        const live = new Set(metadata.brokers().map((b) => b.id));
        this.set(
          metadata
            .partitions()
            .filter((p) => p.state.leader === noLeader || !live.has(p.state.leader)).length,
        );
      },
    });
    const elector = new LeaderElector({
      client: etcd,
      keys,
      metadata,
      logger: this.logger,
      uncleanAllowed: (topic) => {
        const record = metadata.topic(topic);
        const own = record && topicConfigOf(record).uncleanLeaderElectionEnable;
        return own ?? c.uncleanLeaderElectionEnable;
      },
      onLeaderChange: () => leaderChanges.inc(),
    });
    this.balancer = new LeaderBalancer({
      client: etcd,
      keys,
      metadata,
      logger: this.logger,
      leadership: () => election.leadership,
      autoRebalance: c.autoLeaderRebalanceEnable,
      checkIntervalMs: c.leaderImbalanceCheckIntervalMs,
      imbalancePercentage: c.leaderImbalancePerBrokerPercentage,
      onLeaderChange: () => leaderChanges.inc(),
    });
    this.balancer.start();
    this.reassigner = new PartitionReassigner({
      client: etcd,
      keys,
      metadata,
      logger: this.logger,
      leadership: () => election.leadership,
      onLeaderChange: () => leaderChanges.inc(),
    });
    this.reassigner.start();
    new Gauge({
      name: "samsa_controller_reassigning_partitions",
      help: "Partitions with a reassignment in progress (as seen by this controller).",
      registers: [this.registry],
      collect: function () {
        this.set(metadata.partitions().filter((p) => isReassigning(p.state)).length);
      },
    });
    election.onElected((leadership) => {
      elections.inc();
      this.logger.info("became the active controller", { epoch: leadership.epoch });
      elector.trigger(leadership);
      this.reassigner?.trigger();
    });
    election.onDeposed((_l, reason) =>
      this.logger.warn("no longer the active controller", { reason }),
    );
    metadata.onChange((change) => {
      const leadership = election.leadership;
      if (
        leadership &&
        (change.kind === "broker" || (change.kind === "partition" && change.event.type === "put"))
      ) {
        elector.trigger(leadership);
      }
    });
    return elector;
  }

  /** Resigns, stops serving and closes. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await runShutdownSteps(this.logger, [
      ["balancer", () => this.balancer?.stop()],
      ["reassigner", () => this.reassigner?.stop()],
      ["election", () => this.election?.close()],
      ["grpc", () => this.server?.stop()],
      ["closeAdmin", () => this.closeAdmin?.()],
      ["metadata", () => this.metadata?.close()],
      ["metrics", () => this.metricsServer?.close()],
      ["etcd", async () => this.etcd?.close()],
    ]);
    this.logger.info("controller stopped");
  }
}

/**
 * Builds a gateway's consumer group coordinator (docs/groups.md) from its parts: the lease and
 * ownership store, the offset store, the manager of owned groups, the metrics and the
 * GroupService handlers. gateway.ts calls {@link startGroups} once the router exists and
 * {@link Groups.stop} while shutting down (after the gRPC server stopped, so the lease is
 * revoked last and the groups move at once).
 */
import type { Etcd3 } from "etcd3";
import type { Registry } from "prom-client";
import type { GatewayConfig } from "../../shared/config/index.js";
import type { EtcdKeys } from "../../shared/etcd/keys.js";
import type { GroupServiceHandlers } from "../../shared/generated/samsa/v1/GroupService.js";
import { ConnectionPool } from "../../shared/grpc/connection-pool.js";
import type { ServiceHandlers } from "../../shared/grpc/handlers.js";
import { groupService } from "../../shared/grpc/proto.js";
import type { Logger } from "../../shared/logger.js";
import type { ClusterMetadata } from "../../shared/metadata/cluster-metadata.js";
import type { Router } from "../router.js";
import type { Routing } from "../routing.js";
import { tpKey } from "./assignment.js";
import { groupPartitions, protoGroupState } from "./group-admin.js";
import { GroupManager } from "./group-manager.js";
import { GroupMetrics, type LagSample } from "./group-metrics.js";
import { GroupCalls } from "./group-calls.js";
import { groupServiceHandlers } from "./group-service.js";
import { GroupStore } from "./group-store.js";
import { GroupState } from "../../shared/generated/samsa/v1/GroupState.js";
import { lagOf, logOffsets } from "./lag.js";
import { OffsetStore } from "./offset-store.js";

/** GroupState names without their prefix, for the states metric. */
const STATE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(GroupState).map(([name, value]) => [
    value as number,
    name.replace("GROUP_STATE_", ""),
  ]),
);

/** What {@link startGroups} needs. */
export interface GroupsOptions {
  readonly etcd: Etcd3;
  readonly keys: EtcdKeys;
  readonly config: GatewayConfig;
  readonly metadata: ClusterMetadata;
  readonly router: Router;
  readonly routing: Routing;
  readonly registry: Registry;
  readonly logger: Logger;
  /** This gateway's advertised `host:port` (known once it listens). */
  readonly selfAddress: () => string;
}

/** A running coordinator. */
export interface Groups {
  readonly handlers: ServiceHandlers<GroupServiceHandlers>;
  /** Stops ticking, closes the peer channels and revokes the lease. */
  stop(): Promise<void>;
}

/** Starts the coordinator: grants the lease; groups are claimed as calls arrive. */
export async function startGroups(o: GroupsOptions): Promise<Groups> {
  const c = o.config;
  const logger = o.logger.child({ component: "groups" });
  const store = new GroupStore({
    etcd: o.etcd,
    keys: o.keys,
    self: () => ({ gatewayId: c.gatewayId, address: o.selfAddress() }),
    ttlMs: c.gatewaySessionTimeoutMs,
    logger,
  });
  await store.start();
  const metrics = new GroupMetrics(o.registry);
  const manager = new GroupManager({
    store,
    offsets: new OffsetStore(o.etcd, o.keys, store, logger),
    metadata: o.metadata,
    settings: {
      sessionTimeoutMsDefault: c.groupSessionTimeoutMs,
      sessionTimeoutMsMin: c.groupMinSessionTimeoutMs,
      sessionTimeoutMsMax: c.groupMaxSessionTimeoutMs,
      heartbeatIntervalMs: c.groupHeartbeatIntervalMs,
      initialRebalanceDelayMs: c.groupInitialRebalanceDelayMs,
    },
    metrics,
    logger,
  });
  manager.start();
  metrics.setSource({
    groups: () =>
      manager.owned().map((rt) => ({
        group: rt.group,
        members: rt.coordinator.memberCount,
        state: STATE_NAMES.get(protoGroupState(rt.coordinator) as number) ?? "UNKNOWN",
      })),
    lags: async () => {
      const samples: LagSample[] = [];
      for (const rt of manager.owned()) {
        const parts = groupPartitions(manager, rt);
        const ends = await logOffsets(o.router, parts, "latest", AbortSignal.timeout(5_000)).catch(
          () => new Map(),
        );
        for (const p of parts) {
          const committed = rt.offsets.get(tpKey(p.topic, p.partition))?.offset ?? -1;
          const lag = lagOf(committed, ends.get(tpKey(p.topic, p.partition))?.offset ?? -1, 0);
          if (lag >= 0) samples.push({ group: rt.group, ...p, lag });
        }
      }
      return samples;
    },
  });
  const peers = new ConnectionPool(groupService.Client);
  const calls = new GroupCalls({
    manager,
    router: o.router,
    routing: o.routing,
    peers,
    selfAddress: o.selfAddress,
  });
  return {
    handlers: groupServiceHandlers(calls),
    async stop() {
      manager.stop();
      peers.close();
      await store.stop();
    },
  };
}

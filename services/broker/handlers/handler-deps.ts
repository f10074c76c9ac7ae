/** What the BrokerService handlers need from the broker. */
import { SamsaError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { ClusterMetadata } from "../../shared/metadata/cluster-metadata.js";
import type { BrokerMetrics } from "../broker-metrics.js";
import type { ProducerIdManager } from "../producer-ids.js";
import type { ReplicaManager } from "../replica-manager.js";

/** The broker's parts the handlers call into. */
export interface BrokerServiceDeps {
  readonly brokerId: number;
  readonly clusterId: string;
  readonly replicas: ReplicaManager;
  readonly metadata: ClusterMetadata;
  readonly metrics: BrokerMetrics;
  readonly logger: Logger;
  /** InitProducerId's ids (blocks from the active controller). */
  readonly producerIds: ProducerIdManager;
  /** The active controller's id, "" when none is known. */
  readonly controllerId: () => string;
  /**
   * The listener these handlers serve (one gRPC server per listener): Metadata gives brokers'
   * addresses on it. Undefined: their registered addresses.
   */
  readonly listenerName?: string;
}

/** {@link BrokerServiceDeps} plus the helpers every handler module shares. */
export interface HandlerDeps extends BrokerServiceDeps {
  /** Logs an error that is not a SamsaError (a bug) with its partition; SamsaErrors are answers. */
  readonly logUnexpected: (err: unknown, topic: string, partition: number) => void;
}

/** Adds the shared helpers to the broker's deps. */
export function handlerDeps(deps: BrokerServiceDeps): HandlerDeps {
  const logUnexpected = (err: unknown, topic: string, partition: number) => {
    if (!(err instanceof SamsaError))
      deps.logger.error("unexpected error", { topic, partition, error: String(err) });
  };
  return { ...deps, logUnexpected };
}

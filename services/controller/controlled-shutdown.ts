/**
 * Controlled shutdown (Kafka's): a broker stopping with SIGTERM first asks the active controller
 * to move its leaderships. For every partition it leads, the first other live ISR member in
 * replica order becomes leader (leader epoch + 1) and the broker leaves that ISR, so producers
 * move to the new leader at once and acks=all never waits for the broker that goes. Partitions
 * with no other live ISR member stay where they are (moving them would make them offline); the
 * answer counts them and the broker asks again, within its deadline. Every write is a
 * compare-and-swap fenced by the controller epoch, like the leader elector's.
 */
import type { Etcd3 } from "etcd3";
import { casPartitionState, readPartitionState } from "../shared/etcd/cas.js";
import type { ControllerLeadership } from "../shared/etcd/election.js";
import type { EtcdKeys, PartitionState } from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { AllocateProducerIdsRequest__Output } from "../shared/generated/samsa/internal/v1/AllocateProducerIdsRequest.js";
import type { ControlledShutdownRequest__Output } from "../shared/generated/samsa/internal/v1/ControlledShutdownRequest.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import type { BrokerLifecycleServiceHandlers } from "../shared/grpc/proto.js";
import type { Logger } from "../shared/logger.js";
import { allocateProducerIdBlock } from "./producer-id-allocator.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { parseInt64 } from "../shared/request-parsing.js";

/** CAS attempts per partition in one request before it counts as remaining. */
export const SHUTDOWN_CAS_ATTEMPTS_MAX = 5;

/**
 * The state that moves `brokerId`'s leadership away, or undefined when it does not lead or no
 * other live ISR member can take over.
 */
export function shutdownMove(
  state: PartitionState,
  brokerId: number,
  live: ReadonlySet<number>,
): PartitionState | undefined {
  if (state.leader !== brokerId) return undefined;
  const successor = state.replicas.find(
    (r) => r !== brokerId && live.has(r) && state.isr.includes(r),
  );
  if (successor === undefined) return undefined;
  return {
    ...state,
    leader: successor,
    leaderEpoch: state.leaderEpoch + 1,
    isr: state.isr.filter((r) => r !== brokerId),
    partitionEpoch: state.partitionEpoch + 1,
  };
}

/** What the handler needs. */
export interface ControlledShutdownDeps {
  readonly client: Etcd3;
  readonly keys: EtcdKeys;
  readonly metadata: ClusterMetadata;
  /** This controller's leadership while active. */
  readonly leadership: () => ControllerLeadership | undefined;
  /** The NOT_CONTROLLER error naming the active controller. */
  readonly notController: () => SamsaError;
  readonly logger: Logger;
}

/** Moves one partition's leadership away; true when the broker no longer leads it. */
async function moveOne(
  deps: ControlledShutdownDeps,
  leadership: ControllerLeadership,
  topic: string,
  partition: number,
  brokerId: number,
): Promise<boolean> {
  const { client, keys, metadata } = deps;
  for (let attempt = 0; attempt < SHUTDOWN_CAS_ATTEMPTS_MAX; attempt++) {
    const current = await readPartitionState(client, keys, topic, partition);
    if (current === undefined || current.state.leader !== brokerId) return true;
    const live = new Set(metadata.brokers().map((b) => b.id));
    const next = shutdownMove(current.state, brokerId, live);
    if (next === undefined) return false;
    const res = await casPartitionState(client, keys, {
      topic,
      partition,
      expected: current,
      next,
      fence: leadership,
    });
    if (res.won) {
      deps.logger.info("moved leadership off a broker shutting down", {
        topic,
        partition,
        from: brokerId,
        leader: next.leader,
        leaderEpoch: next.leaderEpoch,
        isr: next.isr,
      });
      return true;
    }
  }
  return false;
}

/**
 * The active controller's leadership, for a call of a registered broker's current incarnation.
 * @throws NOT_CONTROLLER, INVALID_REQUEST (unknown broker), STALE_BROKER_EPOCH
 */
function checkCaller(
  deps: ControlledShutdownDeps,
  request: { brokerId: number; brokerEpoch: string },
): ControllerLeadership {
  const leadership = deps.leadership();
  if (leadership === undefined) throw deps.notController();
  const registration = deps.metadata.broker(request.brokerId);
  if (registration === undefined) {
    throw new SamsaError(ErrorCode.INVALID_REQUEST, `broker ${request.brokerId} is not registered`);
  }
  if (parseInt64(request.brokerEpoch, "broker_epoch") < registration.brokerEpoch) {
    throw new SamsaError(
      ErrorCode.STALE_BROKER_EPOCH,
      `broker ${request.brokerId} epoch ${request.brokerEpoch} is older than ${registration.brokerEpoch}`,
    );
  }
  return leadership;
}

/** Answers AllocateProducerIds: a block of ids from the etcd counter (producer-id-allocator.ts). */
export async function allocateProducerIds(
  deps: ControlledShutdownDeps,
  request: AllocateProducerIdsRequest__Output,
): Promise<{ producerIdStart: string; producerIdCount: number }> {
  const leadership = checkCaller(deps, request);
  const block = await allocateProducerIdBlock(deps.client, deps.keys, leadership);
  deps.logger.info("allocated a producer id block", {
    brokerId: request.brokerId,
    start: block.start,
    count: block.count,
  });
  return { producerIdStart: String(block.start), producerIdCount: block.count };
}

/** Answers ControlledShutdown. */
export async function controlledShutdown(
  deps: ControlledShutdownDeps,
  request: ControlledShutdownRequest__Output,
): Promise<{ partitionsRemaining: number }> {
  const leadership = checkCaller(deps, request);
  let remaining = 0;
  for (const { topic, partition, state } of deps.metadata.partitions()) {
    if (state.leader !== request.brokerId) continue;
    if (!(await moveOne(deps, leadership, topic, partition, request.brokerId))) remaining++;
  }
  deps.logger.info("controlled shutdown", {
    brokerId: request.brokerId,
    partitionsRemaining: remaining,
  });
  return { partitionsRemaining: remaining };
}

/** The BrokerLifecycleService handlers. */
export function brokerLifecycleHandlers(
  deps: ControlledShutdownDeps,
): ServiceHandlers<BrokerLifecycleServiceHandlers> {
  return {
    ControlledShutdown: (request) => controlledShutdown(deps, request),
    AllocateProducerIds: (request) => allocateProducerIds(deps, request),
  };
}

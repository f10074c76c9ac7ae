/**
 * The BrokerService gRPC handlers: thin translations between requests and the replica manager,
 * one module per RPC under handlers/. Record data stays opaque bytes end to end; per-partition
 * failures become per-partition error codes, call-level failures are thrown and mapped to gRPC
 * status once, in the server wrapper (services/shared/grpc/handlers.ts).
 */
import type { BrokerServiceHandlers } from "../shared/generated/samsa/v1/BrokerService.js";
import type { OffsetsForLeaderEpochRequest__Output } from "../shared/generated/samsa/v1/OffsetsForLeaderEpochRequest.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import type { ReplicationServiceHandlers } from "../shared/grpc/proto.js";
import { describeMetadata } from "../shared/metadata/metadata-answer.js";
import { NO_OFFSET } from "../shared/protocol-limits.js";
import {
  checkPartitionCount,
  checkTopicPartition,
  errorResult,
  NO_ERROR,
} from "../shared/request-parsing.js";
import { fetch } from "./handlers/fetch.js";
import { type BrokerServiceDeps, type HandlerDeps, handlerDeps } from "./handlers/handler-deps.js";
import { listOffsets } from "./handlers/list-offsets.js";
import { produce } from "./handlers/produce.js";
import { replicaFetch } from "./handlers/replica-fetch.js";
import { UNDEFINED_EPOCH } from "./log/leader-epoch-cache.js";
import { subscribe } from "./subscribe.js";

export type { BrokerServiceDeps } from "./handlers/handler-deps.js";

/** OffsetsForLeaderEpoch: the end offset of a leader epoch in this replica's log. */
function offsetsForLeaderEpoch(deps: HandlerDeps, request: OffsetsForLeaderEpochRequest__Output) {
  checkPartitionCount(request.partitions.length);
  const partitions = request.partitions.map((q) => {
    const base = { topic: q.topic, partition: q.partition };
    try {
      checkTopicPartition(q.topic, q.partition);
      const part = deps.replicas.partitionFor(
        q.topic,
        q.partition,
        true,
        q.currentLeaderEpoch ?? -1,
      );
      const r = part.log.endOffsetForEpoch(q.leaderEpoch);
      return { ...base, errorCode: NO_ERROR, leaderEpoch: r.epoch, endOffset: String(r.endOffset) };
    } catch (err) {
      return {
        ...base,
        ...errorResult(err),
        leaderEpoch: UNDEFINED_EPOCH,
        endOffset: String(NO_OFFSET),
      };
    }
  });
  return { partitions };
}

/** Builds the ReplicationService handlers (the leader side of replica fetching). */
export function replicationServiceHandlers(
  brokerDeps: BrokerServiceDeps,
): ServiceHandlers<ReplicationServiceHandlers> {
  const deps = handlerDeps(brokerDeps);
  return {
    ReplicaFetch: async (request, _call, ctx) => replicaFetch(deps, request, ctx.signal),
  };
}

/** Builds the handlers. */
export function brokerServiceHandlers(
  brokerDeps: BrokerServiceDeps,
): ServiceHandlers<BrokerServiceHandlers> {
  const deps = handlerDeps(brokerDeps);
  return {
    Produce: async (request) => produce(deps, request),
    Fetch: async (request, _call, ctx) => fetch(deps, request, ctx.signal),
    Subscribe: (request, _call, send, ctx) =>
      subscribe(request, send, ctx.signal, deps.replicas, deps.metrics),
    ListOffsets: async (request) => listOffsets(deps, request),
    Metadata: async (request) =>
      describeMetadata(
        deps.metadata,
        deps.clusterId,
        deps.controllerId(),
        request.topics,
        deps.listenerName,
      ),
    OffsetsForLeaderEpoch: async (request) => offsetsForLeaderEpoch(deps, request),
    // A new producer id starts at epoch 0 (KIP-360 epoch bumps are the producer's own).
    InitProducerId: async () => ({
      producerId: String(await deps.producerIds.nextId()),
      producerEpoch: 0,
    }),
  };
}

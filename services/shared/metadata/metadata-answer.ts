/**
 * The Metadata answer, built from the etcd mirror: live brokers, and for each topic asked for its
 * partitions with leader, epoch, replicas, ISR and offline replicas.
 */
import { ErrorCode, isSamsaError } from "../errors.js";
import { validateTopicName } from "../topic-name.js";
import { noLeader } from "../etcd/keys.js";
import type { MetadataResponse } from "../generated/samsa/v1/MetadataResponse.js";
import type { ClusterMetadata } from "./cluster-metadata.js";

/** Describes the topics named (all when none) as a MetadataResponse. */
export function describeMetadata(
  metadata: ClusterMetadata,
  clusterId: string,
  controllerId: string,
  topics: readonly string[],
): MetadataResponse {
  const brokers = metadata.brokers();
  const live = new Set(brokers.map((b) => b.id));
  const names = topics.length > 0 ? topics : metadata.topics().map((t) => t.name);
  return {
    clusterId,
    controllerId,
    brokers: brokers.map((b) => ({ id: b.id, host: b.host, port: b.port, rack: b.rack ?? "" })),
    topics: names.map((name) => {
      if (!isValidTopicName(name)) {
        return { name, errorCode: ErrorCode.INVALID_TOPIC, topicId: "", partitions: [] };
      }
      const record = metadata.topic(name);
      if (!record)
        return {
          name,
          errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
          topicId: "",
          partitions: [],
        };
      return {
        name,
        errorCode: 0,
        topicId: record.id,
        partitions: metadata.partitions(name).map(({ partition, state }) => ({
          partition,
          errorCode:
            state.leader === noLeader || !live.has(state.leader)
              ? ErrorCode.LEADER_NOT_AVAILABLE
              : 0,
          leaderId: live.has(state.leader) ? state.leader : noLeader,
          leaderEpoch: state.leaderEpoch,
          replicas: [...state.replicas],
          isr: [...state.isr],
          offlineReplicas: state.replicas.filter((r) => !live.has(r)),
        })),
      };
    }),
  };
}

function isValidTopicName(name: string): boolean {
  try {
    validateTopicName(name);
    return true;
  } catch (err) {
    if (isSamsaError(err, ErrorCode.INVALID_TOPIC)) return false;
    throw err;
  }
}

/**
 * The Metadata answer, built from the etcd mirror: live brokers, and for each topic asked for its
 * partitions with leader, epoch, replicas, ISR and offline replicas.
 *
 * Broker addresses are those of one listener (Kafka: the listener the request came in on): a
 * client on the host is told the brokers' host-reachable addresses, one in a container their
 * container addresses. A broker registered without that listener is left out, and partitions it
 * leads answer LEADER_NOT_AVAILABLE (retriable: Kafka's LISTENER_NOT_FOUND), as during a rolling
 * change of listeners. Without a listener name, the registered (inter-broker) addresses.
 */
import { ErrorCode, isSamsaError } from "../errors.js";
import { validateTopicName } from "../topic-name.js";
import { type BrokerRegistration, type ListenerAddress, noLeader } from "../etcd/keys.js";
import type { MetadataResponse } from "../generated/samsa/v1/MetadataResponse.js";
import type { ClusterMetadata } from "./cluster-metadata.js";

/**
 * Describes the topics named (all when none) as a MetadataResponse, with brokers' addresses on
 * `listenerName` (default: their registered, inter-broker addresses).
 */
export function describeMetadata(
  metadata: ClusterMetadata,
  clusterId: string,
  controllerId: string,
  topics: readonly string[],
  listenerName?: string,
): MetadataResponse {
  const brokers = metadata.brokers().flatMap((b) => {
    const address = listenerName === undefined ? b : addressOn(b, listenerName);
    return address ? [{ ...b, host: address.host, port: address.port }] : [];
  });
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

/**
 * A broker's address on a listener: from its registration's `listeners`, or its one address
 * when it registered none (a broker from before listener names); undefined when it lacks it.
 */
function addressOn(broker: BrokerRegistration, listenerName: string): ListenerAddress | undefined {
  if (broker.listeners === undefined) return broker;
  return broker.listeners[listenerName];
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

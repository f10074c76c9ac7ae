/**
 * Topic creation and deletion by the active controller. Every write is fenced by the controller's
 * epoch (a deposed controller's write fails with NOT_CONTROLLER). Creation writes the partition
 * states first, in txns of at most {@link TXN_OPS_MAX} ops (etcd's default --max-txn-ops is 128),
 * and the topic record last, guarded by "the topic key does not exist": brokers act on a
 * partition only once its topic exists, so a half-written creation is never served.
 */
import { randomUUID } from "node:crypto";
import type { Etcd3 } from "etcd3";
import {
  parseTopicConfig,
  type TopicDefaults as ControllerTopicDefaults,
  type TopicConfig,
} from "../shared/config/index.js";
import type { ControllerLeadership } from "../shared/etcd/election.js";
import { fencedTxn } from "../shared/etcd/election.js";
import {
  encodePartitionState,
  encodeTopicRecord,
  type EtcdKeys,
  type TopicRecord,
} from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { assignReplicas } from "./replica-assignment.js";
import {
  checkTopicCollision,
  validatePartitionCount,
  validateReplicationFactor,
  validateTopicName,
} from "./topic-validation.js";

/** Ops per etcd txn at most (etcd's default limit is 128). */
export const TXN_OPS_MAX = 100;

/** A creation request after defaults are applied. */
export interface TopicSpec {
  name: string;
  partitions: number;
  replicationFactor: number;
  /** The request's configs as sent: what the topic record stores and DescribeTopics shows. */
  configs: Readonly<Record<string, string>>;
  /** The same, parsed (and so validated) once. */
  config: TopicConfig;
}

/** Cluster defaults for creation (`num.partitions`, `default.replication.factor`). */
export type TopicDefaults = Pick<
  ControllerTopicDefaults,
  "numPartitions" | "defaultReplicationFactor"
>;

/** Applies defaults (-1 / 0 mean "the cluster's default") and validates; returns the spec. */
export function resolveTopicSpec(
  request: {
    name: string;
    numPartitions: number;
    replicationFactor: number;
    configs: Record<string, string>;
  },
  defaults: TopicDefaults,
  metadata: ClusterMetadata,
): TopicSpec {
  validateTopicName(request.name);
  // -1 is Kafka's "use the default"; 0 is what proto3 sends for an unset field.
  const useDefault = (n: number) => n === -1 || n === 0;
  const partitions = useDefault(request.numPartitions)
    ? defaults.numPartitions
    : request.numPartitions;
  const replicationFactor = useDefault(request.replicationFactor)
    ? defaults.defaultReplicationFactor
    : request.replicationFactor;
  validatePartitionCount(partitions);
  validateReplicationFactor(replicationFactor, metadata.brokers().length);
  const config = parseTopicConfig(request.configs);
  if (metadata.topic(request.name))
    throw new SamsaError(ErrorCode.TOPIC_ALREADY_EXISTS, `topic "${request.name}" already exists`);
  checkTopicCollision(
    request.name,
    metadata.topics().map((t) => t.name),
  );
  return { name: request.name, partitions, replicationFactor, configs: request.configs, config };
}

/** Writes a new topic and its partition states; returns the topic record. */
export async function createTopic(
  client: Etcd3,
  keys: EtcdKeys,
  leadership: ControllerLeadership,
  metadata: ClusterMetadata,
  spec: TopicSpec,
): Promise<TopicRecord> {
  const assignment = assignReplicas(metadata.brokers(), spec.partitions, spec.replicationFactor);
  const topicKey = keys.topic(spec.name);
  for (let i = 0; i < assignment.length; i += TXN_OPS_MAX) {
    const txn = fencedTxn(client, leadership).and(topicKey, "Create", "==", 0);
    assignment.slice(i, i + TXN_OPS_MAX).forEach((replicas, k) => {
      // Followers join the ISR once they have caught up (replication); until then only the
      // leader is in sync, so the high watermark follows the leader alone.
      const state = {
        replicas,
        leader: replicas[0]!,
        leaderEpoch: 0,
        isr: [replicas[0]!],
        partitionEpoch: 0,
      };
      txn.do(client.put(keys.partition(spec.name, i + k)).value(encodePartitionState(state)));
    });
    const res = await txn.commit();
    if (!res.succeeded)
      throw new SamsaError(ErrorCode.TOPIC_ALREADY_EXISTS, `topic "${spec.name}" already exists`);
  }
  const record: TopicRecord = {
    id: randomUUID(),
    name: spec.name,
    partitions: spec.partitions,
    replicationFactor: spec.replicationFactor,
    config: { ...spec.configs },
    createdAt: Date.now(),
  };
  const res = await fencedTxn(client, leadership)
    .and(topicKey, "Create", "==", 0)
    .do(client.put(topicKey).value(encodeTopicRecord(record)))
    .commit();
  if (!res.succeeded)
    throw new SamsaError(ErrorCode.TOPIC_ALREADY_EXISTS, `topic "${spec.name}" already exists`);
  return record;
}

/** Deletes a topic's record and partition states in one fenced txn. */
export async function deleteTopic(
  client: Etcd3,
  keys: EtcdKeys,
  leadership: ControllerLeadership,
  name: string,
): Promise<void> {
  validateTopicName(name);
  const topicKey = keys.topic(name);
  const res = await fencedTxn(client, leadership)
    .and(topicKey, "Create", ">", 0)
    .do(client.delete().key(topicKey), client.delete().prefix(keys.partitionsPrefix(name)))
    .commit();
  if (!res.succeeded)
    throw new SamsaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic "${name}" does not exist`);
}

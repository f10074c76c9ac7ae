/**
 * The Samsa client library: talk to Samsa directly, like kafkajs talks to Kafka. The CLI,
 * benchmarks and tests use it.
 *
 * ```ts
 * const cluster = new Cluster({ bootstrapServers: "127.0.0.1:19092" });
 * const producer = new Producer({ cluster });
 * const [meta] = await producer.send("orders", [{ key: "k", value: "v" }], { acks: "all" });
 * const consumer = new Consumer({ cluster });
 * for await (const r of consumer.consume("orders", { from: "earliest", signal })) { ... }
 * const admin = new AdminClient({ controllers: "127.0.0.1:19090" });
 * await admin.createTopics([{ name: "orders", numPartitions: 3, replicationFactor: 2 }]);
 * await admin.electLeaders("preferred"); // give every partition back to its preferred replica
 * ```
 *
 * Offsets and timestamps are JS numbers here (safe integers); the wire carries them as strings.
 * Every failure is a {@link SamsaError} with an {@link ErrorCode} and a `retriable` flag.
 */
export { ErrorCode, isSamsaError, SamsaError } from "../shared/errors.js";
export { CompressionType } from "../shared/record-batch/index.js";
export {
  ADDRESS_LIST_SEPARATOR,
  parseAddress,
  parseAddressList,
} from "../shared/grpc/addresses.js";
export {
  AdminClient,
  type AdminClientOptions,
  type ClusterDescription,
  type CreatedTopic,
  type ElectionResult,
  type ElectionType,
  type NewTopic,
  type OngoingReassignment,
  type PartitionReassignment,
  type ReassignmentResult,
  type TopicDescription,
  type TopicPartition,
  type TopicResult,
  USE_CLUSTER_DEFAULT,
} from "./admin-client.js";
export { CONNECTION_POOL_SIZE_MAX, ConnectionPool } from "../shared/grpc/connection-pool.js";
export {
  type ConsumeOptions,
  Consumer,
  type ConsumerOptions,
  FETCH_MAX_WAIT_MS_DEFAULT,
  FETCH_MIN_BYTES_DEFAULT,
  type OffsetReset,
  type StartFrom,
} from "./consumer.js";
export type { OnCorruptBatch, SkippedBatch } from "./corrupt-batch.js";
export { type ListOffsetsOptions, listOffsets, type OffsetSpec } from "./list-offsets.js";
export {
  AUTO_COMMIT_INTERVAL_MS_DEFAULT,
  type CommittedPosition,
  type EachBatchPayload,
  type EachMessagePayload,
  GroupConsumer,
  type GroupConsumerOptions,
  type RebalanceListener,
  type RunOptions,
} from "./group-consumer.js";
export {
  type CommittedOffsetInfo,
  GroupClient,
  type GroupClientOptions,
  type GroupDescriptionInfo,
  type GroupListingInfo,
  type GroupMemberInfo,
  type GroupStateName,
  type GroupTopicPartition,
  type OffsetResetInfo,
  type PartitionLagInfo,
  type ResetTarget,
} from "./group-client.js";
export {
  FETCH_BYTES_MAX_DEFAULT,
  FETCH_PARTITION_BYTES_MAX_DEFAULT,
  LIST_OFFSETS_EARLIEST_TIMESTAMP,
  LIST_OFFSETS_LATEST_TIMESTAMP,
  NO_OFFSET,
} from "../shared/protocol-limits.js";
export {
  type BrokerNode,
  Cluster,
  type ClusterOptions,
  type LeaderInfo,
  METADATA_MAX_AGE_MS_DEFAULT,
  METADATA_REFRESH_CODES,
  NO_LEADER_ID,
  needsMetadataRefresh,
  type PartitionMetadata,
  type TopicMetadata,
} from "./metadata.js";
export {
  keyBytes,
  MURMUR2_SEED,
  murmur2,
  Partitioner,
  partitionForKey,
  toPositive,
} from "../shared/partitioner.js";
export {
  ACKS_DEFAULT,
  type Acks,
  DELIVERY_TIMEOUT_MS_DEFAULT,
  MAX_REQUEST_SIZE_BYTES_DEFAULT,
  Producer,
  type ProducerOptions,
  type RecordOutcome,
  type SendOptions,
  toProtoAcks,
} from "./producer.js";
export {
  type AccumulatorOptions,
  BATCH_SIZE_BYTES_DEFAULT,
  BUFFER_MEMORY_BYTES_DEFAULT,
  type Delivery,
  type DeliveryCallback,
  LINGER_MS_DEFAULT,
  MAX_BLOCK_MS_DEFAULT,
} from "./record-accumulator.js";
export type {
  Bytes,
  ConsumerBatch,
  ConsumerRecord,
  ProducerRecord,
  RecordHeader,
  RecordMetadata,
} from "./records.js";
export {
  API_TIMEOUT_MS_DEFAULT,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RETRY_BACKOFF_INITIAL_MS,
  RETRY_BACKOFF_MAX_MS,
} from "../shared/retry.js";

/**
 * Limits and sentinels of the public protocol that more than one party must agree on: the
 * broker enforces them, the gateway enforces the same ones before routing, and the client
 * defaults to them. One definition each (Kafka's names in the comments).
 */

/** Partitions in one Produce, Fetch, ListOffsets or OffsetsForLeaderEpoch request at most. */
export const REQUEST_PARTITIONS_MAX = 10_000;
/** Longest long-poll wait of a Fetch, ms (Kafka's `fetch.max.wait.ms` defaults to 500). */
export const FETCH_WAIT_MS_MAX = 30_000;
/** Default and cap of a Fetch's total bytes (Kafka's `fetch.max.bytes`: 50 MiB). */
export const FETCH_BYTES_MAX_DEFAULT = 50 * 1024 * 1024;
/** Default bytes per partition in a Fetch (Kafka's `max.partition.fetch.bytes`: 1 MiB). */
export const FETCH_PARTITION_BYTES_MAX_DEFAULT = 1024 * 1024;
/** Default wait of an acks=all Produce for the in-sync replicas, ms (Kafka's `request.timeout.ms`). */
export const PRODUCE_TIMEOUT_MS_DEFAULT = 30_000;
/** Longest wait an acks=all Produce may ask for, ms. */
export const PRODUCE_TIMEOUT_MS_MAX = 300_000;

/** ListOffsets timestamp asking for the log start offset (Kafka's EARLIEST_TIMESTAMP). */
export const LIST_OFFSETS_EARLIEST_TIMESTAMP = -2;
/** ListOffsets timestamp asking for the high watermark (Kafka's LATEST_TIMESTAMP). */
export const LIST_OFFSETS_LATEST_TIMESTAMP = -1;
/** An offset or timestamp field that holds no value (no record, or an error answer). */
export const NO_OFFSET = -1;

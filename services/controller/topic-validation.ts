/**
 * Checks on topic creation requests, with Kafka's rules: legal names, partition counts,
 * replication factor against the live brokers. Topic configs are checked by the shared
 * `parseTopicConfig`, whose result the broker and the gateway read too.
 */
import { REPLICATION_FACTOR_MAX, TOPIC_PARTITIONS_MAX } from "../shared/config/index.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";

export { TOPIC_NAME_LENGTH_MAX, validateTopicName } from "../shared/topic-name.js";

/**
 * Kafka refuses a name that differs from an existing one only by '.' versus '_' (they collide in
 * metric names).
 */
export function checkTopicCollision(name: string, existing: Iterable<string>): void {
  const norm = (n: string) => n.replaceAll(".", "_");
  for (const other of existing) {
    if (other !== name && norm(other) === norm(name)) {
      throw new SamsaError(
        ErrorCode.INVALID_TOPIC,
        `topic "${name}" collides with existing topic "${other}" ('.' and '_' collide)`,
      );
    }
  }
}

/** Throws INVALID_PARTITIONS unless 1 ≤ n ≤ limit. */
export function validatePartitionCount(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > TOPIC_PARTITIONS_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_PARTITIONS,
      `number of partitions ${n} must be in [1, ${TOPIC_PARTITIONS_MAX}]`,
    );
  }
}

/** Throws INVALID_REPLICATION_FACTOR unless 1 ≤ rf ≤ live brokers. */
export function validateReplicationFactor(rf: number, liveBrokers: number): void {
  if (!Number.isInteger(rf) || rf < 1 || rf > REPLICATION_FACTOR_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_REPLICATION_FACTOR,
      `replication factor ${rf} must be in [1, ${REPLICATION_FACTOR_MAX}]`,
    );
  }
  if (rf > liveBrokers) {
    throw new SamsaError(
      ErrorCode.INVALID_REPLICATION_FACTOR,
      `replication factor ${rf} is larger than the ${liveBrokers} live brokers`,
    );
  }
}

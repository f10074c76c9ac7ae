/**
 * Checks on topic creation requests, with Kafka's rules: legal names, partition counts,
 * replication factor against the live brokers, and topic configs.
 */
import { logConfigFromProperties } from "../broker/log/log-config.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";

export { TOPIC_NAME_LENGTH_MAX, validateTopicName } from "../shared/topic-name.js";

/** Partitions one topic may have at most. */
export const TOPIC_PARTITIONS_MAX = 10_000;
/** Largest replication factor accepted (besides the live-broker bound). */
export const REPLICATION_FACTOR_MAX = 32;

/** Topic configs that are not log configs but are still accepted (Kafka's names). */
export const NON_LOG_TOPIC_CONFIGS: ReadonlySet<string> = new Set([
  "min.insync.replicas",
  "unclean.leader.election.enable",
  "cleanup.policy",
  "compression.type",
  "message.timestamp.type",
]);

/** Kafka configs whose default is the only behaviour built so far (compaction, broker-side
 * recompression and log-append time are not). */
const SUPPORTED_VALUES_ONLY: Readonly<Record<string, string>> = Object.freeze({
  "cleanup.policy": "delete",
  "compression.type": "producer",
  "message.timestamp.type": "CreateTime",
});

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

/** Throws INVALID_CONFIG unless every config is known and valid. */
export function validateTopicConfigs(configs: Readonly<Record<string, string>>): void {
  const logProps: Record<string, string> = {};
  for (const [k, v] of Object.entries(configs)) {
    if (NON_LOG_TOPIC_CONFIGS.has(k)) {
      if (k === "min.insync.replicas" && !/^[1-9]\d{0,2}$/.test(v)) {
        throw new SamsaError(
          ErrorCode.INVALID_CONFIG,
          `invalid topic config min.insync.replicas: "${v}" is not a positive integer`,
        );
      }
      const only = SUPPORTED_VALUES_ONLY[k];
      if (only && v !== only) {
        // Accepting a value that is not implemented would silently behave like the default.
        throw new SamsaError(
          ErrorCode.INVALID_CONFIG,
          `invalid topic config ${k}: "${v}" is not supported (only "${only}")`,
        );
      }
      if (k === "unclean.leader.election.enable" && v !== "true" && v !== "false") {
        throw new SamsaError(
          ErrorCode.INVALID_CONFIG,
          `invalid topic config ${k}: "${v}" is not true or false`,
        );
      }
      continue;
    }
    logProps[k] = v;
  }
  logConfigFromProperties(logProps);
}

/**
 * Kafka's topic name rules, shared by the controller (creation) and every server answering
 * Metadata (an illegal name is INVALID_TOPIC at once, not a retriable "unknown topic").
 */
import { ErrorCode, SamsaError } from "./errors.js";

/** Kafka's longest topic name. */
export const TOPIC_NAME_LENGTH_MAX = 249;
const TOPIC_NAME = /^[a-zA-Z0-9._-]+$/;

/** Throws INVALID_TOPIC unless `name` is a legal topic name. */
export function validateTopicName(name: string): void {
  if (typeof name !== "string" || name.length === 0)
    throw new SamsaError(ErrorCode.INVALID_TOPIC, "topic name is empty");
  if (name === "." || name === "..")
    throw new SamsaError(ErrorCode.INVALID_TOPIC, `topic name cannot be "${name}"`);
  if (name.length > TOPIC_NAME_LENGTH_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_TOPIC,
      `topic name is ${name.length} characters, the limit is ${TOPIC_NAME_LENGTH_MAX}`,
    );
  }
  if (!TOPIC_NAME.test(name)) {
    throw new SamsaError(
      ErrorCode.INVALID_TOPIC,
      `topic name "${name}" has characters other than ASCII letters, digits, '.', '_' and '-'`,
    );
  }
}

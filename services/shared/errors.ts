/**
 * The one error table of Samsa. Every domain error carries an {@link ErrorCode}; the table gives
 * each code its retriable flag, its gRPC status and a default message. Mapping to gRPC happens in
 * exactly one place at the server boundary (`toServiceError` in `grpc/errors.ts`, applied by the
 * handler wrapper in `grpc/handlers.ts`); handlers and storage only ever throw {@link SamsaError}.
 */

/** gRPC status codes used by the table (numeric values from grpc's status.proto). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** Domain error codes. Numeric values are stable: they travel on the wire. */
export enum ErrorCode {
  NONE = 0,
  UNKNOWN = 1,
  UNKNOWN_TOPIC_OR_PARTITION = 2,
  NOT_LEADER = 3,
  LEADER_NOT_AVAILABLE = 4,
  NOT_ENOUGH_REPLICAS = 5,
  OFFSET_OUT_OF_RANGE = 6,
  CORRUPT_MESSAGE = 7,
  MESSAGE_TOO_LARGE = 8,
  INVALID_TOPIC = 9,
  TOPIC_ALREADY_EXISTS = 10,
  FENCED_LEADER_EPOCH = 11,
  NOT_CONTROLLER = 12,
  REBALANCE_IN_PROGRESS = 13,
  ILLEGAL_GENERATION = 14,
  UNKNOWN_MEMBER = 15,
  INVALID_REQUEST = 16,
  REQUEST_TIMED_OUT = 17,
  UNSUPPORTED_COMPRESSION_TYPE = 18,
  KAFKA_STORAGE_ERROR = 19,
  INVALID_CONFIG = 20,
  INVALID_PARTITIONS = 21,
  INVALID_REPLICATION_FACTOR = 22,
  UNKNOWN_LEADER_EPOCH = 23,
  NOT_ENOUGH_REPLICAS_AFTER_APPEND = 24,
  INVALID_TIMESTAMP = 25,
  POLICY_VIOLATION = 26,
  STALE_BROKER_EPOCH = 27,
  PREFERRED_LEADER_NOT_AVAILABLE = 28,
  ELECTION_NOT_NEEDED = 29,
  ELIGIBLE_LEADERS_NOT_AVAILABLE = 30,
  NO_REASSIGNMENT_IN_PROGRESS = 31,
  INVALID_REPLICA_ASSIGNMENT = 32,
  OUT_OF_ORDER_SEQUENCE_NUMBER = 33,
  INVALID_PRODUCER_EPOCH = 34,
  UNKNOWN_PRODUCER_ID = 35,
  NOT_COORDINATOR = 36,
  COORDINATOR_NOT_AVAILABLE = 37,
  FENCED_MEMBER_EPOCH = 38,
  STALE_MEMBER_EPOCH = 39,
  GROUP_ID_NOT_FOUND = 40,
  NON_EMPTY_GROUP = 41,
  UNRELEASED_INSTANCE_ID = 42,
  INVALID_SESSION_TIMEOUT = 43,
  INVALID_GROUP_ID = 44,
  UNSUPPORTED_ASSIGNOR = 45,
  NO_OFFSET_FOR_PARTITION = 46,
  THROTTLING_QUOTA_EXCEEDED = 47,
  TOO_MANY_REQUESTS = 48,
}

/** One row of the error table. */
export interface ErrorSpec {
  /** A client may retry the same request (after a metadata refresh where it applies). */
  readonly retriable: boolean;
  /** The gRPC status a call-level error of this code is sent with. */
  readonly grpcStatus: GrpcStatusCode;
  /** Default human-readable message. */
  readonly message: string;
}

const S = GrpcStatus;

/** The table: code → retriable, gRPC status, message. */
export const ERROR_TABLE: Readonly<Record<ErrorCode, ErrorSpec>> = Object.freeze({
  [ErrorCode.NONE]: { retriable: false, grpcStatus: S.OK, message: "no error" },
  [ErrorCode.UNKNOWN]: {
    retriable: false,
    // INTERNAL, not UNKNOWN: an unexpected server error is a bug on the server, and gRPC itself
    // reports UNKNOWN for handlers that throw without a status.
    grpcStatus: S.INTERNAL,
    message: "unexpected server error",
  },
  [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]: {
    retriable: true,
    grpcStatus: S.NOT_FOUND,
    message: "this server does not host this topic-partition",
  },
  [ErrorCode.NOT_LEADER]: {
    retriable: true,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "this server is not the leader for that topic-partition",
  },
  [ErrorCode.LEADER_NOT_AVAILABLE]: {
    retriable: true,
    grpcStatus: S.UNAVAILABLE,
    message: "there is no leader for this topic-partition",
  },
  [ErrorCode.NOT_ENOUGH_REPLICAS]: {
    retriable: true,
    grpcStatus: S.UNAVAILABLE,
    message: "fewer in-sync replicas than min.insync.replicas",
  },
  [ErrorCode.OFFSET_OUT_OF_RANGE]: {
    retriable: false,
    grpcStatus: S.OUT_OF_RANGE,
    message: "the requested offset is not within the range of offsets kept",
  },
  [ErrorCode.CORRUPT_MESSAGE]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the record batch is malformed or fails its CRC",
  },
  [ErrorCode.MESSAGE_TOO_LARGE]: {
    retriable: false,
    grpcStatus: S.RESOURCE_EXHAUSTED,
    message: "the record batch is larger than the maximum allowed",
  },
  [ErrorCode.INVALID_TOPIC]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the topic name is invalid",
  },
  [ErrorCode.TOPIC_ALREADY_EXISTS]: {
    retriable: false,
    grpcStatus: S.ALREADY_EXISTS,
    message: "the topic already exists",
  },
  [ErrorCode.FENCED_LEADER_EPOCH]: {
    retriable: true,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the leader epoch in the request is older than the broker's",
  },
  [ErrorCode.NOT_CONTROLLER]: {
    retriable: true,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "this is not the active controller",
  },
  [ErrorCode.REBALANCE_IN_PROGRESS]: {
    retriable: true,
    grpcStatus: S.ABORTED,
    message: "the group is rebalancing",
  },
  [ErrorCode.ILLEGAL_GENERATION]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the group generation is not current",
  },
  [ErrorCode.UNKNOWN_MEMBER]: {
    retriable: false,
    grpcStatus: S.NOT_FOUND,
    message: "the member is not known to the group",
  },
  [ErrorCode.INVALID_REQUEST]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the request is malformed",
  },
  [ErrorCode.REQUEST_TIMED_OUT]: {
    retriable: true,
    grpcStatus: S.DEADLINE_EXCEEDED,
    message: "the request timed out",
  },
  [ErrorCode.UNSUPPORTED_COMPRESSION_TYPE]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the compression type is not supported",
  },
  [ErrorCode.KAFKA_STORAGE_ERROR]: {
    retriable: true,
    grpcStatus: S.UNAVAILABLE,
    message: "disk error while accessing the log",
  },
  [ErrorCode.INVALID_CONFIG]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the configuration is invalid",
  },
  [ErrorCode.INVALID_PARTITIONS]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the number of partitions is invalid",
  },
  [ErrorCode.INVALID_REPLICATION_FACTOR]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the replication factor is invalid",
  },
  [ErrorCode.UNKNOWN_LEADER_EPOCH]: {
    retriable: true,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the leader epoch in the request is newer than the broker's",
  },
  [ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND]: {
    retriable: true,
    grpcStatus: S.UNAVAILABLE,
    message: "the batch was written but the ISR shrank below min.insync.replicas",
  },
  [ErrorCode.INVALID_TIMESTAMP]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the timestamp is invalid",
  },
  [ErrorCode.POLICY_VIOLATION]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the request violates a cluster policy",
  },
  [ErrorCode.STALE_BROKER_EPOCH]: {
    // A restarted broker's new registration reaches the leader's etcd mirror a moment later.
    retriable: true,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the broker epoch in the request is older than the registered one",
  },
  [ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE]: {
    // The preferred replica may come back and rejoin the ISR.
    retriable: true,
    grpcStatus: S.UNAVAILABLE,
    message: "the preferred leader is not alive or not in the ISR",
  },
  [ErrorCode.ELECTION_NOT_NEEDED]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "leader election not needed: a valid replica already leads",
  },
  [ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE]: {
    retriable: true,
    grpcStatus: S.UNAVAILABLE,
    message: "no live replica can be elected leader",
  },
  [ErrorCode.NO_REASSIGNMENT_IN_PROGRESS]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "no partition reassignment is in progress",
  },
  [ErrorCode.INVALID_REPLICA_ASSIGNMENT]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the replica assignment is invalid",
  },
  [ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER]: {
    // Not retriable as is: the producer resets the partition's sequence (docs/idempotence.md).
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the batch's sequence number is not the next one the partition expects",
  },
  [ErrorCode.INVALID_PRODUCER_EPOCH]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the producer epoch is older than the partition's for this producer id",
  },
  [ErrorCode.UNKNOWN_PRODUCER_ID]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the partition has no state for this producer id (new, expired or deleted)",
  },
  [ErrorCode.NOT_COORDINATOR]: {
    // The client goes to the gateway named in `samsa-coordinator`, or asks any gateway again.
    retriable: true,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "this gateway is not the coordinator of the group",
  },
  [ErrorCode.COORDINATOR_NOT_AVAILABLE]: {
    retriable: true,
    grpcStatus: S.UNAVAILABLE,
    message: "the group coordinator is not available",
  },
  [ErrorCode.FENCED_MEMBER_EPOCH]: {
    // Not retriable as is: the member rejoins with epoch 0 after dropping its partitions.
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the member epoch is fenced: rejoin the group",
  },
  [ErrorCode.STALE_MEMBER_EPOCH]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the member epoch is stale, or the member does not own the partition",
  },
  [ErrorCode.GROUP_ID_NOT_FOUND]: {
    retriable: false,
    grpcStatus: S.NOT_FOUND,
    message: "the group does not exist",
  },
  [ErrorCode.NON_EMPTY_GROUP]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "the group has active members",
  },
  [ErrorCode.UNRELEASED_INSTANCE_ID]: {
    // The previous holder of the instance id leaves or its session expires.
    retriable: true,
    grpcStatus: S.ABORTED,
    message: "the static member's instance id is still held by another member",
  },
  [ErrorCode.INVALID_SESSION_TIMEOUT]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the session timeout is outside the group's allowed range",
  },
  [ErrorCode.INVALID_GROUP_ID]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the group id is invalid",
  },
  [ErrorCode.UNSUPPORTED_ASSIGNOR]: {
    retriable: false,
    grpcStatus: S.INVALID_ARGUMENT,
    message: "the server assignor is not supported",
  },
  [ErrorCode.NO_OFFSET_FOR_PARTITION]: {
    retriable: false,
    grpcStatus: S.FAILED_PRECONDITION,
    message: "no committed offset for the partition and auto.offset.reset is none",
  },
  [ErrorCode.THROTTLING_QUOTA_EXCEEDED]: {
    retriable: true,
    grpcStatus: S.RESOURCE_EXHAUSTED,
    message: "the group's commit rate is over its bound",
  },
  [ErrorCode.TOO_MANY_REQUESTS]: {
    retriable: true,
    grpcStatus: S.RESOURCE_EXHAUSTED,
    message: "the server has too many requests in flight; retry after a backoff",
  },
});

/** A typed domain error: what every operating condition (bad input, wrong leader, ...) throws. */
export class SamsaError extends Error {
  readonly code: ErrorCode;
  /**
   * Extra key/value hints sent to the client as trailing gRPC metadata with a call-level error,
   * e.g. `{ "samsa-controller": "host:port" }` with NOT_CONTROLLER. Keys are lower-case gRPC
   * metadata keys.
   */
  readonly metadata?: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; metadata?: Record<string, string> },
  ) {
    super(message ?? ERROR_TABLE[code].message, options);
    this.name = "SamsaError";
    this.code = code;
    if (options?.metadata !== undefined) this.metadata = Object.freeze({ ...options.metadata });
  }

  /** Whether a client may retry the request that failed with this error. */
  get retriable(): boolean {
    return ERROR_TABLE[this.code].retriable;
  }

  /** The code's name, for logs and messages. */
  get codeName(): string {
    return ErrorCode[this.code];
  }
}

/**
 * Metadata key of a CORRUPT_MESSAGE read error: the offset where the next batch after the
 * damaged one starts, where a reader that skips the damage on purpose resumes (a Fetch answer
 * carries it as the partition's `next_offset`).
 */
export const NEXT_OFFSET_METADATA_KEY = "samsa-next-offset";

/** True when `err` is a {@link SamsaError} with the given code. */
export function isSamsaError(err: unknown, code?: ErrorCode): err is SamsaError {
  return err instanceof SamsaError && (code === undefined || err.code === code);
}

/**
 * An invariant check (TIGER_STYLE): a broken invariant is a bug, so it crashes loudly instead of
 * being reported as a request error.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

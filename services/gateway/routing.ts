/**
 * The gateway's routing core: finding a partition's leader in the etcd mirror, and the retry
 * policy every routed call follows. A routed call retries by the error table's `retriable` flag
 * alone, within its deadline; after NOT_LEADER, LEADER_NOT_AVAILABLE or
 * UNKNOWN_TOPIC_OR_PARTITION (a lost broker connection arrives as LEADER_NOT_AVAILABLE) it first
 * waits for the metadata to change, bounded by the backoff, because only a new leader or a
 * broker that caught up can make the retry succeed. {@link routePartitions} fans a request's
 * partitions out to their leaders, merges the per-partition answers in request order and retries
 * the partitions that failed retriably.
 */
import { backoffMs, type Deadline, sleep } from "../shared/retry.js";
import { ERROR_TABLE, ErrorCode, isSamsaError, SamsaError } from "../shared/errors.js";
import { noLeader, type TopicRecord } from "../shared/etcd/keys.js";
import { fromProtoErrorCode, fromServiceError } from "../shared/grpc/errors.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { validateTopicName } from "../shared/topic-name.js";
import type { BrokerPool, BrokerTarget } from "./broker-pool.js";
import type { GatewayMetrics } from "./gateway-metrics.js";
import type { MetadataWatch } from "./metadata-watch.js";

/** Retry deadline of a routed call whose client set no deadline, ms (Kafka's request.timeout.ms). */
export const ROUTE_TIMEOUT_MS_DEFAULT = 30_000;
/** A routed call answers this long before the client's deadline, so the client hears why, ms. */
export const ROUTE_DEADLINE_MARGIN_MS = 100;
/**
 * How long a topic or partition the metadata does not know is waited for before the gateway
 * answers UNKNOWN_TOPIC_OR_PARTITION, ms: long enough for a topic created a moment ago to reach
 * this gateway's etcd watch, short enough that a misspelt name is answered promptly.
 */
export const UNKNOWN_TOPIC_WAIT_MS = 500;
/** Least time left on the deadline worth another attempt, ms; below it the last answer stands. */
export const ROUTE_ATTEMPT_MS_MIN = 20;
/** Shortest pause between two attempts, ms: metadata churn must not make a retry loop spin. */
export const RETRY_PAUSE_MS_MIN = 20;

/** Codes after which the metadata (a leader, a topic) has to change before a retry can work. */
const METADATA_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.NOT_LEADER,
  ErrorCode.LEADER_NOT_AVAILABLE,
  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
]);
/**
 * Retriable codes the gateway passes straight back: they are about the client's own state (its
 * leader epoch is older than the leader's), which only the client can refresh.
 */
const CLIENT_STATE_CODES: ReadonlySet<ErrorCode> = new Set([ErrorCode.FENCED_LEADER_EPOCH]);

/** A topic-partition as requests name it. */
export interface PartitionKey {
  readonly topic: string;
  readonly partition: number;
}

/**
 * The metadata does not know the topic or partition. The gateway waits for it only
 * {@link UNKNOWN_TOPIC_WAIT_MS}, and not at all for an illegal topic name (`impossible`),
 * unlike a broker's UNKNOWN_TOPIC_OR_PARTITION, which means the broker has not yet caught up
 * with metadata the gateway already has.
 */
export class UnknownInMetadataError extends SamsaError {
  /** True when the topic can never exist: its name is illegal. */
  readonly impossible: boolean;

  constructor(topic: string, partition?: number) {
    super(
      ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
      partition === undefined
        ? `topic ${topic} does not exist`
        : `partition ${partition} of ${topic} does not exist`,
    );
    this.impossible = !isLegalTopicName(topic);
  }
}

/** Whether `name` follows Kafka's topic name rules. */
export function isLegalTopicName(name: string): boolean {
  try {
    validateTopicName(name);
    return true;
  } catch (err) {
    if (isSamsaError(err, ErrorCode.INVALID_TOPIC)) return false;
    throw err;
  }
}

/** Any failure as a SamsaError (gRPC failures through the one mapping). */
export function asSamsaError(err: unknown): SamsaError {
  return err instanceof SamsaError ? err : fromServiceError(err);
}

/** What the routing core needs. */
export interface RoutingDeps {
  metadata: ClusterMetadata;
  pool: BrokerPool;
  watch: MetadataWatch;
  metrics: GatewayMetrics;
  logger: Logger;
}

/** Leader lookup and the retry policy, shared by every routed RPC. */
export class Routing {
  constructor(readonly deps: RoutingDeps) {}

  /** The metadata version to note before an attempt (see {@link MetadataWatch}). */
  get version(): number {
    return this.deps.watch.version;
  }

  /**
   * The current leader of a partition, ready to call.
   * @throws UnknownInMetadataError when the topic or partition is not in the metadata;
   *   SamsaError LEADER_NOT_AVAILABLE when the partition has no live leader.
   */
  leaderFor(topic: string, partition: number): BrokerTarget {
    const { metadata, pool } = this.deps;
    const record = metadata.topic(topic);
    if (record === undefined) throw new UnknownInMetadataError(topic);
    const state = partition < record.partitions ? metadata.partition(topic, partition) : undefined;
    if (state === undefined) throw new UnknownInMetadataError(topic, partition);
    const target = state.leader === noLeader ? undefined : pool.get(state.leader);
    if (target === undefined) {
      throw new SamsaError(
        ErrorCode.LEADER_NOT_AVAILABLE,
        `${topic}-${partition} has no live leader (leader ${state.leader})`,
      );
    }
    return target;
  }

  /**
   * The record of `topic` (partition count, config), waiting up to {@link UNKNOWN_TOPIC_WAIT_MS}
   * (within the deadline) for a topic the metadata does not know yet.
   * @throws UnknownInMetadataError when it does not appear.
   */
  async topic(topic: string, deadline: Deadline, signal: AbortSignal): Promise<TopicRecord> {
    const giveUpAt = Math.min(Date.now() + UNKNOWN_TOPIC_WAIT_MS, deadline.atMs);
    for (;;) {
      const seen = this.version;
      const record = this.deps.metadata.topic(topic);
      if (record !== undefined) return record;
      const left = giveUpAt - Date.now();
      if (left <= 0 || signal.aborted) throw new UnknownInMetadataError(topic);
      await this.deps.watch.changedSince(seen, left, signal);
    }
  }

  /** Whether the gateway retries after `code` (the table's flag, minus the client's own state). */
  retriable(code: ErrorCode): boolean {
    return ERROR_TABLE[code].retriable && !CLIENT_STATE_CODES.has(code);
  }

  /**
   * Whether a failure `err` is final: not retriable, the deadline passed, the call was
   * cancelled, or the metadata has not known the topic or partition for
   * {@link UNKNOWN_TOPIC_WAIT_MS} (or its name is illegal).
   */
  isFinal(err: SamsaError, attempt: Attempt): boolean {
    if (!this.retriable(err.code) || attempt.signal.aborted || attempt.deadline?.expired)
      return true;
    if (!(err instanceof UnknownInMetadataError)) return false;
    return err.impossible || Date.now() - attempt.failingSinceMs >= UNKNOWN_TOPIC_WAIT_MS;
  }

  /**
   * Counts the retries and pauses before the next attempt: after a metadata code until the
   * metadata changed since `attempt.seen` (at most the backoff), otherwise for the backoff; never
   * past the deadline or the end of an unknown topic's wait, never less than
   * {@link RETRY_PAUSE_MS_MIN}, and not at all once the signal aborted.
   */
  async pause(method: string, errors: readonly SamsaError[], attempt: Attempt): Promise<void> {
    let waitForMetadata = false;
    let budget = Math.min(
      backoffMs(attempt.number),
      attempt.deadline?.remainingMs() ?? Number.MAX_SAFE_INTEGER,
    );
    for (const code of new Set(errors.map((e) => e.code))) {
      this.deps.metrics.recordRetry(method, code);
      waitForMetadata ||= METADATA_CODES.has(code);
    }
    if (errors.some((e) => e instanceof UnknownInMetadataError))
      budget = Math.min(budget, attempt.failingSinceMs + UNKNOWN_TOPIC_WAIT_MS - Date.now());
    const started = Date.now();
    const { signal, deadline } = attempt;
    if (waitForMetadata) await this.deps.watch.changedSince(attempt.seen, budget, signal);
    else await sleep(budget, signal);
    const rest = RETRY_PAUSE_MS_MIN - (Date.now() - started);
    if (rest > 0) await sleep(rest, signal, deadline);
  }
}

/** Where a retry loop stands: what {@link Routing.isFinal} and {@link Routing.pause} go by. */
export interface Attempt {
  /** Attempts made before this one (0 = the first). */
  readonly number: number;
  /** The metadata version noted before this attempt. */
  readonly seen: number;
  /** When the failures began (the call's start, or a stream's last progress), ms. */
  readonly failingSinceMs: number;
  /** The retry deadline; none for streams. */
  readonly deadline?: Deadline;
  /** Aborts when the client's call ends. */
  readonly signal: AbortSignal;
}

/** How one routed RPC is fanned out; see {@link routePartitions}. */
export interface RouteSpec<P extends PartitionKey, R extends { errorCode: number }> {
  /** The RPC's name, for the retries metric. */
  readonly method: string;
  /** The request's partitions, in request order. */
  readonly parts: readonly P[];
  readonly deadline: Deadline;
  /** The client's call: aborts when it is cancelled or the gateway stops. */
  readonly signal: AbortSignal;
  /** Validates a partition as the broker would; a SamsaError thrown is its final answer. */
  check(part: P): void;
  /**
   * One call to a leader for some of the partitions (in attempt `attempt`, 0 = the first);
   * resolves with their results in order.
   */
  send(target: BrokerTarget, parts: P[], deadline: Deadline, attempt: number): Promise<R[]>;
  /** The result of a partition that failed with `err` (no broker answer to pass on). */
  failed(part: P, err: SamsaError): R;
}

/** One partition of a routed request while it is being routed. */
interface Slot<P, R> {
  readonly index: number;
  readonly part: P;
  /** The last broker answer with a retriable error: the answer if the deadline passes. */
  lastAnswer?: R;
  error?: SamsaError;
}

/**
 * Routes every partition of a request to its leader (one call per leader, concurrently), retries
 * the retriable failures within the deadline and returns one result per partition in request
 * order. A partition's result is its leader's answer, or a result made by `failed` when no
 * broker answered it. Throws the signal's reason when the call was aborted (the gateway is
 * stopping: the client should retry elsewhere).
 */
export async function routePartitions<P extends PartitionKey, R extends { errorCode: number }>(
  routing: Routing,
  spec: RouteSpec<P, R>,
): Promise<R[]> {
  const results: (R | undefined)[] = new Array(spec.parts.length);
  let pending: Slot<P, R>[] = [];
  for (const [index, part] of spec.parts.entries()) {
    try {
      spec.check(part);
      pending.push({ index, part });
    } catch (err) {
      results[index] = spec.failed(part, asSamsaError(err));
    }
  }
  const failingSinceMs = Date.now();
  const { deadline, signal } = spec;
  for (let number = 0; pending.length > 0; number++) {
    const attempt: Attempt = { number, seen: routing.version, failingSinceMs, deadline, signal };
    await attemptOnce(routing, spec, attempt, pending, results);
    if (signal.aborted) throw signal.reason;
    const retry: Slot<P, R>[] = [];
    for (const slot of pending) {
      if (results[slot.index] !== undefined) continue;
      const err = slot.error!;
      if (routing.isFinal(err, attempt))
        results[slot.index] =
          (routing.retriable(err.code) ? slot.lastAnswer : undefined) ??
          spec.failed(slot.part, err);
      else retry.push(slot);
    }
    pending = retry;
    if (pending.length === 0) break;
    await routing.pause(
      spec.method,
      pending.map((s) => s.error!),
      attempt,
    );
    if (signal.aborted) throw signal.reason;
    if (deadline.remainingMs() < ROUTE_ATTEMPT_MS_MIN) {
      // Too little time is left for another attempt to get an answer: the last answer a broker
      // gave (NOT_ENOUGH_REPLICAS, NOT_LEADER...) tells the client more than a timeout would.
      for (const slot of pending)
        results[slot.index] = slot.lastAnswer ?? spec.failed(slot.part, slot.error!);
      break;
    }
  }
  return results as R[];
}

/** One attempt: groups the pending partitions by leader and calls each leader once. */
async function attemptOnce<P extends PartitionKey, R extends { errorCode: number }>(
  routing: Routing,
  spec: RouteSpec<P, R>,
  attempt: Attempt,
  pending: readonly Slot<P, R>[],
  results: (R | undefined)[],
): Promise<void> {
  const groups = new Map<number, { target: BrokerTarget; slots: Slot<P, R>[] }>();
  for (const slot of pending) {
    // The last broker answer is kept across attempts: if this attempt gets none (a timeout, a
    // broker that went away), the answer of the one before is the partition's result.
    slot.error = undefined;
    try {
      const target = routing.leaderFor(slot.part.topic, slot.part.partition);
      const group = groups.get(target.brokerId) ?? { target, slots: [] };
      group.slots.push(slot);
      groups.set(target.brokerId, group);
    } catch (err) {
      slot.error = asSamsaError(err);
    }
  }
  await Promise.all(
    [...groups.values()].map(async ({ target, slots }) => {
      let answers: R[];
      try {
        const parts = slots.map((s) => s.part);
        answers = await spec.send(target, parts, spec.deadline, attempt.number);
        if (answers.length !== slots.length) {
          throw new SamsaError(
            ErrorCode.UNKNOWN,
            `broker ${target.brokerId} answered ${answers.length} of ${slots.length} partitions`,
          );
        }
      } catch (err) {
        const error = asSamsaError(err);
        for (const slot of slots) slot.error = error;
        return;
      }
      for (const [i, answer] of answers.entries()) {
        const slot = slots[i]!;
        const code = fromProtoErrorCode(answer.errorCode);
        if (code === ErrorCode.NONE || !routing.retriable(code)) {
          results[slot.index] = answer;
        } else {
          slot.lastAnswer = answer;
          const message = (answer as { errorMessage?: string }).errorMessage;
          slot.error = new SamsaError(code, message || undefined);
        }
      }
    }),
  );
}

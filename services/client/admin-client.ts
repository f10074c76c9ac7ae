/**
 * The admin client: topic and cluster administration over `AdminService` on the controllers.
 * Any controller may be dialled; a standby that cannot forward answers NOT_CONTROLLER with the
 * active controller's address in the trailing metadata key `samsa-controller`, which is followed
 * at once. Other retriable failures (unreachable controller, no controller elected yet) move on
 * to the next configured controller, and after a full round back off, all within the operation's
 * deadline. Per-topic errors are returned in the results, never thrown.
 *
 * Like Kafka's admin client, a create retried after a lost answer may report
 * TOPIC_ALREADY_EXISTS for a topic the first attempt created.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type {
  ClientOptions,
  RequestOf,
  UnaryMethod,
  UnaryResponseOf,
} from "../shared/grpc/client.js";
import { callController } from "../shared/grpc/controller-call.js";
import { ElectionType as ProtoElectionType } from "../shared/generated/samsa/v1/ElectionType.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import { type AdminServiceClient, adminService } from "../shared/grpc/proto.js";
import { parseAddressList } from "../shared/grpc/addresses.js";
import { ConnectionPool } from "../shared/grpc/connection-pool.js";
import {
  type BrokerNode,
  type PartitionMetadata,
  toBrokerNode,
  toPartitionMetadata,
} from "./metadata.js";
import { API_TIMEOUT_MS_DEFAULT, Deadline, REQUEST_TIMEOUT_MS_DEFAULT } from "../shared/retry.js";

/** "Use the cluster's default" for a new topic's partitions or replication factor. */
export const USE_CLUSTER_DEFAULT = -1;

/** Options of {@link AdminClient}. */
export interface AdminClientOptions {
  /** Controller addresses, `host:port` each (or comma-separated lists). Required. */
  controllers: string | readonly string[];
  /** Deadline of one call, ms. Default {@link REQUEST_TIMEOUT_MS_DEFAULT}. */
  requestTimeoutMs?: number;
  /** Deadline of an operation with its retries, ms. Default {@link API_TIMEOUT_MS_DEFAULT}. */
  apiTimeoutMs?: number;
  /** Channel options of every controller client. */
  clientOptions?: ClientOptions;
}

/** A topic to create. */
export interface NewTopic {
  name: string;
  /** Default: the cluster's `num.partitions`. */
  numPartitions?: number;
  /** Default: the cluster's `default.replication.factor`. */
  replicationFactor?: number;
  /** Topic configs with Kafka's names (`retention.ms`, `cleanup.policy`, ...). */
  configs?: Readonly<Record<string, string>>;
}

/** The outcome for one topic: `error` is null on success. */
export interface TopicResult {
  readonly name: string;
  readonly error: SamsaError | null;
}

/** The outcome of creating one topic. */
export interface CreatedTopic extends TopicResult {
  readonly topicId: string;
  readonly numPartitions: number;
  readonly replicationFactor: number;
}

/** A topic's description; `partitions` sorted by partition number. */
export interface TopicDescription extends TopicResult {
  readonly topicId: string;
  readonly partitions: readonly PartitionMetadata[];
  readonly configs: Readonly<Record<string, string>>;
}

/** The cluster as the active controller sees it. */
export interface ClusterDescription {
  readonly clusterId: string;
  /** "" when no controller is elected. */
  readonly controllerId: string;
  /** The controller's epoch (int64 as a decimal string). */
  readonly controllerEpoch: string;
  readonly controllerAddress: string;
  readonly brokers: readonly BrokerNode[];
}

/** Kafka's leader election types: to the preferred replica, or unclean (outside the ISR). */
export type ElectionType = "preferred" | "unclean";

/** One partition of a topic. */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/**
 * The outcome of a leader election for one partition: `error` is null when the leader moved;
 * ELECTION_NOT_NEEDED when a valid leader was already in place.
 */
export interface ElectionResult extends TopicPartition {
  readonly error: SamsaError | null;
  /** The leader after the election; -1 when none (or unknown). */
  readonly leaderId: number;
  /** Its leader epoch; -1 when unknown. */
  readonly leaderEpoch: number;
}

/**
 * A partition's requested reassignment (Kafka's `alterPartitionReassignments`): the target
 * replicas, preferred leader first, or null to cancel the reassignment in progress.
 */
export interface PartitionReassignment extends TopicPartition {
  readonly replicas: readonly number[] | null;
}

/** The outcome of one requested reassignment: `error` is null when it started (or was cancelled). */
export interface ReassignmentResult extends TopicPartition {
  readonly error: SamsaError | null;
}

/** A reassignment in progress (Kafka's `PartitionReassignment`). */
export interface OngoingReassignment extends TopicPartition {
  /** Every replica while it runs: the target first, then those being removed. */
  readonly replicas: readonly number[];
  readonly addingReplicas: readonly number[];
  readonly removingReplicas: readonly number[];
}

/** The proto's ElectionType values. */
const PROTO_ELECTION_TYPES = {
  preferred: ProtoElectionType.ELECTION_TYPE_PREFERRED,
  unclean: ProtoElectionType.ELECTION_TYPE_UNCLEAN,
} as const satisfies Record<ElectionType, number>;

/** Admin operations against the controllers. Close it when done. */
export class AdminClient {
  private readonly controllers: readonly string[];
  private readonly pool: ConnectionPool<AdminServiceClient>;
  private readonly requestTimeoutMs: number;
  private readonly apiTimeoutMs: number;
  /** The controller that last answered; tried first. */
  private active: string | undefined;

  constructor(options: AdminClientOptions) {
    this.controllers = parseAddressList(options.controllers);
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.apiTimeoutMs = options.apiTimeoutMs ?? API_TIMEOUT_MS_DEFAULT;
    this.pool = new ConnectionPool(adminService.Client, options.clientOptions);
  }

  /** Creates topics; one result per topic, in request order. */
  async createTopics(
    topics: readonly NewTopic[],
    options: { validateOnly?: boolean } = {},
  ): Promise<CreatedTopic[]> {
    const response = await this.call("CreateTopics", {
      topics: topics.map((t) => ({
        name: t.name,
        numPartitions: t.numPartitions ?? USE_CLUSTER_DEFAULT,
        replicationFactor: t.replicationFactor ?? USE_CLUSTER_DEFAULT,
        configs: { ...t.configs },
      })),
      validateOnly: options.validateOnly ?? false,
    });
    return response.topics.map((t) => ({
      name: t.name,
      error: resultError(t.errorCode, t.errorMessage, `topic ${t.name}`),
      topicId: t.topicId,
      numPartitions: t.numPartitions,
      replicationFactor: t.replicationFactor,
    }));
  }

  /** Deletes topics; one result per topic. */
  async deleteTopics(names: readonly string[]): Promise<TopicResult[]> {
    const response = await this.call("DeleteTopics", { names: [...names] });
    return response.topics.map((t) => ({
      name: t.name,
      error: resultError(t.errorCode, t.errorMessage, `topic ${t.name}`),
    }));
  }

  /** Describes topics (all of them without names), sorted by name. */
  async describeTopics(names: readonly string[] = []): Promise<TopicDescription[]> {
    const response = await this.call("DescribeTopics", { names: [...names] });
    return response.topics
      .map((t) => ({
        name: t.name,
        error: resultError(t.errorCode, t.errorMessage, `topic ${t.name}`),
        topicId: t.topicId,
        partitions: t.partitions.map(toPartitionMetadata).sort((a, b) => a.partition - b.partition),
        configs: { ...t.configs },
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Runs a leader election (Kafka's `electLeaders`) for `partitions`, or for every partition of
   * every topic when undefined: then the partitions that needed no election are left out.
   * `preferred` moves leadership to the first replica when it is alive and in the ISR
   * (PREFERRED_LEADER_NOT_AVAILABLE otherwise); `unclean` elects a leader for partitions without
   * one, outside the ISR if need be. One result per partition, per-partition errors included.
   */
  async electLeaders(
    type: ElectionType,
    partitions?: readonly TopicPartition[],
  ): Promise<ElectionResult[]> {
    if (partitions !== undefined && partitions.length === 0) return [];
    const byTopic = new Map<string, number[]>();
    for (const p of partitions ?? []) {
      const list = byTopic.get(p.topic) ?? [];
      list.push(p.partition);
      byTopic.set(p.topic, list);
    }
    const response = await this.call("ElectLeaders", {
      electionType: PROTO_ELECTION_TYPES[type],
      topicPartitions: [...byTopic].map(([topic, list]) => ({ topic, partitions: list })),
    });
    return response.topics.flatMap((t) =>
      t.partitions.map((p) => ({
        topic: t.topic,
        partition: p.partition,
        error: resultError(p.errorCode, p.errorMessage, `${t.topic}-${p.partition}`),
        leaderId: p.leaderId,
        leaderEpoch: p.leaderEpoch,
      })),
    );
  }

  /**
   * Starts (or, with `replicas` null, cancels) partition reassignments (Kafka's
   * `alterPartitionReassignments`, KIP-455). The controller adds the new replicas, waits until
   * they are in the ISR, moves leadership to a target replica when needed and drops the old
   * ones; a partition with a reassignment in progress gets the new one instead. Resolves once
   * each has started; {@link listPartitionReassignments} follows them. One result per partition
   * in request order: INVALID_REPLICA_ASSIGNMENT, UNKNOWN_TOPIC_OR_PARTITION,
   * NO_REASSIGNMENT_IN_PROGRESS (cancel), ... as errors.
   */
  async alterPartitionReassignments(
    reassignments: readonly PartitionReassignment[],
  ): Promise<ReassignmentResult[]> {
    if (reassignments.length === 0) return [];
    const byTopic = new Map<string, { partition: number; replicas: number[] }[]>();
    for (const r of reassignments) {
      const list = byTopic.get(r.topic) ?? [];
      list.push({ partition: r.partition, replicas: r.replicas === null ? [] : [...r.replicas] });
      byTopic.set(r.topic, list);
    }
    const response = await this.call("AlterPartitionReassignments", {
      topics: [...byTopic].map(([name, partitions]) => ({ name, partitions })),
    });
    return response.topics.flatMap((t) =>
      t.partitions.map((p) => ({
        topic: t.name,
        partition: p.partition,
        error: resultError(p.errorCode, p.errorMessage, `${t.name}-${p.partition}`),
      })),
    );
  }

  /**
   * The reassignments in progress (Kafka's `listPartitionReassignments`), of `partitions` or of
   * every partition; sorted by topic, then partition. Partitions without one are left out.
   */
  async listPartitionReassignments(
    partitions?: readonly TopicPartition[],
  ): Promise<OngoingReassignment[]> {
    if (partitions !== undefined && partitions.length === 0) return [];
    const byTopic = new Map<string, number[]>();
    for (const p of partitions ?? []) {
      const list = byTopic.get(p.topic) ?? [];
      list.push(p.partition);
      byTopic.set(p.topic, list);
    }
    const response = await this.call("ListPartitionReassignments", {
      topics: [...byTopic].map(([name, list]) => ({ name, partitions: list })),
    });
    return response.topics
      .flatMap((t) =>
        t.partitions.map((p) => ({
          topic: t.name,
          partition: p.partition,
          replicas: p.replicas,
          addingReplicas: p.addingReplicas,
          removingReplicas: p.removingReplicas,
        })),
      )
      .sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  }

  /** The names of all topics, sorted. */
  async listTopics(): Promise<string[]> {
    const topics = await this.describeTopics();
    return topics.filter((t) => t.error === null).map((t) => t.name);
  }

  /** The cluster id, the active controller and the live brokers (sorted by id). */
  async describeCluster(): Promise<ClusterDescription> {
    const r = await this.call("DescribeCluster", {});
    return {
      clusterId: r.clusterId,
      controllerId: r.controllerId,
      controllerEpoch: r.controllerEpoch,
      controllerAddress: r.controllerAddress,
      brokers: r.brokers.map(toBrokerNode).sort((a, b) => a.id - b.id),
    };
  }

  /** Closes the channels to the controllers. */
  close(): void {
    this.pool.close();
  }

  /**
   * Calls `method` on the active controller, following NOT_CONTROLLER hints and trying every
   * configured controller, retrying retriable errors with backoff until the API deadline.
   */
  private async call<M extends UnaryMethod<AdminServiceClient>>(
    method: M,
    request: RequestOf<AdminServiceClient, M>,
  ): Promise<UnaryResponseOf<AdminServiceClient, M>> {
    const { response, address } = await callController(this.pool, method, request, {
      candidates: () => this.order(),
      deadline: new Deadline(this.apiTimeoutMs),
      requestTimeoutMs: this.requestTimeoutMs,
    });
    this.active = address;
    return response;
  }

  /** The controllers to try in order: the last one that answered, then the configured ones. */
  private order(): string[] {
    const all = this.active === undefined ? this.controllers : [this.active, ...this.controllers];
    return [...new Set(all)];
  }
}

/** A per-topic (or per-partition) error as a SamsaError, or null for NONE. */
function resultError(code: number, message: string, what: string): SamsaError | null {
  const error = fromProtoErrorCode(code);
  if (error === ErrorCode.NONE) return null;
  return new SamsaError(error, message === "" ? `${what}: ${ErrorCode[error]}` : message);
}

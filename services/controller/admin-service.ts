/**
 * The AdminService handlers. Reads (DescribeTopics, DescribeCluster) are answered by any
 * controller from its etcd mirror. Writes need the active controller: a standby forwards them to
 * it once (marking the call so it is never forwarded twice) and, when it cannot, fails with
 * NOT_CONTROLLER and the active controller's address in `samsa-controller`.
 */
import * as grpc from "@grpc/grpc-js";
import type { Etcd3 } from "etcd3";
import { asEtcdUnavailable } from "../shared/etcd/client.js";
import type { ControllerElection } from "../shared/etcd/election.js";
import { type EtcdKeys, noLeader } from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { AdminServiceHandlers } from "../shared/generated/samsa/v1/AdminService.js";
import type { AlterPartitionReassignmentsRequest__Output } from "../shared/generated/samsa/v1/AlterPartitionReassignmentsRequest.js";
import type { AlterPartitionReassignmentsResponse } from "../shared/generated/samsa/v1/AlterPartitionReassignmentsResponse.js";
import type { ListPartitionReassignmentsRequest__Output } from "../shared/generated/samsa/v1/ListPartitionReassignmentsRequest.js";
import type { ListPartitionReassignmentsResponse } from "../shared/generated/samsa/v1/ListPartitionReassignmentsResponse.js";
import type { OngoingPartitionReassignment } from "../shared/generated/samsa/v1/OngoingPartitionReassignment.js";
import type { ReassignablePartitionResult } from "../shared/generated/samsa/v1/ReassignablePartitionResult.js";
import type { ElectLeadersRequest__Output } from "../shared/generated/samsa/v1/ElectLeadersRequest.js";
import type { ElectLeadersResponse } from "../shared/generated/samsa/v1/ElectLeadersResponse.js";
import { ElectionType as ProtoElectionType } from "../shared/generated/samsa/v1/ElectionType.js";
import { ConnectionPool } from "../shared/grpc/connection-pool.js";
import { callController } from "../shared/grpc/controller-call.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import { adminService } from "../shared/grpc/proto.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { describeMetadata } from "../shared/metadata/metadata-answer.js";
import { REQUEST_PARTITIONS_MAX } from "../shared/protocol-limits.js";
import { errorResult, NO_ERROR } from "../shared/request-parsing.js";
import { toProtoErrorCode } from "../shared/grpc/errors.js";
import { Deadline } from "../shared/retry.js";
import type { ElectionResult, LeaderBalancer, TopicPartitionRef } from "./leader-balancer.js";
import type { ElectionType } from "./leader-elector.js";
import { notControllerError } from "./not-controller.js";
import type {
  OngoingReassignment,
  PartitionReassigner,
  ReassignmentRequest,
  ReassignmentResult,
} from "./partition-reassigner.js";
import { createTopic, deleteTopic, resolveTopicSpec, type TopicDefaults } from "./topic-admin.js";

/** Metadata key marking a call forwarded by a standby (never forwarded again). */
export const FORWARDED_METADATA_KEY = "samsa-forwarded";
/** Deadline of a forwarded call, ms. */
export const FORWARD_DEADLINE_MS = 30_000;
/** Topics per admin request at most. */
export const ADMIN_TOPICS_MAX = 1_000;
/**
 * How long a write waits for this controller's own election to be confirmed once it observes
 * itself as the leader, ms (the observer sees the predecessor's key go some milliseconds before
 * the campaign reports the election).
 */
export const ELECTION_CONFIRM_WAIT_MS = 1_000;

/** What the handlers need. */
export interface AdminServiceDeps {
  clusterId: string;
  controllerId: string;
  client: Etcd3;
  keys: EtcdKeys;
  metadata: ClusterMetadata;
  election: ControllerElection;
  defaults: TopicDefaults;
  /** Runs ElectLeaders' elections (read at call time, like `election`). */
  elections: Pick<LeaderBalancer, "elect">;
  /** Runs AlterPartitionReassignments and answers ListPartitionReassignments (read at call time). */
  reassignments: Pick<PartitionReassigner, "alter" | "list">;
  logger: Logger;
}

function checkTopicCount(n: number): void {
  if (n > ADMIN_TOPICS_MAX)
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `${n} topics exceed the limit of ${ADMIN_TOPICS_MAX}`,
    );
}

/** The election type of an ElectLeaders request. */
function electionTypeOf(request: ElectLeadersRequest__Output): ElectionType {
  switch (request.electionType) {
    case ProtoElectionType.ELECTION_TYPE_PREFERRED:
      return "preferred";
    case ProtoElectionType.ELECTION_TYPE_UNCLEAN:
      return "unclean";
    default:
      throw new SamsaError(ErrorCode.INVALID_REQUEST, "election_type must be PREFERRED or UNCLEAN");
  }
}

/** The partitions an ElectLeaders request names (undefined: all), without duplicates. */
function electionTargets(request: ElectLeadersRequest__Output): TopicPartitionRef[] | undefined {
  if (request.topicPartitions.length === 0) return undefined;
  checkTopicCount(request.topicPartitions.length);
  const seen = new Set<string>();
  const targets: TopicPartitionRef[] = [];
  for (const t of request.topicPartitions) {
    for (const partition of t.partitions) {
      const id = `${partition}/${t.topic}`;
      if (seen.has(id)) continue;
      seen.add(id);
      targets.push({ topic: t.topic, partition });
      if (targets.length > REQUEST_PARTITIONS_MAX)
        throw new SamsaError(
          ErrorCode.INVALID_REQUEST,
          `more than ${REQUEST_PARTITIONS_MAX} partitions in one ElectLeaders`,
        );
    }
  }
  return targets;
}

/** ElectLeaders' answer: the results grouped by topic, in order of first appearance. */
function electLeadersResponse(results: readonly ElectionResult[]): ElectLeadersResponse {
  const byTopic = new Map<string, NonNullable<ElectLeadersResponse["topics"]>[number]>();
  for (const r of results) {
    let topic = byTopic.get(r.topic);
    if (topic === undefined) {
      topic = { topic: r.topic, partitions: [] };
      byTopic.set(r.topic, topic);
    }
    topic.partitions!.push({
      partition: r.partition,
      errorCode: toProtoErrorCode(r.error),
      errorMessage: r.message,
      leaderId: r.state?.leader ?? noLeader,
      leaderEpoch: r.state?.leaderEpoch ?? -1,
    });
  }
  return { topics: [...byTopic.values()] };
}

/** The reassignments an AlterPartitionReassignments request asks for (empty replicas: cancel). */
function reassignmentRequests(
  request: AlterPartitionReassignmentsRequest__Output,
): ReassignmentRequest[] {
  checkTopicCount(request.topics.length);
  const seen = new Set<string>();
  const out: ReassignmentRequest[] = [];
  for (const t of request.topics) {
    for (const p of t.partitions) {
      const id = `${p.partition}/${t.name}`;
      if (seen.has(id)) {
        throw new SamsaError(
          ErrorCode.INVALID_REQUEST,
          `partition ${p.partition} of ${t.name} is named twice`,
        );
      }
      seen.add(id);
      out.push({
        topic: t.name,
        partition: p.partition,
        replicas: p.replicas.length === 0 ? null : [...p.replicas],
      });
      if (out.length > REQUEST_PARTITIONS_MAX)
        throw new SamsaError(
          ErrorCode.INVALID_REQUEST,
          `more than ${REQUEST_PARTITIONS_MAX} partitions in one AlterPartitionReassignments`,
        );
    }
  }
  return out;
}

/** AlterPartitionReassignments' answer: the results grouped by topic, in request order. */
function alterReassignmentsResponse(
  results: readonly ReassignmentResult[],
): AlterPartitionReassignmentsResponse {
  const byTopic = new Map<string, { name: string; partitions: ReassignablePartitionResult[] }>();
  for (const r of results) {
    let topic = byTopic.get(r.topic);
    if (topic === undefined) {
      topic = { name: r.topic, partitions: [] };
      byTopic.set(r.topic, topic);
    }
    topic.partitions.push({
      partition: r.partition,
      errorCode: toProtoErrorCode(r.error),
      errorMessage: r.message,
    });
  }
  return { topics: [...byTopic.values()] };
}

/** The partitions a ListPartitionReassignments request names (undefined: all). */
function listFilter(
  request: ListPartitionReassignmentsRequest__Output,
): Map<string, Set<number> | undefined> | undefined {
  if (request.topics.length === 0) return undefined;
  checkTopicCount(request.topics.length);
  const filter = new Map<string, Set<number> | undefined>();
  let count = 0;
  for (const t of request.topics) {
    count += t.partitions.length;
    if (count > REQUEST_PARTITIONS_MAX)
      throw new SamsaError(
        ErrorCode.INVALID_REQUEST,
        `more than ${REQUEST_PARTITIONS_MAX} partitions in one ListPartitionReassignments`,
      );
    if (t.partitions.length === 0) {
      filter.set(t.name, undefined);
      continue;
    }
    if (filter.has(t.name) && filter.get(t.name) === undefined) continue;
    const set = filter.get(t.name) ?? new Set<number>();
    for (const p of t.partitions) set.add(p);
    filter.set(t.name, set);
  }
  return filter;
}

/** ListPartitionReassignments' answer, grouped by topic. */
function listReassignmentsResponse(
  ongoing: readonly OngoingReassignment[],
): ListPartitionReassignmentsResponse {
  const byTopic = new Map<string, { name: string; partitions: OngoingPartitionReassignment[] }>();
  for (const o of ongoing) {
    let topic = byTopic.get(o.topic);
    if (topic === undefined) {
      topic = { name: o.topic, partitions: [] };
      byTopic.set(o.topic, topic);
    }
    topic.partitions.push({
      partition: o.partition,
      replicas: [...o.replicas],
      addingReplicas: [...o.addingReplicas],
      removingReplicas: [...o.removingReplicas],
    });
  }
  return { topics: [...byTopic.values()] };
}

/** Builds the handlers; `close()` drops forwarding connections. */
export function adminServiceHandlers(deps: AdminServiceDeps): {
  handlers: ServiceHandlers<AdminServiceHandlers>;
  close(): void;
} {
  // The election exists only once the server has bound its port: read it at call time.
  const { metadata } = deps;
  const election = () => deps.election;
  const forwardClients = new ConnectionPool(adminService.Client);

  const notController = (): SamsaError => notControllerError(election().leader());

  /**
   * Our leadership; when we already observe ourselves as the leader but the campaign has not
   * confirmed it yet, waits for that (bounded) instead of answering NOT_CONTROLLER naming us.
   */
  function ownLeadership(): Promise<ControllerElection["leadership"]> {
    const current = election().leadership;
    if (current || election().leader()?.id !== deps.controllerId) return Promise.resolve(current);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        off();
        resolve(election().leadership);
      };
      const timer = setTimeout(done, ELECTION_CONFIRM_WAIT_MS);
      const off = election().onElected(done);
    });
  }

  /** Runs `act` when active; otherwise forwards the call to the active controller. */
  async function activeOrForward<Req, Res>(
    method: "CreateTopics" | "DeleteTopics" | "ElectLeaders" | "AlterPartitionReassignments",
    request: Req,
    call: grpc.ServerUnaryCall<Req, Res>,
    act: (leadership: NonNullable<ControllerElection["leadership"]>) => Promise<Res>,
  ): Promise<Res> {
    const leadership = await ownLeadership();
    if (leadership) return act(leadership);
    const leader = election().leader();
    if (
      !leader ||
      leader.id === deps.controllerId ||
      call.metadata.get(FORWARDED_METADATA_KEY).length > 0
    )
      throw notController();
    const forwarded = new grpc.Metadata();
    forwarded.set(FORWARDED_METADATA_KEY, deps.controllerId);
    try {
      const { response } = await callController(forwardClients, method, request as never, {
        candidates: () => [leader.address],
        deadline: new Deadline(FORWARD_DEADLINE_MS),
        requestTimeoutMs: FORWARD_DEADLINE_MS,
        metadata: forwarded,
        retry: false,
      });
      return response as Res;
    } catch (err) {
      if (
        err instanceof SamsaError &&
        err.code !== ErrorCode.LEADER_NOT_AVAILABLE &&
        err.code !== ErrorCode.REQUEST_TIMED_OUT
      )
        throw err;
      throw notController();
    }
  }

  const handlers: ServiceHandlers<AdminServiceHandlers> = {
    CreateTopics: (request, call) =>
      activeOrForward("CreateTopics", request, call, async (leadership) => {
        checkTopicCount(request.topics.length);
        const topics = [];
        for (const t of request.topics) {
          try {
            const spec = resolveTopicSpec(
              {
                name: t.name,
                numPartitions: t.numPartitions,
                replicationFactor: t.replicationFactor,
                configs: { ...t.configs },
              },
              deps.defaults,
              metadata,
            );
            const record = request.validateOnly
              ? undefined
              : await createTopic(deps.client, deps.keys, leadership, metadata, spec);
            if (record)
              deps.logger.info("created topic", {
                topic: spec.name,
                partitions: spec.partitions,
                replicationFactor: spec.replicationFactor,
                topicId: record.id,
              });
            topics.push({
              name: t.name,
              errorCode: NO_ERROR,
              topicId: record?.id ?? "",
              numPartitions: spec.partitions,
              replicationFactor: spec.replicationFactor,
            });
          } catch (err) {
            if (err instanceof SamsaError && err.code === ErrorCode.NOT_CONTROLLER) throw err;
            topics.push({
              name: t.name,
              ...errorResult(asEtcdUnavailable(`create topic ${t.name}`, err)),
              topicId: "",
              numPartitions: -1,
              replicationFactor: -1,
            });
          }
        }
        return { topics };
      }),

    DeleteTopics: (request, call) =>
      activeOrForward("DeleteTopics", request, call, async (leadership) => {
        checkTopicCount(request.names.length);
        const topics = [];
        for (const name of request.names) {
          try {
            await deleteTopic(deps.client, deps.keys, leadership, name);
            deps.logger.info("deleted topic", { topic: name });
            topics.push({ name, errorCode: NO_ERROR });
          } catch (err) {
            if (err instanceof SamsaError && err.code === ErrorCode.NOT_CONTROLLER) throw err;
            topics.push({ name, ...errorResult(asEtcdUnavailable(`delete topic ${name}`, err)) });
          }
        }
        return { topics };
      }),

    ElectLeaders: (request, call) =>
      activeOrForward("ElectLeaders", request, call, async (leadership) => {
        const type = electionTypeOf(request);
        const results = await deps.elections.elect(leadership, type, electionTargets(request));
        const elected = results.filter((r) => r.error === ErrorCode.NONE).length;
        deps.logger.info("leader election requested", {
          election: type,
          partitions: results.length,
          elected,
        });
        return electLeadersResponse(results);
      }),

    AlterPartitionReassignments: (request, call) =>
      activeOrForward("AlterPartitionReassignments", request, call, async (leadership) => {
        const requests = reassignmentRequests(request);
        const results = await deps.reassignments.alter(leadership, requests);
        deps.logger.info("partition reassignment requested", {
          partitions: requests.length,
          cancels: requests.filter((r) => r.replicas === null).length,
          failed: results.filter((r) => r.error !== ErrorCode.NONE).length,
        });
        return alterReassignmentsResponse(results);
      }),

    ListPartitionReassignments: async (request) =>
      listReassignmentsResponse(deps.reassignments.list(listFilter(request))),

    DescribeTopics: async (request) => {
      checkTopicCount(request.names.length);
      const answer = describeMetadata(
        metadata,
        deps.clusterId,
        election().leader()?.id ?? "",
        request.names,
      );
      return {
        topics: (answer.topics ?? []).map((t) => ({
          ...t,
          errorMessage: t.errorCode ? `topic "${t.name}" does not exist` : "",
          configs: { ...(metadata.topic(t.name ?? "")?.config ?? {}) },
        })),
      };
    },

    DescribeCluster: async () => {
      const leader = election().leader();
      return {
        clusterId: deps.clusterId,
        controllerId: leader?.id ?? "",
        controllerEpoch: String(leader?.epoch ?? -1),
        controllerAddress: leader?.address ?? "",
        brokers: metadata
          .brokers()
          .map((b) => ({ id: b.id, host: b.host, port: b.port, rack: b.rack ?? "" })),
      };
    },
  };
  return {
    handlers,
    close: () => {
      forwardClients.close();
    },
  };
}

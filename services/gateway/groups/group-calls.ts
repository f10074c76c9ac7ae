/**
 * Group calls served here or forwarded to the group's owner (docs/groups.md#ownership): the
 * GroupService handlers and the ConsumeGroup streams both go through {@link GroupCalls}. A call
 * about a group is served here when this gateway coordinates it (claiming it when nobody does),
 * and forwarded once to the owner otherwise (marked with `samsa-forwarded`; a gateway that gets
 * a forwarded call for a group it does not own answers NOT_COORDINATOR naming the owner, so
 * calls never loop). An owner that cannot be reached gives COORDINATOR_NOT_AVAILABLE, and so
 * does etcd when it cannot be reached (group-store.ts); ListGroups and DescribeGroups, which read
 * etcd, answer it before the caller's deadline rather than let the call run into it.
 */
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, isSamsaError, SamsaError } from "../../shared/errors.js";
import type { ConsumerGroupHeartbeatRequest } from "../../shared/generated/samsa/v1/ConsumerGroupHeartbeatRequest.js";
import type { ConsumerGroupHeartbeatResponse__Output } from "../../shared/generated/samsa/v1/ConsumerGroupHeartbeatResponse.js";
import type { CommitOffsetsRequest } from "../../shared/generated/samsa/v1/CommitOffsetsRequest.js";
import type { PartitionResult } from "../../shared/generated/samsa/v1/PartitionResult.js";
import type { CommittedOffset } from "../../shared/generated/samsa/v1/CommittedOffset.js";
import type { GroupDescription } from "../../shared/generated/samsa/v1/GroupDescription.js";
import type { GroupListing } from "../../shared/generated/samsa/v1/GroupListing.js";
import type { GroupServiceClient } from "../../shared/generated/samsa/v1/GroupService.js";
import type { TopicPartitions } from "../../shared/generated/samsa/v1/TopicPartitions.js";
import {
  COORDINATOR_METADATA_KEY,
  fromServiceError,
  toProtoErrorCode,
} from "../../shared/grpc/errors.js";
import type { ConnectionPool } from "../../shared/grpc/connection-pool.js";
import { unary } from "../../shared/grpc/client.js";
import type { Router } from "../router.js";
import type { Routing } from "../routing.js";
import { GroupCoordinator } from "./coordinator.js";
import { describeGroup, protoGroupState } from "./group-admin.js";
import { checkGroupId, type GroupManager, type GroupRuntime } from "./group-manager.js";
import * as ops from "./group-ops.js";
import { notCoordinator } from "./group-store.js";

/** Request metadata key marking a call one gateway forwarded to a group's owner. */
export const FORWARDED_METADATA_KEY = "samsa-forwarded";
/** Request metadata key carrying the original client's address on a forwarded call. */
export const CLIENT_HOST_METADATA_KEY = "samsa-client-host";
/** Deadline of a forwarded call, ms. */
export const FORWARD_TIMEOUT_MS = 10_000;
/**
 * How long before the caller's deadline ListGroups and DescribeGroups give up on etcd and answer
 * COORDINATOR_NOT_AVAILABLE, so that the answer still reaches the caller, ms.
 */
export const ADMIN_DEADLINE_MARGIN_MS = 250;

/** Who is calling: the client's address, and whether another gateway forwarded the call. */
export interface Caller {
  readonly clientHost: string;
  readonly forwarded: boolean;
  readonly signal: AbortSignal;
  /** The caller's deadline (epoch ms), when it set one. */
  readonly deadlineAtMs?: number;
}

/** What the service needs. */
export interface GroupServiceDeps {
  readonly manager: GroupManager;
  readonly router: Router;
  readonly routing: Routing;
  /** Channels to other gateways. */
  readonly peers: ConnectionPool<GroupServiceClient>;
  /** This gateway's `host:port`. */
  readonly selfAddress: () => string;
}

/** The group calls, local or forwarded: what the handlers and ConsumeGroup streams use. */
export class GroupCalls {
  constructor(readonly deps: GroupServiceDeps) {}

  /**
   * Runs `local` when `group` is coordinated here, else `remote` on the owner's channel.
   * @throws SamsaError NOT_COORDINATOR (a forwarded call), COORDINATOR_NOT_AVAILABLE.
   */
  async route<T>(
    group: string,
    caller: Caller,
    local: (runtime: GroupRuntime) => Promise<T>,
    remote: (client: GroupServiceClient, metadata: grpc.Metadata) => Promise<T>,
  ): Promise<T> {
    checkGroupId(group);
    const where = await this.deps.manager.locate(group);
    if ("runtime" in where) return local(where.runtime);
    if (caller.forwarded) throw notCoordinator(group, where.owner);
    const metadata = new grpc.Metadata();
    metadata.set(FORWARDED_METADATA_KEY, "1");
    metadata.set(CLIENT_HOST_METADATA_KEY, caller.clientHost);
    try {
      return await remote(this.deps.peers.get(where.owner.address), metadata);
    } catch (err) {
      const e = fromServiceError(err);
      if (e.code !== ErrorCode.LEADER_NOT_AVAILABLE && e.code !== ErrorCode.REQUEST_TIMED_OUT)
        throw e;
      throw new SamsaError(
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        `the coordinator of group ${group} (${where.owner.address}) is not reachable`,
        { cause: err, metadata: { [COORDINATOR_METADATA_KEY]: where.owner.address } },
      );
    }
  }

  heartbeat(
    request: ConsumerGroupHeartbeatRequest,
    caller: Caller,
  ): Promise<ConsumerGroupHeartbeatResponse__Output> {
    const full = heartbeatDefaults(request);
    return this.route(
      full.groupId,
      caller,
      (rt) => ops.heartbeat(this.deps.manager, rt, full, caller.clientHost),
      (client, metadata) =>
        unary(client, "ConsumerGroupHeartbeat", full, {
          metadata,
          deadlineMs: FORWARD_TIMEOUT_MS,
          signal: caller.signal,
        }),
    );
  }

  commit(request: CommitOffsetsRequest, caller: Caller): Promise<PartitionResult[]> {
    const full = {
      groupId: request.groupId ?? "",
      memberId: request.memberId ?? "",
      memberEpoch: request.memberEpoch ?? -1,
      topics: (request.topics ?? []).map((t) => ({
        topic: t.topic ?? "",
        partitions: (t.partitions ?? []).map((p) => ({
          partition: p.partition ?? 0,
          offset: String(p.offset ?? "0"),
          leaderEpoch: p.leaderEpoch ?? -1,
          metadata: p.metadata ?? "",
        })),
      })),
    };
    return this.route(
      full.groupId,
      caller,
      (rt) => ops.commit(this.deps.manager, rt, full),
      async (client, metadata) =>
        (
          await unary(client, "CommitOffsets", full, {
            metadata,
            deadlineMs: FORWARD_TIMEOUT_MS,
            signal: caller.signal,
          })
        ).results,
    );
  }

  fetchOffsets(
    group: string,
    topics: TopicPartitions[],
    caller: Caller,
  ): Promise<CommittedOffset[]> {
    const list = topics.map((t) => ({ topic: t.topic ?? "", partitions: t.partitions ?? [] }));
    return this.route(
      group,
      caller,
      (rt) => ops.fetchOffsets(this.deps.manager, rt, list),
      async (client, metadata) =>
        (
          await unary(
            client,
            "FetchOffsets",
            { groupId: group, topics: list },
            { metadata, deadlineMs: FORWARD_TIMEOUT_MS, signal: caller.signal },
          )
        ).offsets,
    );
  }

  leave(group: string, memberId: string, temporary: boolean, caller: Caller): Promise<void> {
    return this.route(
      group,
      caller,
      (rt) => ops.leave(this.deps.manager, rt, memberId, temporary),
      async (client, metadata) => {
        await unary(
          client,
          "LeaveGroup",
          { groupId: group, memberId, temporary },
          { metadata, deadlineMs: FORWARD_TIMEOUT_MS, signal: caller.signal },
        );
      },
    );
  }

  /** DescribeGroups of one group; errors become the group's error code. */
  async describe(group: string, caller: Caller): Promise<GroupDescription> {
    try {
      return await beforeDeadline(caller.deadlineAtMs, `DescribeGroups of ${group}`, () =>
        this.route(
          group,
          caller,
          (rt) =>
            describeGroup(
              this.deps.manager,
              this.deps.router,
              rt,
              this.deps.selfAddress(),
              caller.signal,
            ),
          async (client, metadata) =>
            (
              await unary(
                client,
                "DescribeGroups",
                { groupIds: [group] },
                { metadata, deadlineMs: FORWARD_TIMEOUT_MS, signal: caller.signal },
              )
            ).groups[0]!,
        ),
      );
    } catch (err) {
      return { groupId: group, ...groupError(err) };
    }
  }

  /** DeleteGroups of one group; errors become the group's error code. */
  async deleteGroup(group: string, caller: Caller) {
    try {
      await this.route(
        group,
        caller,
        (rt) => ops.deleteGroup(this.deps.manager, rt),
        async (client, metadata) => {
          const res = await unary(
            client,
            "DeleteGroups",
            { groupIds: [group] },
            { metadata, deadlineMs: FORWARD_TIMEOUT_MS, signal: caller.signal },
          );
          const r = res.results[0];
          if (r !== undefined && r.errorCode !== 0)
            throw new SamsaError(r.errorCode as number as ErrorCode, r.errorMessage);
        },
      );
      return { groupId: group, errorCode: toProtoErrorCode(ErrorCode.NONE), errorMessage: "" };
    } catch (err) {
      return { groupId: group, ...groupError(err) };
    }
  }

  /**
   * ListGroups: every group in etcd, with its state (exact where coordinated here).
   * @throws SamsaError COORDINATOR_NOT_AVAILABLE when etcd cannot be read (before `deadlineAtMs`).
   */
  list(deadlineAtMs?: number): Promise<GroupListing[]> {
    return beforeDeadline(deadlineAtMs, "ListGroups", () => this.listGroups());
  }

  private async listGroups(): Promise<GroupListing[]> {
    const { manager } = this.deps;
    const ids = await manager.deps.store.listGroupIds();
    const owned = new Map(manager.owned().map((rt) => [rt.group, rt]));
    return Promise.all(
      ids.map(async (groupId): Promise<GroupListing> => {
        const rt = owned.get(groupId);
        if (rt !== undefined) {
          return {
            groupId,
            state: protoGroupState(rt.coordinator),
            members: rt.coordinator.memberCount,
            coordinator: this.deps.selfAddress(),
          };
        }
        const [record, owner] = await Promise.all([
          manager.deps.store.loadState(groupId),
          manager.deps.store.owner(groupId),
        ]);
        const c = new GroupCoordinator(groupId, manager.deps.settings, Date.now(), record);
        return {
          groupId,
          state: protoGroupState(c),
          members: c.memberCount,
          coordinator: owner?.address ?? "",
        };
      }),
    );
  }
}

/**
 * Runs `work`; when the caller has a deadline and `work` is not done
 * {@link ADMIN_DEADLINE_MARGIN_MS} before it, rejects with COORDINATOR_NOT_AVAILABLE (etcd did not
 * answer in time). The work itself goes on to its own end (every etcd call has a deadline).
 */
function beforeDeadline<T>(
  deadlineAtMs: number | undefined,
  what: string,
  work: () => Promise<T>,
): Promise<T> {
  const running = work();
  if (deadlineAtMs === undefined || !Number.isFinite(deadlineAtMs)) return running;
  running.catch(() => undefined); // it may end after the timeout answered
  const leftMs = Math.max(0, deadlineAtMs - Date.now() - ADMIN_DEADLINE_MARGIN_MS);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new SamsaError(
            ErrorCode.COORDINATOR_NOT_AVAILABLE,
            `${what}: the group coordinator did not answer within the call's deadline (etcd not available?)`,
          ),
        ),
      leftMs,
    );
  });
  return Promise.race([running, timeout]).finally(() => clearTimeout(timer));
}

function groupError(err: unknown) {
  const e = isSamsaError(err) ? err : fromServiceError(err);
  return { errorCode: toProtoErrorCode(e.code), errorMessage: e.message };
}

/** A heartbeat request with every field set (a forwarded one must not lose any). */
function heartbeatDefaults(r: ConsumerGroupHeartbeatRequest) {
  return {
    groupId: r.groupId ?? "",
    memberId: r.memberId ?? "",
    memberEpoch: r.memberEpoch ?? 0,
    instanceId: r.instanceId ?? undefined,
    rackId: r.rackId ?? undefined,
    rebalanceTimeoutMs: r.rebalanceTimeoutMs ?? 0,
    sessionTimeoutMs: r.sessionTimeoutMs ?? 0,
    subscribedTopicNames: r.subscribedTopicNames ?? [],
    serverAssignor: r.serverAssignor ?? "",
    ownedPartitions: (r.ownedPartitions ?? []).map((t) => ({
      topic: t.topic ?? "",
      partitions: t.partitions ?? [],
    })),
    clientId: r.clientId ?? "",
  };
}

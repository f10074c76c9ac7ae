/**
 * Calls of the consumer group service (`GroupService`, proto/samsa/v1/groups.proto) from a
 * client: {@link GroupClient.call} finds the coordinator through the gateways, and the admin
 * operations (list, describe, delete, fetch and reset offsets) are typed wrappers over it with
 * offsets as numbers. Any gateway serves any group (it forwards to the owner), so a call goes to
 * the gateway that answered last; NOT_COORDINATOR (only when forwarding failed) sends the next
 * attempt to the owner named in its `samsa-coordinator` metadata, and other retriable failures
 * (COORDINATOR_NOT_AVAILABLE, an unreachable gateway, a timeout) move on to the next gateway
 * after a backoff, until the call's deadline.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { GroupServiceClient } from "../shared/generated/samsa/v1/GroupService.js";
import { GroupState } from "../shared/generated/samsa/v1/GroupState.js";
import { MemberState } from "../shared/generated/samsa/v1/MemberState.js";
import type { TopicPartitions__Output } from "../shared/generated/samsa/v1/TopicPartitions.js";
import { parseAddressList } from "../shared/grpc/addresses.js";
import {
  type UnaryMethod,
  type RequestOf,
  type UnaryResponseOf,
  unary,
} from "../shared/grpc/client.js";
import { ConnectionPool } from "../shared/grpc/connection-pool.js";
import { COORDINATOR_METADATA_KEY, fromProtoErrorCode } from "../shared/grpc/errors.js";
import { groupService } from "../shared/grpc/proto.js";
import {
  API_TIMEOUT_MS_DEFAULT,
  backoffMs,
  Deadline,
  REQUEST_TIMEOUT_MS_DEFAULT,
  sleep,
} from "../shared/retry.js";

/** A partition of a topic. */
export interface GroupTopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/** A group state name (the proto's GroupState without its prefix). */
export type GroupStateName =
  | "UNSPECIFIED"
  | "EMPTY"
  | "ASSIGNING"
  | "RECONCILING"
  | "STABLE"
  | "DEAD";

/** One group of {@link GroupClient.listGroups}. */
export interface GroupListingInfo {
  readonly groupId: string;
  readonly state: GroupStateName;
  readonly members: number;
  /** The coordinating gateway, `host:port`; "" = none now. */
  readonly coordinator: string;
}

/** One member of {@link GroupClient.describeGroups}. */
export interface GroupMemberInfo {
  readonly memberId: string;
  readonly instanceId?: string;
  readonly clientId: string;
  readonly clientHost: string;
  readonly memberEpoch: number;
  readonly state: string;
  readonly topics: readonly string[];
  readonly assignment: readonly GroupTopicPartition[];
  readonly targetAssignment: readonly GroupTopicPartition[];
  readonly sessionTimeoutMs: number;
}

/** One partition's lag in {@link GroupClient.describeGroups}; -1 = none/unknown. */
export interface PartitionLagInfo extends GroupTopicPartition {
  readonly committedOffset: number;
  readonly logEndOffset: number;
  readonly lag: number;
  /** The member owning it now; "" = none. */
  readonly memberId: string;
  readonly error: ErrorCode;
}

/** One group of {@link GroupClient.describeGroups}. */
export interface GroupDescriptionInfo {
  readonly groupId: string;
  readonly error: ErrorCode;
  readonly errorMessage: string;
  readonly state: GroupStateName;
  readonly groupEpoch: number;
  readonly assignmentEpoch: number;
  readonly assignor: string;
  readonly coordinator: string;
  readonly members: readonly GroupMemberInfo[];
  readonly partitions: readonly PartitionLagInfo[];
}

/** A committed offset; `offset` -1 = none. */
export interface CommittedOffsetInfo extends GroupTopicPartition {
  readonly offset: number;
  readonly leaderEpoch: number;
  readonly metadata: string;
  readonly commitTimestamp: number;
}

/** Where {@link GroupClient.resetOffsets} moves the offsets to (exactly one). */
export type ResetTarget =
  | { toEarliest: true }
  | { toLatest: true }
  | { toDatetime: number }
  | { toOffset: number }
  | { shiftBy: number };

/** One partition of {@link GroupClient.resetOffsets}; -1 = none/error. */
export interface OffsetResetInfo extends GroupTopicPartition {
  readonly previousOffset: number;
  readonly newOffset: number;
  readonly error: ErrorCode;
  readonly errorMessage: string;
}

/** Options of {@link GroupClient}. */
export interface GroupClientOptions {
  /** Gateways, `host:port` each (or comma-separated lists). Required. */
  gateways: string | readonly string[];
  /** Deadline of one call, ms. Default {@link REQUEST_TIMEOUT_MS_DEFAULT}. */
  requestTimeoutMs?: number;
  /** Deadline of an operation with its retries, ms. Default {@link API_TIMEOUT_MS_DEFAULT}. */
  apiTimeoutMs?: number;
}

/** Options of one {@link GroupClient.call}. */
export interface GroupCallOptions {
  /** Deadline with retries, ms. Default the client's `apiTimeoutMs`. */
  timeoutMs?: number;
  /** Deadline of one attempt, ms. Default the client's `requestTimeoutMs`. */
  requestTimeoutMs?: number;
  signal?: AbortSignal;
  /** Whether to retry retriable errors; default true. */
  retry?: boolean;
}

/** The GroupService of a cluster, through its gateways. */
export class GroupClient {
  private readonly pool = new ConnectionPool<GroupServiceClient>(groupService.Client);
  private readonly gateways: readonly string[];
  private readonly requestTimeoutMs: number;
  private readonly apiTimeoutMs: number;
  /** The gateway to try first (the last that answered, or the coordinator named). */
  private preferred: string | undefined;

  constructor(options: GroupClientOptions) {
    this.gateways = parseAddressList(options.gateways);
    if (this.gateways.length === 0)
      throw new SamsaError(ErrorCode.INVALID_CONFIG, "name at least one gateway");
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.apiTimeoutMs = options.apiTimeoutMs ?? API_TIMEOUT_MS_DEFAULT;
  }

  /**
   * Calls `method` on a gateway, retrying retriable errors (see the module doc) until the
   * deadline; the last error is thrown.
   */
  async call<M extends UnaryMethod<GroupServiceClient>>(
    method: M,
    request: RequestOf<GroupServiceClient, M>,
    options: GroupCallOptions = {},
  ): Promise<UnaryResponseOf<GroupServiceClient, M>> {
    const deadline = new Deadline(options.timeoutMs ?? this.apiTimeoutMs);
    const attemptMs = options.requestTimeoutMs ?? this.requestTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const address = this.preferred ?? this.gateways[attempt % this.gateways.length]!;
      try {
        const response = await unary(this.pool.get(address), method, request, {
          deadlineMs: deadline.requestMs(attemptMs),
          signal: options.signal,
        });
        this.preferred = address;
        return response;
      } catch (err) {
        const e = err instanceof SamsaError ? err : new SamsaError(ErrorCode.UNKNOWN, String(err));
        const owner = e.metadata?.[COORDINATOR_METADATA_KEY];
        // A named coordinator is tried next; otherwise the next gateway in the list.
        this.preferred = e.code === ErrorCode.NOT_COORDINATOR && owner ? owner : undefined;
        if (!e.retriable || options.retry === false) throw e;
        if (deadline.expired || options.signal?.aborted) throw e;
        await sleep(backoffMs(attempt), options.signal, deadline);
        if (deadline.expired || options.signal?.aborted) throw e;
      }
    }
  }

  /** Every group of the cluster (optionally only those in `states`). */
  async listGroups(states: readonly GroupStateName[] = []): Promise<GroupListingInfo[]> {
    const res = await this.call("ListGroups", {
      states: states.map((s) => GroupState[`GROUP_STATE_${s}`]),
    });
    return res.groups.map((g) => ({
      groupId: g.groupId,
      state: stateName(g.state),
      members: g.members,
      coordinator: g.coordinator,
    }));
  }

  /** State, members and lag of each group, in request order. */
  async describeGroups(groupIds: readonly string[]): Promise<GroupDescriptionInfo[]> {
    const res = await this.call("DescribeGroups", { groupIds: [...groupIds] });
    return res.groups.map((g) => ({
      groupId: g.groupId,
      error: fromProtoErrorCode(g.errorCode),
      errorMessage: g.errorMessage,
      state: stateName(g.state),
      groupEpoch: g.groupEpoch,
      assignmentEpoch: g.assignmentEpoch,
      assignor: g.assignor,
      coordinator: g.coordinator,
      members: g.members.map((m) => ({
        memberId: m.memberId,
        ...(m.instanceId ? { instanceId: m.instanceId } : {}),
        clientId: m.clientId,
        clientHost: m.clientHost,
        memberEpoch: m.memberEpoch,
        state: memberStateName(m.state),
        topics: m.subscribedTopicNames,
        assignment: flatten(m.assignment),
        targetAssignment: flatten(m.targetAssignment),
        sessionTimeoutMs: m.sessionTimeoutMs,
      })),
      partitions: g.partitions.map((p) => ({
        topic: p.topic,
        partition: p.partition,
        committedOffset: Number(p.committedOffset),
        logEndOffset: Number(p.logEndOffset),
        lag: Number(p.lag),
        memberId: p.memberId,
        error: fromProtoErrorCode(p.errorCode),
      })),
    }));
  }

  /**
   * Deletes empty groups (state and committed offsets); per group NONE or the error
   * (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, ...).
   */
  async deleteGroups(groupIds: readonly string[]): Promise<Map<string, SamsaError | undefined>> {
    const res = await this.call("DeleteGroups", { groupIds: [...groupIds] });
    return new Map(
      res.results.map((r) => {
        const code = fromProtoErrorCode(r.errorCode);
        const error =
          code === ErrorCode.NONE ? undefined : new SamsaError(code, r.errorMessage || undefined);
        return [r.groupId, error];
      }),
    );
  }

  /**
   * A group's committed offsets of `topics` (an empty partition list = every partition; no
   * topics = every offset the group committed).
   */
  async fetchOffsets(
    groupId: string,
    topics: readonly { topic: string; partitions?: readonly number[] }[] = [],
    options: GroupCallOptions = {},
  ): Promise<CommittedOffsetInfo[]> {
    const res = await this.call(
      "FetchOffsets",
      {
        groupId,
        topics: topics.map((t) => ({ topic: t.topic, partitions: [...(t.partitions ?? [])] })),
      },
      options,
    );
    return res.offsets.map((o) => {
      const code = fromProtoErrorCode(o.errorCode);
      if (code !== ErrorCode.NONE)
        throw new SamsaError(code, `offset of ${o.topic}-${o.partition} in group ${groupId}`);
      return {
        topic: o.topic,
        partition: o.partition,
        offset: Number(o.offset),
        leaderEpoch: o.leaderEpoch,
        metadata: o.metadata,
        commitTimestamp: Number(o.commitTimestamp),
      };
    });
  }

  /**
   * Computes new offsets of a group's partitions (clamped into the log) and writes them only
   * with `execute` (the group must be empty then); a dry run by default.
   */
  async resetOffsets(
    groupId: string,
    topics: readonly { topic: string; partitions?: readonly number[] }[],
    target: ResetTarget,
    execute = false,
  ): Promise<{ executed: boolean; partitions: OffsetResetInfo[] }> {
    const res = await this.call("ResetOffsets", {
      groupId,
      topics: topics.map((t) => ({ topic: t.topic, partitions: [...(t.partitions ?? [])] })),
      ...resetTargetRequest(target),
      execute,
    });
    return {
      executed: res.executed,
      partitions: res.partitions.map((p) => ({
        topic: p.topic,
        partition: p.partition,
        previousOffset: Number(p.previousOffset),
        newOffset: Number(p.newOffset),
        error: fromProtoErrorCode(p.errorCode),
        errorMessage: p.errorMessage,
      })),
    };
  }

  /** Closes the gateway channels. */
  close(): void {
    this.pool.close();
  }
}

/** The request fields of a reset target (int64s as strings). */
function resetTargetRequest(target: ResetTarget) {
  if ("toEarliest" in target) return { toEarliest: true };
  if ("toLatest" in target) return { toLatest: true };
  if ("toDatetime" in target) return { toDatetime: String(target.toDatetime) };
  if ("toOffset" in target) return { toOffset: String(target.toOffset) };
  return { shiftBy: String(target.shiftBy) };
}

/** `{topic, partition}` pairs of a TopicPartitions list, sorted. */
export function flatten(list: readonly TopicPartitions__Output[]): GroupTopicPartition[] {
  return list
    .flatMap((t) => t.partitions.map((partition) => ({ topic: t.topic, partition })))
    .sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
}

function stateName(value: number | string): GroupStateName {
  const entry = Object.entries(GroupState).find(([name, v]) => v === value || name === value);
  return (entry?.[0].replace("GROUP_STATE_", "") ?? "UNSPECIFIED") as GroupStateName;
}

function memberStateName(value: number | string): string {
  const entry = Object.entries(MemberState).find(([name, v]) => v === value || name === value);
  return entry?.[0].replace("MEMBER_STATE_", "") ?? "UNSPECIFIED";
}

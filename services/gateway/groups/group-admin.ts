/**
 * The administrative group operations on a group coordinated here: DescribeGroups (state,
 * members, assignments, per partition committed offset, log end offset and lag) and
 * ResetOffsets (earliest, latest, by time, to an offset, shifted; clamped into the log; a dry
 * run unless `execute`). Both ask the partition leaders for log offsets (lag.ts) outside the
 * group's queue, so a slow leader never holds up the group's heartbeats.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { GroupDescription } from "../../shared/generated/samsa/v1/GroupDescription.js";
import type { GroupMember } from "../../shared/generated/samsa/v1/GroupMember.js";
import { GroupState } from "../../shared/generated/samsa/v1/GroupState.js";
import { MemberState } from "../../shared/generated/samsa/v1/MemberState.js";
import type { OffsetReset } from "../../shared/generated/samsa/v1/OffsetReset.js";
import type { PartitionLag } from "../../shared/generated/samsa/v1/PartitionLag.js";
import type { ResetOffsetsRequest__Output } from "../../shared/generated/samsa/v1/ResetOffsetsRequest.js";
import { toProtoErrorCode } from "../../shared/grpc/errors.js";
import { parseInt64 } from "../../shared/request-parsing.js";
import type { Router } from "../router.js";
import { parseTpKey, toTopicPartitions, tpKey } from "./assignment.js";
import type { GroupCoordinator, GroupStateName, MemberStateName } from "./coordinator.js";
import type { GroupManager, GroupRuntime } from "./group-manager.js";
import { groupExists } from "./group-ops.js";
import { lagOf, logOffsets } from "./lag.js";

const GROUP_STATES: Readonly<Record<GroupStateName, GroupState>> = {
  EMPTY: GroupState.GROUP_STATE_EMPTY,
  ASSIGNING: GroupState.GROUP_STATE_ASSIGNING,
  RECONCILING: GroupState.GROUP_STATE_RECONCILING,
  STABLE: GroupState.GROUP_STATE_STABLE,
};
const MEMBER_STATES: Readonly<Record<MemberStateName, MemberState>> = {
  STABLE: MemberState.MEMBER_STATE_STABLE,
  UNREVOKED_PARTITIONS: MemberState.MEMBER_STATE_UNREVOKED_PARTITIONS,
  UNRELEASED_PARTITIONS: MemberState.MEMBER_STATE_UNRELEASED_PARTITIONS,
  DEPARTED: MemberState.MEMBER_STATE_DEPARTED,
};

/** The proto state of a coordinator now. */
export function protoGroupState(c: GroupCoordinator): GroupState {
  return GROUP_STATES[c.state(Date.now())];
}

/** Every partition a group's lag covers: of the subscribed topics and of committed offsets. */
export function groupPartitions(
  manager: GroupManager,
  runtime: GroupRuntime,
): { topic: string; partition: number }[] {
  const keys = new Set(runtime.offsets.keys());
  for (const topic of runtime.coordinator.subscribedTopics()) {
    const n = manager.counts(topic) ?? 0;
    for (let p = 0; p < n; p++) keys.add(tpKey(topic, p));
  }
  return [...keys].sort().map(parseTpKey);
}

/** DescribeGroups of one group coordinated here. */
export async function describeGroup(
  manager: GroupManager,
  router: Router,
  runtime: GroupRuntime,
  coordinator: string,
  signal: AbortSignal,
): Promise<GroupDescription> {
  const snapshot = await manager.run(runtime, (c) => ({
    exists: groupExists(runtime),
    state: protoGroupState(c),
    groupEpoch: c.epoch,
    assignmentEpoch: c.targetEpoch,
    assignor: c.assignor(),
    members: c.memberList().map(
      (m): GroupMember => ({
        memberId: m.memberId,
        instanceId: m.instanceId,
        clientId: m.clientId,
        clientHost: m.clientHost,
        rackId: m.rackId,
        memberEpoch: m.memberEpoch,
        state: MEMBER_STATES[c.memberState(m.memberId)],
        subscribedTopicNames: [...m.topics],
        assignment: toTopicPartitions(m.assigned),
        targetAssignment: toTopicPartitions(c.targetOf(m.memberId)),
        sessionTimeoutMs: m.sessionTimeoutMs,
      }),
    ),
    partitions: groupPartitions(manager, runtime).map((p) => ({
      ...p,
      committed: runtime.offsets.get(tpKey(p.topic, p.partition))?.offset ?? -1,
      owner: c.ownerOf(p.topic, p.partition) ?? "",
    })),
  }));
  if (!snapshot.exists) {
    return {
      groupId: runtime.group,
      errorCode: toProtoErrorCode(ErrorCode.GROUP_ID_NOT_FOUND),
      errorMessage: `group ${runtime.group} does not exist`,
    };
  }
  const [ends, starts] = await Promise.all([
    logOffsets(router, snapshot.partitions, "latest", signal),
    logOffsets(
      router,
      snapshot.partitions.filter((p) => p.committed < 0),
      "earliest",
      signal,
    ),
  ]);
  const partitions = snapshot.partitions.map((p): PartitionLag => {
    const end = ends.get(tpKey(p.topic, p.partition));
    const start = starts.get(tpKey(p.topic, p.partition))?.offset ?? 0;
    const logEnd = end?.offset ?? -1;
    return {
      topic: p.topic,
      partition: p.partition,
      committedOffset: String(p.committed),
      logEndOffset: String(logEnd),
      lag: String(lagOf(p.committed, logEnd, start)),
      memberId: p.owner,
      errorCode: toProtoErrorCode(end?.errorCode ?? ErrorCode.NONE),
    };
  });
  return {
    groupId: runtime.group,
    errorCode: toProtoErrorCode(ErrorCode.NONE),
    errorMessage: "",
    state: snapshot.state,
    groupEpoch: snapshot.groupEpoch,
    assignmentEpoch: snapshot.assignmentEpoch,
    assignor: snapshot.assignor,
    members: snapshot.members,
    partitions,
    coordinator,
  };
}

/** ResetOffsets of a group coordinated here. */
export async function resetOffsets(
  manager: GroupManager,
  router: Router,
  runtime: GroupRuntime,
  request: ResetOffsetsRequest__Output,
  signal: AbortSignal,
): Promise<OffsetReset[]> {
  if (request.topics.length === 0)
    throw new SamsaError(ErrorCode.INVALID_REQUEST, "name at least one topic");
  if (request.target === undefined)
    throw new SamsaError(ErrorCode.INVALID_REQUEST, "name where to reset to");
  const parts: { topic: string; partition: number }[] = [];
  for (const t of request.topics) {
    const count = manager.counts(t.topic);
    const partitions = t.partitions.length > 0 ? t.partitions : [...Array(count ?? 0).keys()];
    if (count === undefined)
      throw new SamsaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic ${t.topic} does not exist`);
    for (const partition of partitions) parts.push({ topic: t.topic, partition });
  }
  const [starts, ends, times] = await Promise.all([
    logOffsets(router, parts, "earliest", signal),
    logOffsets(router, parts, "latest", signal),
    request.target === "toDatetime"
      ? logOffsets(
          router,
          parts,
          { timestampMs: parseInt64(request.toDatetime, "to_datetime") },
          signal,
        )
      : Promise.resolve(new Map()),
  ]);
  const results = parts.map((p): OffsetReset => {
    const key = tpKey(p.topic, p.partition);
    const previous = runtime.offsets.get(key)?.offset ?? -1;
    const start = starts.get(key)!;
    const end = ends.get(key)!;
    const failed =
      start.errorCode !== ErrorCode.NONE
        ? start
        : end.errorCode !== ErrorCode.NONE
          ? end
          : undefined;
    if (failed !== undefined || p.partition < 0)
      return {
        ...p,
        previousOffset: String(previous),
        newOffset: "-1",
        errorCode: toProtoErrorCode(failed?.errorCode ?? ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        errorMessage: "",
      };
    const wanted = targetOffset(
      request,
      previous,
      start.offset,
      end.offset,
      times.get(key)?.offset,
    );
    const clamped = Math.min(Math.max(wanted, start.offset), end.offset);
    return {
      ...p,
      previousOffset: String(previous),
      newOffset: String(clamped),
      errorCode: toProtoErrorCode(ErrorCode.NONE),
      errorMessage: "",
    };
  });
  if (!request.execute) return results;
  await manager.run(runtime, async (c) => {
    if (c.memberCount > 0)
      throw new SamsaError(
        ErrorCode.NON_EMPTY_GROUP,
        `group ${runtime.group} has ${c.memberCount} members: stop them first`,
      );
    const now = Date.now();
    const writes = results
      .filter((r) => r.errorCode === toProtoErrorCode(ErrorCode.NONE))
      .map((r) => ({
        topic: r.topic!,
        partition: r.partition!,
        record: {
          offset: Number(r.newOffset),
          leaderEpoch: -1,
          metadata: "",
          commitTimestamp: now,
          memberId: "",
          memberEpoch: -1,
        },
      }));
    await manager.deps.offsets.commit(runtime.group, runtime.epoch, writes);
    for (const w of writes) runtime.offsets.set(tpKey(w.topic, w.partition), w.record);
  });
  return results;
}

function targetOffset(
  request: ResetOffsetsRequest__Output,
  previous: number,
  start: number,
  end: number,
  byTime: number | undefined,
): number {
  switch (request.target) {
    case "toEarliest":
      return start;
    case "toLatest":
      return end;
    case "toDatetime":
      return byTime === undefined || byTime < 0 ? end : byTime;
    case "toOffset":
      return parseInt64(request.toOffset, "to_offset");
    case "shiftBy":
      return (previous >= 0 ? previous : start) + parseInt64(request.shiftBy, "shift_by");
    default:
      throw new SamsaError(ErrorCode.INVALID_REQUEST, "name where to reset to");
  }
}

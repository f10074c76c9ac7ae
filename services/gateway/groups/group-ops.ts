/**
 * The GroupService operations on a group this gateway coordinates (group-service.ts decides
 * whether a call is served here or forwarded to the owner). Each runs through
 * {@link GroupManager.run}, so it sees the group as the previous operation left it and its
 * changes are persisted before it answers.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { OffsetRecord } from "../../shared/etcd/group-records.js";
import type { CommitOffsetsRequest__Output } from "../../shared/generated/samsa/v1/CommitOffsetsRequest.js";
import type { CommittedOffset } from "../../shared/generated/samsa/v1/CommittedOffset.js";
import type { ConsumerGroupHeartbeatRequest__Output } from "../../shared/generated/samsa/v1/ConsumerGroupHeartbeatRequest.js";
import type { ConsumerGroupHeartbeatResponse__Output } from "../../shared/generated/samsa/v1/ConsumerGroupHeartbeatResponse.js";
import type { PartitionResult } from "../../shared/generated/samsa/v1/PartitionResult.js";
import { toProtoErrorCode } from "../../shared/grpc/errors.js";
import { parseInt64 } from "../../shared/request-parsing.js";
import { fromTopicPartitions, parseTpKey, toTopicPartitions, tpKey } from "./assignment.js";
import { type GroupCoordinator, STATIC_LEAVE_EPOCH, LEAVE_EPOCH } from "./coordinator.js";
import { checkGroupId, type GroupManager, type GroupRuntime } from "./group-manager.js";
import { awaitCommitTurn, COMMIT_PARTITIONS_MAX } from "./offset-store.js";

/** The heartbeat: join, heartbeat or leave (by the epoch). */
export function heartbeat(
  manager: GroupManager,
  runtime: GroupRuntime,
  request: ConsumerGroupHeartbeatRequest__Output,
  clientHost: string,
): Promise<ConsumerGroupHeartbeatResponse__Output> {
  const input = {
    memberId: request.memberId,
    memberEpoch: request.memberEpoch,
    instanceId: request.instanceId ?? undefined,
    rackId: request.rackId ?? undefined,
    rebalanceTimeoutMs: request.rebalanceTimeoutMs,
    sessionTimeoutMs: request.sessionTimeoutMs,
    topics: request.subscribedTopicNames,
    assignor: request.serverAssignor,
    owned: fromTopicPartitions(request.ownedPartitions),
    clientId: request.clientId,
    clientHost,
  };
  if (request.memberEpoch < STATIC_LEAVE_EPOCH)
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `member epoch ${request.memberEpoch} is invalid`,
    );
  if (request.memberEpoch !== 0 && request.memberId === "")
    throw new SamsaError(ErrorCode.INVALID_REQUEST, "member_id is required with a member epoch");
  return manager.run(runtime, (c) => {
    const out = c.heartbeat(input, manager.counts, Date.now());
    return {
      memberId: out.memberId,
      memberEpoch: out.memberEpoch,
      heartbeatIntervalMs: out.heartbeatIntervalMs,
      sessionTimeoutMs: out.sessionTimeoutMs,
      assignment: toTopicPartitions(out.assignment),
    };
  });
}

/** LeaveGroup. */
export function leave(
  manager: GroupManager,
  runtime: GroupRuntime,
  memberId: string,
  temporary: boolean,
): Promise<void> {
  return manager.run(runtime, (c) => c.leave(memberId, temporary, Date.now()));
}

/** CommitOffsets: checks membership and ownership, then one fenced etcd txn. */
export async function commit(
  manager: GroupManager,
  runtime: GroupRuntime,
  request: CommitOffsetsRequest__Output,
): Promise<PartitionResult[]> {
  const parts = request.topics.flatMap((t) => t.partitions.map((p) => ({ topic: t.topic, ...p })));
  if (parts.length > COMMIT_PARTITIONS_MAX)
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `at most ${COMMIT_PARTITIONS_MAX} partitions per commit`,
    );
  const started = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
  try {
    await awaitCommitTurn(runtime.limiter, runtime.group);
    const results = await manager.run(runtime, async (c) => {
      const code = c.commitCheck(request.memberId, request.memberEpoch);
      if (code !== ErrorCode.NONE) throw new SamsaError(code);
      const results: PartitionResult[] = [];
      const writes = [];
      const now = Date.now();
      for (const p of parts) {
        const error = partitionError(manager, c, request.memberId, p.topic, p.partition, p.offset);
        results.push({
          topic: p.topic,
          partition: p.partition,
          errorCode: toProtoErrorCode(error?.code ?? ErrorCode.NONE),
          errorMessage: error?.message ?? "",
        });
        if (error !== undefined) continue;
        const record: OffsetRecord = {
          offset: Number(p.offset),
          leaderEpoch: p.leaderEpoch,
          metadata: p.metadata,
          commitTimestamp: now,
          memberId: request.memberId,
          memberEpoch: request.memberEpoch,
        };
        writes.push({ topic: p.topic, partition: p.partition, record });
      }
      await manager.deps.offsets.commit(runtime.group, runtime.epoch, writes);
      for (const w of writes) runtime.offsets.set(tpKey(w.topic, w.partition), w.record);
      return results;
    });
    manager.deps.metrics.commit(runtime.group, "NONE", seconds());
    return results;
  } catch (err) {
    const code = err instanceof SamsaError ? err.codeName : "UNKNOWN";
    manager.deps.metrics.commit(runtime.group, code, seconds());
    throw err;
  }
}

function partitionError(
  manager: GroupManager,
  c: GroupCoordinator,
  memberId: string,
  topic: string,
  partition: number,
  offset: string,
): SamsaError | undefined {
  const count = manager.counts(topic);
  if (count === undefined || partition < 0 || partition >= count)
    return new SamsaError(
      ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
      `${topic}-${partition} does not exist`,
    );
  let value: number;
  try {
    value = parseInt64(offset, "offset");
  } catch (err) {
    return err as SamsaError;
  }
  if (value < 0) return new SamsaError(ErrorCode.INVALID_REQUEST, "a committed offset is >= 0");
  if (!c.owns(memberId, topic, partition))
    return new SamsaError(
      ErrorCode.STALE_MEMBER_EPOCH,
      `member ${memberId} does not own ${topic}-${partition}`,
    );
  return undefined;
}

/** FetchOffsets from the runtime's offsets (what this coordinator committed or loaded). */
export function fetchOffsets(
  manager: GroupManager,
  runtime: GroupRuntime,
  topics: readonly { topic: string; partitions: readonly number[] }[],
): Promise<CommittedOffset[]> {
  return manager.run(runtime, () => {
    const wanted: { topic: string; partition: number }[] = [];
    if (topics.length === 0) {
      for (const key of [...runtime.offsets.keys()].sort()) wanted.push(parseTpKey(key));
    }
    for (const t of topics) {
      const partitions =
        t.partitions.length > 0 ? t.partitions : [...Array(manager.counts(t.topic) ?? 0).keys()];
      for (const partition of partitions) wanted.push({ topic: t.topic, partition });
    }
    return wanted.map(({ topic, partition }) => committedOffset(runtime, topic, partition));
  });
}

/** A partition's committed offset as the proto has it (-1 = none). */
export function committedOffset(
  runtime: GroupRuntime,
  topic: string,
  partition: number,
): CommittedOffset {
  const r = runtime.offsets.get(tpKey(topic, partition));
  return {
    topic,
    partition,
    offset: String(r?.offset ?? -1),
    leaderEpoch: r?.leaderEpoch ?? -1,
    metadata: r?.metadata ?? "",
    commitTimestamp: String(r?.commitTimestamp ?? 0),
    errorCode: toProtoErrorCode(ErrorCode.NONE),
  };
}

/** DeleteGroups for one group: only an empty one; state, offsets and owner key go in one txn. */
export async function deleteGroup(manager: GroupManager, runtime: GroupRuntime): Promise<void> {
  await manager.run(runtime, async (c) => {
    if (c.memberCount > 0)
      throw new SamsaError(
        ErrorCode.NON_EMPTY_GROUP,
        `group ${runtime.group} has ${c.memberCount} members`,
      );
    if (!runtime.stored && runtime.offsets.size === 0)
      throw new SamsaError(ErrorCode.GROUP_ID_NOT_FOUND, `group ${runtime.group} does not exist`);
    await manager.deps.store.deleteGroup(runtime.group, runtime.epoch);
    manager.drop(runtime);
  });
}

/** Whether the group exists: it has members, a stored state or committed offsets. */
export function groupExists(runtime: GroupRuntime): boolean {
  return runtime.stored || runtime.offsets.size > 0 || runtime.coordinator.memberCount > 0;
}

export { checkGroupId, LEAVE_EPOCH };

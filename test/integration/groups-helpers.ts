/**
 * What the `groups-*` integration tests share: a cluster with group settings short enough for
 * tests (sessions of 3 s, the gateway lease of 3 s), and {@link HeartbeatMember}, a group member
 * speaking the raw GroupService protocol over gRPC (what a Kafka client's consumer does): it
 * heartbeats on the interval the coordinator answers, owns exactly what it was last told, and
 * can leave, stop heartbeating (a crash or a SIGSTOP, as the coordinator sees it) or commit.
 */
import type { GroupServiceClient } from "../../services/shared/generated/samsa/v1/GroupService.js";
import type { TopicPartitions__Output } from "../../services/shared/generated/samsa/v1/TopicPartitions.js";
import { unary } from "../../services/shared/grpc/client.js";
import { fromServiceError } from "../../services/shared/grpc/errors.js";
import type { SamsaError } from "../../services/shared/errors.js";

/** A member's session in these tests, ms. */
export const TEST_SESSION_MS = 3_000;
/** The gateway lease in these tests, ms. */
export const TEST_GATEWAY_LEASE_MS = 3_000;
/** Flags for every gateway of a groups test. */
export const GROUP_GATEWAY_ARGS: readonly string[] = [
  "--group.min.session.timeout.ms=1000",
  `--group.consumer.session.timeout.ms=${TEST_SESSION_MS}`,
  "--group.consumer.heartbeat.interval.ms=300",
  "--group.initial.rebalance.delay.ms=0",
  `--gateway.session.timeout.ms=${TEST_GATEWAY_LEASE_MS}`,
];
/** Deadline of one member call, ms. */
const MEMBER_CALL_MS = 5_000;

/** `topic:partition` strings of a TopicPartitions list, sorted. */
export function tpList(list: readonly TopicPartitions__Output[]): string[] {
  return list.flatMap((t) => t.partitions.map((p) => `${t.topic}:${p}`)).sort();
}

/** A group member over raw GroupService calls. */
export class HeartbeatMember {
  memberId = "";
  epoch = 0;
  owned: TopicPartitions__Output[] = [];
  /** The last error a heartbeat got (the loop keeps going). */
  lastError: SamsaError | undefined;
  heartbeats = 0;
  /** Called after every heartbeat answer. */
  onChange: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private intervalMs = 300;

  constructor(
    private readonly client: () => GroupServiceClient,
    readonly group: string,
    readonly topics: string[],
    readonly options: {
      instanceId?: string;
      sessionTimeoutMs?: number;
      assignor?: string;
      /** After UNKNOWN_MEMBER, stop heartbeating and keep the stale view (instead of rejoining). */
      keepStaleView?: boolean;
    } = {},
  ) {}

  /** The partitions owned, as `topic:partition`. */
  get partitions(): string[] {
    return tpList(this.owned);
  }

  /** One heartbeat; adopts the answer. */
  async heartbeat(): Promise<void> {
    const res = await unary(
      this.client(),
      "ConsumerGroupHeartbeat",
      {
        groupId: this.group,
        memberId: this.memberId,
        memberEpoch: this.epoch,
        instanceId: this.options.instanceId,
        sessionTimeoutMs: this.options.sessionTimeoutMs ?? 0,
        subscribedTopicNames: this.epoch === 0 ? this.topics : [],
        serverAssignor: this.options.assignor ?? "",
        ownedPartitions: this.owned,
        clientId: "groups-test",
      },
      { deadlineMs: MEMBER_CALL_MS },
    );
    this.heartbeats++;
    this.memberId = res.memberId;
    this.epoch = res.memberEpoch;
    this.owned = res.assignment;
    this.intervalMs = res.heartbeatIntervalMs;
    this.onChange?.();
  }

  /** Heartbeats in the background until {@link halt}, {@link leave} or {@link crash}. */
  start(): this {
    this.running = true;
    const beat = async () => {
      try {
        await this.heartbeat();
        this.lastError = undefined;
      } catch (err) {
        this.lastError = fromServiceError(err);
        const forgotten = this.lastError.code === 15 || this.lastError.code === 38;
        if (forgotten && this.options.keepStaleView) {
          this.running = false;
          return;
        }
        // Fenced or forgotten: drop everything and join again, as a client does.
        if (forgotten) {
          this.memberId = "";
          this.epoch = 0;
          this.owned = [];
        }
      }
      if (this.running) this.timer = setTimeout(beat, Math.min(this.intervalMs, 300));
    };
    void beat();
    return this;
  }

  /** Stops heartbeating without a word (a crash, or a SIGSTOP, as the coordinator sees it). */
  crash(): void {
    this.running = false;
    clearTimeout(this.timer);
  }

  /** Leaves the group (epoch -1, or -2 for a static member's temporary leave). */
  async leave(temporary = false): Promise<void> {
    this.crash();
    await unary(
      this.client(),
      "ConsumerGroupHeartbeat",
      { groupId: this.group, memberId: this.memberId, memberEpoch: temporary ? -2 : -1 },
      { deadlineMs: MEMBER_CALL_MS },
    );
    this.owned = [];
  }

  /** Commits `offset` for every partition given, with this member's id and epoch. */
  async commit(offsets: { topic: string; partition: number; offset: number }[]) {
    const byTopic = new Map<string, { partition: number; offset: string }[]>();
    for (const o of offsets) {
      const list = byTopic.get(o.topic) ?? [];
      list.push({ partition: o.partition, offset: String(o.offset) });
      byTopic.set(o.topic, list);
    }
    return unary(
      this.client(),
      "CommitOffsets",
      {
        groupId: this.group,
        memberId: this.memberId,
        memberEpoch: this.epoch,
        topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
      },
      { deadlineMs: MEMBER_CALL_MS },
    );
  }
}

/** Asserts-free check: each of `partitions` owned by exactly one of `members`. */
export function exclusiveCover(
  members: readonly HeartbeatMember[],
  partitions: readonly string[],
): boolean {
  const owners = new Map<string, number>();
  for (const m of members) for (const p of m.partitions) owners.set(p, (owners.get(p) ?? 0) + 1);
  return partitions.every((p) => owners.get(p) === 1) && owners.size === partitions.length;
}

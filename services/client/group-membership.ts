/**
 * A consumer group member's side of KIP-848's heartbeat protocol, for the {@link GroupConsumer}:
 * the heartbeat runs on its own timer (never behind record processing, so a slow handler does
 * not lose the membership), sends the partitions the member owns, and hands the answer's
 * changes to its owner: partitions to take (`onAssigned`), partitions to give up (`onRevoked`,
 * which resolves once they are dropped; they stay listed as owned until then, so the coordinator
 * does not give them to another member before their commit), and the loss of every partition
 * when the coordinator fenced the member (`onLost`: FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER; the
 * member then joins again with epoch 0). Retriable failures are retried with a backoff through
 * {@link GroupClient} (which follows NOT_COORDINATOR); other errors end the loop through `onFatal`.
 */
import { ErrorCode, isSamsaError, SamsaError } from "../shared/errors.js";
import type { ConsumerGroupHeartbeatResponse__Output } from "../shared/generated/samsa/v1/ConsumerGroupHeartbeatResponse.js";
import { backoffMs, sleep } from "../shared/retry.js";
import { flatten, type GroupClient, type GroupTopicPartition } from "./group-client.js";

/** Member epoch of a join. */
export const JOIN_EPOCH = 0;
/** Member epoch of a leave. */
export const LEAVE_EPOCH = -1;
/** Member epoch of a static member's temporary leave. */
export const STATIC_LEAVE_EPOCH = -2;
/** Next heartbeat after an answer that changed the assignment or epoch, ms (reconciliation goes faster). */
export const RECONCILE_HEARTBEAT_MS = 200;
/** Heartbeat interval before the coordinator named one, ms. */
const HEARTBEAT_INTERVAL_MS_INITIAL = 1_000;

/** What the membership needs from its consumer. */
export interface MembershipHandlers {
  /** The partitions owned now (assigned and being revoked), sent with every heartbeat. */
  owned(): GroupTopicPartition[];
  /** Partitions newly assigned. */
  onAssigned(partitions: GroupTopicPartition[]): void;
  /** Partitions to give up; resolves once they are no longer owned. */
  onRevoked(partitions: GroupTopicPartition[]): Promise<void>;
  /** Every partition is lost (fenced): drop them without committing. */
  onLost(): Promise<void>;
  /** A non-retriable error: the member cannot go on. */
  onFatal(err: SamsaError): void;
}

/** The member's settings. */
export interface MembershipSettings {
  readonly groupId: string;
  readonly instanceId?: string;
  readonly rackId?: string;
  readonly clientId: string;
  readonly sessionTimeoutMs: number;
  readonly rebalanceTimeoutMs: number;
  readonly serverAssignor: string;
  readonly requestTimeoutMs: number;
}

/** One member's heartbeat loop. */
export class GroupMembership {
  memberId = "";
  epoch = JOIN_EPOCH;
  /** The subscribed topics; a change is sent with the next heartbeat. */
  topics: readonly string[] = [];
  heartbeats = 0;
  private subscriptionChanged = true;
  private intervalMs = HEARTBEAT_INTERVAL_MS_INITIAL;
  private readonly stopped = new AbortController();
  private wake = new AbortController();
  private loopDone: Promise<void> = Promise.resolve();
  private revoking = new Set<string>();

  constructor(
    private readonly client: GroupClient,
    private readonly settings: MembershipSettings,
    private readonly handlers: MembershipHandlers,
  ) {}

  /** Starts heartbeating (joins the group). */
  start(): void {
    this.loopDone = this.loop();
  }

  /** Sets the subscription (sent with the next heartbeat, at once when running). */
  subscribe(topics: readonly string[]): void {
    this.topics = [...new Set(topics)].sort();
    this.subscriptionChanged = true;
    this.heartbeatSoon();
  }

  /** Heartbeats now instead of at the next interval. */
  heartbeatSoon(): void {
    this.wake.abort();
  }

  /** Stops heartbeating and leaves the group (temporarily for a static member). */
  async leave(): Promise<void> {
    this.stopped.abort();
    this.wake.abort();
    await this.loopDone;
    if (this.memberId === "") return;
    const temporary = this.settings.instanceId !== undefined;
    await this.client
      .call(
        "ConsumerGroupHeartbeat",
        {
          groupId: this.settings.groupId,
          memberId: this.memberId,
          memberEpoch: temporary ? STATIC_LEAVE_EPOCH : LEAVE_EPOCH,
        },
        { timeoutMs: this.settings.requestTimeoutMs },
      )
      .catch(() => undefined); // the session ends it anyway
    this.epoch = LEAVE_EPOCH;
  }

  private async loop(): Promise<void> {
    let attempt = 0;
    while (!this.stopped.signal.aborted) {
      let nextMs: number;
      try {
        nextMs = await this.heartbeatOnce();
        attempt = 0;
      } catch (err) {
        if (this.stopped.signal.aborted) return;
        const e = isSamsaError(err) ? err : new SamsaError(ErrorCode.UNKNOWN, String(err));
        if (e.code === ErrorCode.FENCED_MEMBER_EPOCH || e.code === ErrorCode.UNKNOWN_MEMBER) {
          // KIP-848: drop every partition without committing, then join again with epoch 0.
          await this.handlers.onLost();
          this.revoking.clear();
          if (e.code === ErrorCode.UNKNOWN_MEMBER) this.memberId = "";
          this.epoch = JOIN_EPOCH;
          continue;
        }
        if (!e.retriable) {
          this.handlers.onFatal(e);
          return;
        }
        nextMs = backoffMs(attempt++);
      }
      if (this.wake.signal.aborted) this.wake = new AbortController();
      await sleep(nextMs, AbortSignal.any([this.stopped.signal, this.wake.signal]));
      if (this.wake.signal.aborted) this.wake = new AbortController();
    }
  }

  /** One heartbeat and what follows from its answer; returns when to heartbeat next, ms. */
  private async heartbeatOnce(): Promise<number> {
    const s = this.settings;
    const owned = this.handlers.owned();
    const sendTopics = this.epoch === JOIN_EPOCH || this.subscriptionChanged;
    this.subscriptionChanged = false;
    let res: ConsumerGroupHeartbeatResponse__Output;
    try {
      res = await this.client.call(
        "ConsumerGroupHeartbeat",
        {
          groupId: s.groupId,
          memberId: this.memberId,
          memberEpoch: this.epoch,
          instanceId: s.instanceId,
          rackId: s.rackId,
          rebalanceTimeoutMs: s.rebalanceTimeoutMs,
          sessionTimeoutMs: s.sessionTimeoutMs,
          subscribedTopicNames: sendTopics ? [...this.topics] : [],
          serverAssignor: s.serverAssignor,
          ownedPartitions: byTopic(owned),
          clientId: s.clientId,
        },
        // One attempt per beat: the loop retries, and a beat must not outlast the session.
        { retry: false, timeoutMs: Math.min(s.requestTimeoutMs, this.intervalMs * 3) },
      );
    } catch (err) {
      if (sendTopics) this.subscriptionChanged = true;
      throw err;
    }
    this.heartbeats++;
    if (this.stopped.signal.aborted) return 0;
    const assignment = flatten(res.assignment);
    const epochChanged = res.memberEpoch !== this.epoch || res.memberId !== this.memberId;
    this.memberId = res.memberId;
    this.epoch = res.memberEpoch;
    this.intervalMs = Math.max(1, res.heartbeatIntervalMs);
    const next = new Set(assignment.map(key));
    // What is owned now: a revocation may have ended while the heartbeat was in flight.
    const current = this.handlers.owned();
    const have = new Set(current.map(key));
    const revoked = current.filter((p) => !next.has(key(p)) && !this.revoking.has(key(p)));
    const added = assignment.filter((p) => !have.has(key(p)));
    if (added.length > 0) this.handlers.onAssigned(added);
    if (revoked.length > 0) {
      for (const p of revoked) this.revoking.add(key(p));
      void this.handlers.onRevoked(revoked).finally(() => {
        for (const p of revoked) this.revoking.delete(key(p));
        this.heartbeatSoon(); // tell the coordinator they are released
      });
    }
    const changed = epochChanged || added.length > 0 || revoked.length > 0;
    return changed ? Math.min(this.intervalMs, RECONCILE_HEARTBEAT_MS) : this.intervalMs;
  }
}

/** `topic:partition`. */
export function key(p: GroupTopicPartition): string {
  return `${p.topic}:${p.partition}`;
}

/** Partitions grouped by topic, as the proto lists them. */
export function byTopic(
  partitions: readonly GroupTopicPartition[],
): { topic: string; partitions: number[] }[] {
  const map = new Map<string, number[]>();
  for (const p of partitions) {
    const list = map.get(p.topic) ?? [];
    list.push(p.partition);
    map.set(p.topic, list);
  }
  return [...map].map(([topic, partitions]) => ({ topic, partitions }));
}

/**
 * The state machine of one consumer group (KIP-848's group protocol), pure: no I/O, no clock
 * and no timers of its own. Every call takes `nowMs`; the owner (group-service.ts) serialises
 * calls, persists {@link GroupCoordinator.record} after each call that changed it, and calls
 * {@link GroupCoordinator.tick} periodically to expire sessions and run deferred assignments.
 *
 * The group keeps a **group epoch** (bumped by every change of membership, subscriptions,
 * assignor or subscribed topics' partition counts), a **target assignment** computed by the
 * assignor at the group epoch (its **assignment epoch**), and per member the partitions it may
 * own now (`assigned`) and those it must give up (`pendingRevocation`). A member's reconciliation
 * towards its target, at each of its heartbeats:
 *
 *   1. partitions it has that its target lacks are revoked: they leave `assigned` for
 *      `pendingRevocation`, and the member keeps its epoch until its heartbeat's owned partitions
 *      no longer list them (or its rebalance timeout removes it from the group);
 *   2. then it moves to the assignment epoch and gets the target's partitions that no other
 *      member holds (assigned or pending revocation); the rest come at later heartbeats, once
 *      their old owners released them.
 *
 * A member whose target did not change just moves to the new epoch and keeps reading. See
 * docs/groups.md for the diagrams.
 */
import { randomUUID } from "node:crypto";
import { assert, ErrorCode, SamsaError } from "../../shared/errors.js";
import {
  type Assignment,
  EMPTY_ASSIGNMENT,
  fromKeys,
  intersect,
  isEmpty,
  sameAssignment,
  subtract,
  toKeys,
  union,
} from "./assignment.js";
import { ASSIGNOR_DEFAULT, type AssignorName, assignorFor, assignorName } from "./assignor.js";

/** Member epoch of a heartbeat that joins. */
export const JOIN_EPOCH = 0;
/** Member epoch of a heartbeat that leaves. */
export const LEAVE_EPOCH = -1;
/** Member epoch of a static member's temporary leave. */
export const STATIC_LEAVE_EPOCH = -2;
/** Default rebalance timeout (how long a member may take to revoke), ms (Kafka's max.poll.interval.ms). */
export const REBALANCE_TIMEOUT_MS_DEFAULT = 60_000;

/** The coordinator's settings (from the gateway config; see docs/configuration.md). */
export interface GroupSettings {
  /** group.consumer.session.timeout.ms: a member's session when it asks for none, ms. */
  readonly sessionTimeoutMsDefault: number;
  /** group.min.session.timeout.ms. */
  readonly sessionTimeoutMsMin: number;
  /** group.max.session.timeout.ms. */
  readonly sessionTimeoutMsMax: number;
  /** group.consumer.heartbeat.interval.ms (capped at a third of the member's session). */
  readonly heartbeatIntervalMs: number;
  /** group.initial.rebalance.delay.ms: how long an empty group waits for more members. */
  readonly initialRebalanceDelayMs: number;
  /** Makes member ids (tests pin them). Default random UUIDs. */
  readonly newMemberId?: () => string;
}

/** One member as persisted. */
export interface MemberRecord {
  readonly memberId: string;
  readonly instanceId?: string;
  readonly rackId?: string;
  readonly clientId: string;
  readonly clientHost: string;
  readonly topics: readonly string[];
  /** The assignor this member names; undefined = none. */
  readonly assignor?: AssignorName;
  readonly sessionTimeoutMs: number;
  readonly rebalanceTimeoutMs: number;
  readonly memberEpoch: number;
  readonly previousMemberEpoch: number;
  /** What the member may own now. */
  readonly assigned: Assignment;
  /** What it was told to give up and has not released yet. */
  readonly pendingRevocation: Assignment;
  /** A static member that left temporarily: its partitions wait for its instance id. */
  readonly departed: boolean;
}

/** A group as persisted in etcd (`groups/<group>/state`). */
export interface GroupRecord {
  readonly groupId: string;
  readonly groupEpoch: number;
  readonly assignmentEpoch: number;
  readonly members: Readonly<Record<string, MemberRecord>>;
  readonly target: Readonly<Record<string, Assignment>>;
  /** Partition counts of the subscribed topics at the last target computation. */
  readonly partitionCounts: Readonly<Record<string, number>>;
  /** The target is not computed before this time (group.initial.rebalance.delay.ms). */
  readonly assignNotBeforeMs: number;
}

/** A group's state (the proto's GroupState). */
export type GroupStateName = "EMPTY" | "ASSIGNING" | "RECONCILING" | "STABLE";
/** A member's state (the proto's MemberState). */
export type MemberStateName =
  | "STABLE"
  | "UNREVOKED_PARTITIONS"
  | "UNRELEASED_PARTITIONS"
  | "DEPARTED";

/** A heartbeat, validated by the caller only for shape. */
export interface HeartbeatInput {
  readonly memberId: string;
  readonly memberEpoch: number;
  readonly instanceId?: string;
  readonly rackId?: string;
  readonly rebalanceTimeoutMs: number;
  readonly sessionTimeoutMs: number;
  readonly topics: readonly string[];
  readonly assignor: string;
  readonly owned: Assignment;
  readonly clientId: string;
  readonly clientHost: string;
}

/** The answer to a heartbeat. */
export interface HeartbeatOutput {
  readonly memberId: string;
  readonly memberEpoch: number;
  readonly heartbeatIntervalMs: number;
  readonly sessionTimeoutMs: number;
  readonly assignment: Assignment;
}

/** Looks up a topic's partition count; undefined = no such topic. */
export type PartitionCounts = (topic: string) => number | undefined;

/** Mutable member (the record's fields, writable). */
type Member = { -readonly [K in keyof MemberRecord]: MemberRecord[K] };

export class GroupCoordinator {
  private groupEpoch: number;
  private assignmentEpoch: number;
  private readonly members = new Map<string, Member>();
  private target = new Map<string, Assignment>();
  private partitionCounts: Record<string, number>;
  private assignNotBeforeMs: number;
  /** Session deadlines (not persisted: a new owner gives every member a fresh session). */
  private readonly sessionDeadlines = new Map<string, number>();
  private readonly revocationDeadlines = new Map<string, number>();
  /** Bumped by every change to the persisted record. */
  private versionCount = 0;

  constructor(
    readonly groupId: string,
    private readonly settings: GroupSettings,
    nowMs: number,
    record?: GroupRecord,
  ) {
    this.groupEpoch = record?.groupEpoch ?? 0;
    this.assignmentEpoch = record?.assignmentEpoch ?? 0;
    this.partitionCounts = { ...(record?.partitionCounts ?? {}) };
    this.assignNotBeforeMs = record?.assignNotBeforeMs ?? 0;
    for (const m of Object.values(record?.members ?? {})) {
      this.members.set(m.memberId, { ...m });
      this.sessionDeadlines.set(m.memberId, nowMs + m.sessionTimeoutMs);
      if (!isEmpty(m.pendingRevocation))
        this.revocationDeadlines.set(m.memberId, nowMs + m.rebalanceTimeoutMs);
    }
    for (const [id, a] of Object.entries(record?.target ?? {})) this.target.set(id, a);
  }

  /** Changes when the persisted record changes. */
  get version(): number {
    return this.versionCount;
  }

  /** The record to persist. */
  record(): GroupRecord {
    return {
      groupId: this.groupId,
      groupEpoch: this.groupEpoch,
      assignmentEpoch: this.assignmentEpoch,
      members: Object.fromEntries([...this.members].map(([id, m]) => [id, { ...m }])),
      target: Object.fromEntries(this.target),
      partitionCounts: { ...this.partitionCounts },
      assignNotBeforeMs: this.assignNotBeforeMs,
    };
  }

  /** Number of members (departed static members included). */
  get memberCount(): number {
    return this.members.size;
  }

  /** The group epoch. */
  get epoch(): number {
    return this.groupEpoch;
  }

  /** The assignment epoch. */
  get targetEpoch(): number {
    return this.assignmentEpoch;
  }

  /** A member's record, if it is one. */
  member(memberId: string): MemberRecord | undefined {
    return this.members.get(memberId);
  }

  /** Every member. */
  memberList(): MemberRecord[] {
    return [...this.members.values()];
  }

  /** A member's target assignment. */
  targetOf(memberId: string): Assignment {
    return this.target.get(memberId) ?? EMPTY_ASSIGNMENT;
  }

  /** The assignor in use: the one most members name (ties: the default, then by name). */
  assignor(): AssignorName {
    const votes = new Map<AssignorName, number>();
    for (const m of this.members.values()) {
      if (m.assignor !== undefined) votes.set(m.assignor, (votes.get(m.assignor) ?? 0) + 1);
    }
    let best: AssignorName = ASSIGNOR_DEFAULT;
    let bestVotes = votes.get(ASSIGNOR_DEFAULT) ?? 0;
    for (const [name, n] of [...votes].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (n > bestVotes) [best, bestVotes] = [name, n];
    }
    return best;
  }

  /** The group's state at `nowMs`. */
  state(nowMs: number): GroupStateName {
    if (this.members.size === 0) return "EMPTY";
    if (nowMs < this.assignNotBeforeMs || this.assignmentEpoch < this.groupEpoch)
      return "ASSIGNING";
    for (const m of this.members.values()) {
      if (this.memberState(m.memberId) !== "STABLE" && !m.departed) return "RECONCILING";
    }
    return "STABLE";
  }

  /** A member's state. */
  memberState(memberId: string): MemberStateName {
    const m = this.members.get(memberId);
    assert(m !== undefined, `member ${memberId} exists`);
    if (m.departed) return "DEPARTED";
    if (!isEmpty(m.pendingRevocation)) return "UNREVOKED_PARTITIONS";
    if (
      m.memberEpoch !== this.assignmentEpoch ||
      !sameAssignment(m.assigned, this.targetOf(memberId))
    )
      return "UNRELEASED_PARTITIONS";
    return "STABLE";
  }

  /**
   * Handles one heartbeat (join, heartbeat or leave by its epoch).
   * @throws SamsaError UNKNOWN_MEMBER, FENCED_MEMBER_EPOCH, UNRELEASED_INSTANCE_ID,
   *   INVALID_SESSION_TIMEOUT, UNSUPPORTED_ASSIGNOR, INVALID_REQUEST.
   */
  heartbeat(input: HeartbeatInput, counts: PartitionCounts, nowMs: number): HeartbeatOutput {
    if (input.memberEpoch === LEAVE_EPOCH || input.memberEpoch === STATIC_LEAVE_EPOCH) {
      this.leave(input.memberId, input.memberEpoch === STATIC_LEAVE_EPOCH, nowMs);
      return { ...this.output(input.memberId, input.sessionTimeoutMs), memberEpoch: LEAVE_EPOCH };
    }
    const assignor = this.checkAssignor(input.assignor);
    // A member still at epoch 0 (it joined during the initial delay and has no assignment yet)
    // heartbeats with epoch 0: that is its heartbeat, not a new join.
    const known = this.members.get(input.memberId);
    const waiting = known !== undefined && !known.departed && known.memberEpoch === JOIN_EPOCH;
    const member =
      input.memberEpoch === JOIN_EPOCH && !waiting
        ? this.join(input, assignor, nowMs)
        : this.existing(input, assignor, nowMs);
    this.tick(nowMs, counts);
    this.reconcile(member, nowMs);
    return this.output(member.memberId, member.sessionTimeoutMs);
  }

  /**
   * Removes a member (`temporary`: a static member departs, keeping its partitions until its
   * session timeout). Unknown members are ignored: leaving twice is not an error.
   */
  leave(memberId: string, temporary: boolean, nowMs: number): void {
    const m = this.members.get(memberId);
    if (m === undefined) return;
    if (temporary && m.instanceId !== undefined) {
      if (!m.departed) {
        m.departed = true;
        this.sessionDeadlines.set(memberId, nowMs + m.sessionTimeoutMs);
        this.changed();
      }
      return;
    }
    this.remove(memberId);
  }

  /**
   * Expires sessions and overdue revocations, then computes the target assignment when the
   * group epoch moved past it (and the initial delay is over). Returns whether anything changed.
   */
  tick(nowMs: number, counts: PartitionCounts): boolean {
    const before = this.versionCount;
    for (const [id, deadline] of this.sessionDeadlines) if (nowMs >= deadline) this.remove(id);
    for (const [id, deadline] of this.revocationDeadlines) if (nowMs >= deadline) this.remove(id);
    this.computeTarget(nowMs, counts);
    return this.versionCount !== before;
  }

  /**
   * Whether `memberId` at `memberEpoch` may commit `topic`-`partition`: NONE, UNKNOWN_MEMBER,
   * STALE_MEMBER_EPOCH (an epoch older than the one before the current, or a partition the member
   * does not own). Empty member id (a non-member) is allowed only for an empty group:
   * NON_EMPTY_GROUP otherwise.
   */
  commitCheck(memberId: string, memberEpoch: number): ErrorCode {
    if (memberId === "")
      return this.members.size === 0 ? ErrorCode.NONE : ErrorCode.NON_EMPTY_GROUP;
    const m = this.members.get(memberId);
    if (m === undefined || m.departed) return ErrorCode.UNKNOWN_MEMBER;
    if (memberEpoch !== m.memberEpoch && memberEpoch !== m.previousMemberEpoch)
      return ErrorCode.STALE_MEMBER_EPOCH;
    return ErrorCode.NONE;
  }

  /** Whether a member owns a partition now (assigned, or being revoked from it). */
  owns(memberId: string, topic: string, partition: number): boolean {
    if (memberId === "") return true;
    const m = this.members.get(memberId);
    if (m === undefined) return false;
    return (
      (m.assigned[topic]?.includes(partition) ?? false) ||
      (m.pendingRevocation[topic]?.includes(partition) ?? false)
    );
  }

  /** The member owning a partition now, if any. */
  ownerOf(topic: string, partition: number): string | undefined {
    for (const m of this.members.values())
      if (this.owns(m.memberId, topic, partition)) return m.memberId;
    return undefined;
  }

  /** Every topic some member subscribes to. */
  subscribedTopics(): string[] {
    const topics = new Set<string>();
    for (const m of this.members.values()) for (const t of m.topics) topics.add(t);
    return [...topics].sort();
  }

  private checkAssignor(name: string): AssignorName | undefined {
    if (name === "") return undefined;
    const canonical = assignorName(name);
    if (canonical === undefined)
      throw new SamsaError(ErrorCode.UNSUPPORTED_ASSIGNOR, `unknown server assignor ${name}`);
    return canonical;
  }

  private checkSessionTimeout(ms: number): number {
    const s = this.settings;
    if (ms === 0) return s.sessionTimeoutMsDefault;
    if (ms < s.sessionTimeoutMsMin || ms > s.sessionTimeoutMsMax) {
      throw new SamsaError(
        ErrorCode.INVALID_SESSION_TIMEOUT,
        `session timeout ${ms} ms is outside [${s.sessionTimeoutMsMin}, ${s.sessionTimeoutMsMax}]`,
      );
    }
    return ms;
  }

  private join(input: HeartbeatInput, assignor: AssignorName | undefined, nowMs: number): Member {
    const sessionTimeoutMs = this.checkSessionTimeout(input.sessionTimeoutMs);
    if (input.topics.length === 0)
      throw new SamsaError(
        ErrorCode.INVALID_REQUEST,
        "a join must subscribe to at least one topic",
      );
    const topics = [...new Set(input.topics)].sort();
    const fields = {
      rackId: input.rackId,
      clientId: input.clientId,
      clientHost: input.clientHost,
      topics,
      assignor,
      sessionTimeoutMs,
      rebalanceTimeoutMs:
        input.rebalanceTimeoutMs > 0 ? input.rebalanceTimeoutMs : REBALANCE_TIMEOUT_MS_DEFAULT,
    };
    const memberId =
      input.memberId !== "" ? input.memberId : (this.settings.newMemberId ?? randomUUID)();
    const previous = input.instanceId === undefined ? undefined : this.byInstance(input.instanceId);
    if (previous !== undefined) return this.replaceStatic(previous, memberId, fields, nowMs);
    // A known member joining again (it was fenced) starts over: its partitions are freed.
    if (this.members.has(memberId)) this.remove(memberId);
    if (this.members.size === 0 && this.settings.initialRebalanceDelayMs > 0)
      this.assignNotBeforeMs = nowMs + this.settings.initialRebalanceDelayMs;
    const member: Member = {
      memberId,
      instanceId: input.instanceId,
      ...fields,
      memberEpoch: 0,
      previousMemberEpoch: 0,
      assigned: EMPTY_ASSIGNMENT,
      pendingRevocation: EMPTY_ASSIGNMENT,
      departed: false,
    };
    this.members.set(memberId, member);
    this.sessionDeadlines.set(memberId, nowMs + sessionTimeoutMs);
    this.bumpGroupEpoch();
    return member;
  }

  /**
   * A static member's instance id joins again: after a temporary leave (or from the member
   * itself, whose response was lost) the new member id takes over the old one's partitions,
   * epoch and target without a rebalance; while another live member holds the id,
   * UNRELEASED_INSTANCE_ID.
   */
  private replaceStatic(
    previous: Member,
    memberId: string,
    fields: Pick<
      Member,
      | "rackId"
      | "clientId"
      | "clientHost"
      | "topics"
      | "assignor"
      | "sessionTimeoutMs"
      | "rebalanceTimeoutMs"
    >,
    nowMs: number,
  ): Member {
    if (!previous.departed && previous.memberId !== memberId) {
      throw new SamsaError(
        ErrorCode.UNRELEASED_INSTANCE_ID,
        `instance id ${previous.instanceId} is held by member ${previous.memberId}`,
      );
    }
    const member: Member = { ...previous, ...fields, memberId, departed: false };
    const target = this.target.get(previous.memberId);
    this.members.delete(previous.memberId);
    this.sessionDeadlines.delete(previous.memberId);
    this.target.delete(previous.memberId);
    const revocation = this.revocationDeadlines.get(previous.memberId);
    this.revocationDeadlines.delete(previous.memberId);
    this.members.set(memberId, member);
    if (target !== undefined) this.target.set(memberId, target);
    if (revocation !== undefined) this.revocationDeadlines.set(memberId, revocation);
    this.sessionDeadlines.set(memberId, nowMs + member.sessionTimeoutMs);
    const subscriptionChanged =
      previous.topics.join("\u0000") !== member.topics.join("\u0000") ||
      previous.assignor !== member.assignor;
    if (subscriptionChanged) this.bumpGroupEpoch();
    else this.changed();
    return member;
  }

  private existing(
    input: HeartbeatInput,
    assignor: AssignorName | undefined,
    nowMs: number,
  ): Member {
    const m = this.members.get(input.memberId);
    if (m === undefined || m.departed) {
      throw new SamsaError(
        ErrorCode.UNKNOWN_MEMBER,
        `member ${input.memberId} is not in group ${this.groupId}`,
      );
    }
    const ownedKeys = toKeys(input.owned);
    const mayOwn = toKeys(union(m.assigned, m.pendingRevocation));
    const lostAnswer =
      input.memberEpoch === m.previousMemberEpoch && [...ownedKeys].every((k) => mayOwn.has(k));
    if (input.memberEpoch !== m.memberEpoch && !lostAnswer) {
      throw new SamsaError(
        ErrorCode.FENCED_MEMBER_EPOCH,
        `member ${m.memberId} sent epoch ${input.memberEpoch}, its epoch is ${m.memberEpoch}`,
      );
    }
    this.sessionDeadlines.set(m.memberId, nowMs + m.sessionTimeoutMs);
    const topics = input.topics.length === 0 ? m.topics : [...new Set(input.topics)].sort();
    const nextAssignor = assignor ?? m.assignor;
    if (topics.join("\u0000") !== m.topics.join("\u0000") || nextAssignor !== m.assignor) {
      m.topics = topics;
      m.assignor = nextAssignor;
      this.bumpGroupEpoch();
    }
    if (!isEmpty(m.pendingRevocation)) {
      const stillOwned = fromKeys([...toKeys(m.pendingRevocation)].filter((k) => ownedKeys.has(k)));
      if (!sameAssignment(stillOwned, m.pendingRevocation)) {
        m.pendingRevocation = stillOwned;
        if (isEmpty(stillOwned)) this.revocationDeadlines.delete(m.memberId);
        this.changed();
      }
    }
    return m;
  }

  /** One step of a member's reconciliation towards its target (see the module comment). */
  private reconcile(m: Member, nowMs: number): void {
    if (nowMs < this.assignNotBeforeMs || !isEmpty(m.pendingRevocation)) return;
    const target = this.targetOf(m.memberId);
    const revoke = subtract(m.assigned, target);
    if (!isEmpty(revoke)) {
      m.assigned = intersect(m.assigned, target);
      m.pendingRevocation = revoke;
      this.revocationDeadlines.set(m.memberId, nowMs + m.rebalanceTimeoutMs);
      this.changed();
      return;
    }
    const wanted = [...toKeys(subtract(target, m.assigned))];
    const held = this.heldByOthers(m.memberId);
    const free = wanted.filter((k) => !held.has(k));
    if (m.memberEpoch !== this.assignmentEpoch || free.length > 0) {
      m.assigned = union(m.assigned, fromKeys(free));
      if (m.memberEpoch !== this.assignmentEpoch) {
        m.previousMemberEpoch = m.memberEpoch;
        m.memberEpoch = this.assignmentEpoch;
      }
      this.changed();
    }
  }

  /** Partitions owned (assigned or pending revocation) by members other than `memberId`. */
  private heldByOthers(memberId: string): Set<string> {
    const held = new Set<string>();
    for (const o of this.members.values()) {
      if (o.memberId === memberId) continue;
      for (const k of toKeys(o.assigned)) held.add(k);
      for (const k of toKeys(o.pendingRevocation)) held.add(k);
    }
    return held;
  }

  private computeTarget(nowMs: number, counts: PartitionCounts): void {
    if (this.members.size === 0 || nowMs < this.assignNotBeforeMs) return;
    const current: Record<string, number> = {};
    for (const t of this.subscribedTopics()) {
      const n = counts(t);
      if (n !== undefined && n > 0) current[t] = n;
    }
    if (!sameCounts(current, this.partitionCounts)) {
      this.partitionCounts = current;
      // A change already waiting for a new target needs no epoch of its own.
      if (this.assignmentEpoch >= this.groupEpoch) this.bumpGroupEpoch();
      else this.changed();
    }
    if (this.assignmentEpoch >= this.groupEpoch) return;
    const spec = {
      members: [...this.members.values()].map((m) => ({
        memberId: m.memberId,
        instanceId: m.instanceId,
        rackId: m.rackId,
        topics: m.topics,
      })),
      partitionCounts: new Map(Object.entries(current)),
      previous: this.target,
    };
    this.target = assignorFor(this.assignor()).assign(spec);
    this.assignmentEpoch = this.groupEpoch;
    this.changed();
  }

  private byInstance(instanceId: string): Member | undefined {
    for (const m of this.members.values()) if (m.instanceId === instanceId) return m;
    return undefined;
  }

  private remove(memberId: string): void {
    if (!this.members.delete(memberId)) return;
    this.sessionDeadlines.delete(memberId);
    this.revocationDeadlines.delete(memberId);
    this.target.delete(memberId);
    this.bumpGroupEpoch();
    if (this.members.size === 0) this.assignNotBeforeMs = 0;
  }

  private bumpGroupEpoch(): void {
    this.groupEpoch++;
    this.changed();
  }

  private changed(): void {
    this.versionCount++;
  }

  private output(memberId: string, sessionTimeoutMs: number): HeartbeatOutput {
    const m = this.members.get(memberId);
    const session =
      m?.sessionTimeoutMs ?? (sessionTimeoutMs || this.settings.sessionTimeoutMsDefault);
    return {
      memberId,
      memberEpoch: m?.memberEpoch ?? LEAVE_EPOCH,
      heartbeatIntervalMs: Math.max(
        1,
        Math.min(this.settings.heartbeatIntervalMs, Math.floor(session / 3)),
      ),
      sessionTimeoutMs: session,
      assignment: m?.assigned ?? EMPTY_ASSIGNMENT,
    };
  }
}

function sameCounts(a: Record<string, number>, b: Record<string, number>): boolean {
  const ak = Object.keys(a);
  return ak.length === Object.keys(b).length && ak.every((k) => a[k] === b[k]);
}

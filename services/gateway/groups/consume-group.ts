/**
 * ConsumeGroup: the gateway is a group member on the stream's behalf. A heartbeat loop (to the
 * coordinator, here or forwarded) follows the assignment: a revoked partition's reader stops
 * (its position is auto-committed if asked) before the next heartbeat releases it; an added
 * partition's reader starts at the group's committed offset, or at `auto_offset_reset` where
 * there is none. Each reader follows its partition's leader (consume.ts's followPartition) and
 * sends records in order; all sends go through one queue so messages never interleave
 * mid-write. The stream's end (cancel, max_messages, an error) leaves the group, temporarily
 * for a static member.
 */
import { ErrorCode, isSamsaError, SamsaError } from "../../shared/errors.js";
import type { ConsumeGroupRequest__Output } from "../../shared/generated/samsa/v1/ConsumeGroupRequest.js";
import type { ConsumeGroupResponse } from "../../shared/generated/samsa/v1/ConsumeGroupResponse.js";
import { AutoOffsetReset } from "../../shared/generated/samsa/v1/AutoOffsetReset.js";
import { decodeBatches } from "../../shared/record-batch/builder.js";
import { backoffMs, sleep } from "../../shared/retry.js";
import { validateTopicName } from "../../shared/topic-name.js";
import { followPartition } from "../consume.js";
import {
  type Assignment,
  EMPTY_ASSIGNMENT,
  fromTopicPartitions,
  isEmpty,
  parseTpKey,
  subtract,
  toKeys,
  toTopicPartitions,
  tpKey,
} from "./assignment.js";
import { JOIN_EPOCH, LEAVE_EPOCH, STATIC_LEAVE_EPOCH } from "./coordinator.js";
import type { Caller, GroupCalls } from "./group-calls.js";
import { logOffsets } from "./lag.js";

/** Auto-commit interval when the request names none, ms (Kafka's auto.commit.interval.ms). */
export const AUTO_COMMIT_INTERVAL_MS_DEFAULT = 5_000;
/** How long a revoked partition stays owned for the client's own commit, ms. */
export const REVOCATION_COMMIT_GRACE_MS = 500;
/** Deadline of the leave at the end of a stream, ms. */
const LEAVE_TIMEOUT_MS = 2_000;

interface Reader {
  readonly stop: AbortController;
  readonly done: Promise<void>;
  /** The next offset to send. */
  position: number;
  committed: number;
}

/** The ConsumeGroup handler. */
export async function consumeGroup(
  request: ConsumeGroupRequest__Output,
  calls: GroupCalls,
  send: (message: ConsumeGroupResponse) => Promise<void>,
  caller: Caller,
): Promise<void> {
  if (request.topics.length === 0)
    throw new SamsaError(ErrorCode.INVALID_REQUEST, "name at least one topic");
  for (const t of request.topics) validateTopicName(t);
  await new GroupStream(request, calls, send, caller).run();
}

class GroupStream {
  private memberId = "";
  private epoch = JOIN_EPOCH;
  private owned: Assignment = EMPTY_ASSIGNMENT;
  private readonly readers = new Map<string, Reader>();
  private sendChain: Promise<void> = Promise.resolve();
  private sent = 0;
  private failure: unknown;
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;
  private lastAutoCommitMs = Date.now();

  constructor(
    private readonly request: ConsumeGroupRequest__Output,
    private readonly calls: GroupCalls,
    private readonly send: (message: ConsumeGroupResponse) => Promise<void>,
    private readonly caller: Caller,
  ) {
    this.signal = AbortSignal.any([caller.signal, this.stop.signal]);
  }

  async run(): Promise<void> {
    try {
      await this.loop();
    } finally {
      await this.stopReaders([...this.readers.keys()]);
      await this.autoCommit(true).catch(() => undefined);
      await this.leave();
    }
    if (this.failure !== undefined) throw this.failure;
  }

  private async loop(): Promise<void> {
    let attempt = 0;
    while (!this.signal.aborted) {
      let intervalMs: number;
      try {
        intervalMs = await this.heartbeatOnce();
        attempt = 0;
      } catch (err) {
        if (this.signal.aborted) return;
        const e = isSamsaError(err) ? err : new SamsaError(ErrorCode.UNKNOWN, String(err));
        if (e.code === ErrorCode.UNKNOWN_MEMBER || e.code === ErrorCode.FENCED_MEMBER_EPOCH) {
          // Fenced: drop everything and join again as a new member.
          await this.stopReaders([...this.readers.keys()]);
          this.owned = EMPTY_ASSIGNMENT;
          this.memberId = "";
          this.epoch = JOIN_EPOCH;
          continue;
        }
        if (!e.retriable) throw e;
        await sleep(backoffMs(attempt++), this.signal);
        continue;
      }
      await this.autoCommit(false).catch(() => undefined);
      await sleep(intervalMs, this.signal);
    }
  }

  /** One heartbeat and what follows from its answer; returns when to heartbeat next. */
  private async heartbeatOnce(): Promise<number> {
    const r = this.request;
    const res = await this.calls.heartbeat(
      {
        groupId: r.groupId,
        memberId: this.memberId,
        memberEpoch: this.epoch,
        instanceId: r.instanceId ?? undefined,
        rackId: r.rackId ?? undefined,
        rebalanceTimeoutMs: r.rebalanceTimeoutMs,
        sessionTimeoutMs: r.sessionTimeoutMs,
        subscribedTopicNames: this.epoch === JOIN_EPOCH ? r.topics : [],
        serverAssignor: r.serverAssignor,
        ownedPartitions: toTopicPartitions(this.owned),
        clientId: r.clientId,
      },
      this.caller,
    );
    const next = fromTopicPartitions(res.assignment ?? []);
    const revoked = subtract(this.owned, next);
    const added = subtract(next, this.owned);
    const epochChanged = res.memberEpoch !== this.epoch || res.memberId !== this.memberId;
    this.memberId = res.memberId ?? "";
    this.epoch = res.memberEpoch ?? JOIN_EPOCH;
    if (!isEmpty(revoked)) await this.stopReaders([...toKeys(revoked)]);
    if (!isEmpty(revoked) || !isEmpty(added) || epochChanged) {
      await this.sendMessage({
        assignment: {
          memberId: this.memberId,
          memberEpoch: this.epoch,
          assigned: toTopicPartitions(next),
          added: toTopicPartitions(added),
          revoked: toTopicPartitions(revoked),
        },
      });
    }
    if (!isEmpty(added)) await this.startReaders(added);
    const revokedNow = !isEmpty(revoked);
    if (revokedNow) {
      await this.autoCommit(true, revoked).catch(() => undefined);
      for (const k of toKeys(revoked)) this.readers.delete(k);
      // Explicit committers get a moment to commit the revoked partitions before the release.
      if (!this.request.autoCommit) await sleep(REVOCATION_COMMIT_GRACE_MS, this.signal);
    }
    this.owned = next;
    // Releasing revoked partitions and picking up unreleased ones wants a prompt heartbeat.
    const reconciling = revokedNow || !isEmpty(added) || this.epoch === JOIN_EPOCH;
    return reconciling
      ? Math.min(200, res.heartbeatIntervalMs ?? 200)
      : (res.heartbeatIntervalMs ?? 1000);
  }

  private async startReaders(added: Assignment): Promise<void> {
    const parts = [...toKeys(added)].map(parseTpKey);
    const committed = await this.calls.fetchOffsets(
      this.request.groupId,
      toTopicPartitions(added),
      this.caller,
    );
    const offsets = new Map(
      committed.map((c) => [tpKey(c.topic ?? "", c.partition ?? 0), Number(c.offset ?? -1)]),
    );
    const missing = parts.filter((p) => (offsets.get(tpKey(p.topic, p.partition)) ?? -1) < 0);
    if (missing.length > 0) {
      const reset = this.request.autoOffsetReset;
      if (reset === AutoOffsetReset.AUTO_OFFSET_RESET_NONE) {
        const p = missing[0]!;
        throw new SamsaError(
          ErrorCode.NO_OFFSET_FOR_PARTITION,
          `group ${this.request.groupId} has no offset for ${p.topic}-${p.partition}`,
        );
      }
      const spec = reset === AutoOffsetReset.AUTO_OFFSET_RESET_EARLIEST ? "earliest" : "latest";
      const found = await logOffsets(this.calls.deps.router, missing, spec, this.signal);
      for (const [key, o] of found) {
        if (o.errorCode !== ErrorCode.NONE)
          throw new SamsaError(o.errorCode, `no ${spec} offset for ${key}`);
        offsets.set(key, o.offset);
      }
    }
    for (const p of parts) {
      const key = tpKey(p.topic, p.partition);
      const offset = offsets.get(key)!;
      const stop = new AbortController();
      const reader: Reader = { stop, position: offset, committed: offset, done: Promise.resolve() };
      (reader as { done: Promise<void> }).done = this.read(p.topic, p.partition, reader);
      this.readers.set(key, reader);
    }
  }

  private async read(topic: string, partition: number, reader: Reader): Promise<void> {
    const signal = AbortSignal.any([this.signal, reader.stop.signal]);
    try {
      while (!signal.aborted) {
        try {
          if (await this.follow(topic, partition, reader, signal)) return;
        } catch (err) {
          if (signal.aborted || !isSamsaError(err) || err.code !== ErrorCode.OFFSET_OUT_OF_RANGE)
            throw err;
          await this.resetOutOfRange(topic, partition, reader, signal);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      this.failure ??= err;
      this.stop.abort();
    }
  }

  /** Sends one partition's records from the reader's position; true once the stream is done. */
  private async follow(
    topic: string,
    partition: number,
    reader: Reader,
    signal: AbortSignal,
  ): Promise<boolean> {
    const spec = { topic, partition, offset: reader.position, maxBytes: 0 };
    for await (const message of followPartition(
      this.calls.deps.routing,
      spec,
      "ConsumeGroup",
      signal,
    )) {
      for (const batch of decodeBatches(message.records)) {
        for (const rec of batch.records) {
          if (rec.offset < reader.position) continue;
          if (signal.aborted) return true;
          await this.sendMessage({
            record: {
              topic,
              partition,
              offset: String(rec.offset),
              timestamp: String(rec.timestamp),
              ...(rec.key === null ? {} : { key: rec.key }),
              ...(rec.value === null ? {} : { value: rec.value }),
              headers: rec.headers.map((h) => ({
                key: h.key,
                value: h.value ?? Buffer.alloc(0),
              })),
            },
          });
          reader.position = rec.offset + 1;
          this.sent++;
          if (this.request.maxMessages > 0 && this.sent >= this.request.maxMessages) {
            this.stop.abort();
            return true;
          }
        }
      }
    }
    return true;
  }

  /**
   * The position (a committed offset, typically) is outside the log: `auto_offset_reset` moves
   * it to the log start or end, as Kafka's consumer does; with `none` the stream ends with
   * OFFSET_OUT_OF_RANGE naming the partition (metadata `samsa-topic`, `samsa-partition`,
   * `samsa-offset`).
   */
  private async resetOutOfRange(
    topic: string,
    partition: number,
    reader: Reader,
    signal: AbortSignal,
  ): Promise<void> {
    const reset = this.request.autoOffsetReset;
    if (reset === AutoOffsetReset.AUTO_OFFSET_RESET_NONE) {
      throw new SamsaError(
        ErrorCode.OFFSET_OUT_OF_RANGE,
        `group ${this.request.groupId}: offset ${reader.position} of ${topic}-${partition} is out of range and auto_offset_reset is none`,
        {
          metadata: {
            "samsa-topic": topic,
            "samsa-partition": String(partition),
            "samsa-offset": String(reader.position),
          },
        },
      );
    }
    const spec = reset === AutoOffsetReset.AUTO_OFFSET_RESET_EARLIEST ? "earliest" : "latest";
    const found = await logOffsets(this.calls.deps.router, [{ topic, partition }], spec, signal);
    const o = found.get(tpKey(topic, partition));
    if (o === undefined || o.errorCode !== ErrorCode.NONE)
      throw new SamsaError(
        o?.errorCode ?? ErrorCode.UNKNOWN,
        `no ${spec} offset for ${topic}-${partition}`,
      );
    this.calls.deps.routing.deps.logger.info("offset out of range: reset", {
      group: this.request.groupId,
      topic,
      partition,
      from: reader.position,
      to: o.offset,
      reset: spec,
    });
    reader.position = o.offset;
  }

  private async stopReaders(keys: string[]): Promise<void> {
    const stopping = keys.map((k) => this.readers.get(k)).filter((r) => r !== undefined);
    for (const r of stopping) r.stop.abort();
    await Promise.all(stopping.map((r) => r.done));
    // Their positions stay until the auto-commit of the revoked partitions ran.
  }

  /** Commits the readers' positions (only with auto_commit; `force` ignores the interval). */
  private async autoCommit(force: boolean, only?: Assignment): Promise<void> {
    if (!this.request.autoCommit || this.memberId === "") return;
    const intervalMs =
      this.request.autoCommitIntervalMs > 0
        ? this.request.autoCommitIntervalMs
        : AUTO_COMMIT_INTERVAL_MS_DEFAULT;
    if (!force && Date.now() - this.lastAutoCommitMs < intervalMs) return;
    this.lastAutoCommitMs = Date.now();
    const keys = only === undefined ? [...this.readers.keys()] : [...toKeys(only)];
    const due = keys
      .map((k) => [k, this.readers.get(k)] as const)
      .filter(
        // A reset may have moved the position below the (out of range) commit: commit it too.
        (e): e is readonly [string, Reader] =>
          e[1] !== undefined && e[1].position !== e[1].committed,
      );
    if (due.length > 0) {
      const byTopic = new Map<string, { partition: number; offset: string }[]>();
      for (const [k, r] of due) {
        const { topic, partition } = parseTpKey(k);
        const list = byTopic.get(topic) ?? [];
        list.push({ partition, offset: String(r.position) });
        byTopic.set(topic, list);
      }
      const caller = { ...this.caller, signal: AbortSignal.timeout(LEAVE_TIMEOUT_MS) };
      await this.calls.commit(
        {
          groupId: this.request.groupId,
          memberId: this.memberId,
          memberEpoch: this.epoch,
          topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
        },
        caller,
      );
      for (const [, r] of due) r.committed = r.position;
    }
  }

  private async leave(): Promise<void> {
    if (this.memberId === "") return;
    const temporary = this.request.instanceId !== undefined && this.request.instanceId !== null;
    const caller = { ...this.caller, signal: AbortSignal.timeout(LEAVE_TIMEOUT_MS) };
    await this.calls
      .heartbeat(
        {
          groupId: this.request.groupId,
          memberId: this.memberId,
          memberEpoch: temporary ? STATIC_LEAVE_EPOCH : LEAVE_EPOCH,
        },
        caller,
      )
      .catch(() => undefined);
  }

  private sendMessage(message: ConsumeGroupResponse): Promise<void> {
    const next = this.sendChain.then(() => this.send(message));
    this.sendChain = next.catch(() => undefined);
    return next;
  }
}

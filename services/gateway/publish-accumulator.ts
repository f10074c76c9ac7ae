/**
 * Coalescing of Publish calls: the records that concurrent Publish (and PublishStream) calls
 * send to one partition become one append — one set of record batches, one Produce to the
 * leader — and each caller still gets its own offsets and its own error.
 *
 * Per partition there is one append in flight at a time (the gateway's idempotent producer
 * needs that anyway: its sequences must reach the leader in order), and what callers add while
 * it is in flight waits in the partition's queue; when it finishes, everything queued (up to
 * {@link COALESCED_APPEND_BYTES_MAX} / {@link COALESCED_APPEND_RECORDS_MAX}) goes as the next
 * append. That is Kafka's producer with `linger.ms=0` and one request in flight: no timer is
 * waited on, and batching grows exactly as fast as the leader is slow.
 *
 * What is combined: consecutive callers of one partition with the same acks (an acks change
 * starts a new append, so order is kept). The append's deadline is the latest of its callers'
 * (a caller whose own deadline passes first gets its gRPC deadline error from the transport),
 * its replication timeout the longest they asked for, and it is cancelled only when every
 * caller has gone away. A caller that cancels before its records were sent is taken out.
 *
 * One caller's bad record must not fail another's: an append refused for what is in it
 * (a record too large, a bad timestamp, a batch refused as corrupt) is sent again one caller at
 * a time, so only the callers whose own records are refused see the error. Nothing of a
 * refused append was written (a partition's append is all or nothing), so the retry cannot
 * duplicate anything.
 */
import type { Acks__Output } from "../shared/generated/samsa/v1/Acks.js";
import type { ErrorCode as ProtoErrorCode } from "../shared/generated/samsa/v1/ErrorCode.js";
import type { ProducePartitionResult__Output } from "../shared/generated/samsa/v1/ProducePartitionResult.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import { Deadline } from "../shared/retry.js";
import { type ProducerRecord, recordBytesMax } from "../shared/record-batch/records.js";
import { errorResult } from "../shared/request-parsing.js";

/** Estimated record bytes of one coalesced append at most (a caller larger than it goes alone). */
export const COALESCED_APPEND_BYTES_MAX = 1024 * 1024;
/** Records of one coalesced append at most. */
export const COALESCED_APPEND_RECORDS_MAX = 50_000;
/** Callers of one coalesced append at most (bounds the per-append bookkeeping). */
export const COALESCED_APPEND_CALLERS_MAX = 4096;

/**
 * Codes that refuse an append for its contents: sent again caller by caller, so that only the
 * callers whose records are refused get them.
 */
const CONTENT_ERRORS: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.MESSAGE_TOO_LARGE,
  ErrorCode.INVALID_TIMESTAMP,
  ErrorCode.CORRUPT_MESSAGE,
]);

/** How one partition's records are appended (one call per coalesced append). */
export interface AppendSpec {
  readonly topic: string;
  readonly partition: number;
  readonly acks: Acks__Output;
  /** Replication timeout for acks=all, ms (0 = the broker's default). */
  readonly timeoutMs: number;
  /** Estimated bytes after which a new batch starts (the topic's limits). */
  readonly batchBytes: number;
}

/** Sends one append: `records` of `spec`'s partition, as batches, within `deadline`. */
export type SendAppend = (
  spec: AppendSpec,
  records: readonly ProducerRecord[],
  deadline: Deadline,
  signal: AbortSignal,
) => Promise<ProducePartitionResult__Output>;

/** What a caller gets: the base offset of its own records, or its error. */
export interface CallerResult {
  readonly baseOffset: string;
  readonly errorCode: ProtoErrorCode;
  readonly errorMessage: string;
}

/** One caller's records waiting for (or in) an append. */
interface Contribution {
  readonly spec: AppendSpec;
  readonly records: readonly ProducerRecord[];
  readonly bytes: number;
  readonly deadline: Deadline;
  readonly signal: AbortSignal;
  readonly resolve: (r: CallerResult) => void;
  /** Set once it left the queue (sent, or cancelled: then skipped where it stands). */
  taken: boolean;
}

/**
 * The callers waiting with one signal, and the one listener on it. A stream's requests all
 * share its signal: one listener per signal, not per request, keeps adding and removing
 * listeners O(1) however many of them wait.
 */
interface SignalWatch {
  readonly waiting: Set<Contribution>;
  readonly onAbort: () => void;
}

interface PartitionQueue {
  readonly waiting: Contribution[];
  busy: boolean;
}

/** Coalesces appends per partition; see the module comment. */
export class PublishAccumulator {
  private readonly queues = new Map<string, PartitionQueue>();
  private readonly watches = new Map<AbortSignal, SignalWatch>();

  constructor(
    private readonly send: SendAppend,
    /** Told of every append sent, with the number of callers it carries (the metrics). */
    private readonly onAppend: (callers: number) => void = () => {},
  ) {}

  /** Appends `records` (in order, consecutive offsets); resolves with their outcome. */
  append(
    spec: AppendSpec,
    records: readonly ProducerRecord[],
    deadline: Deadline,
    signal: AbortSignal,
  ): Promise<CallerResult> {
    const key = `${spec.topic}\u0000${spec.partition}`;
    let q = this.queues.get(key);
    if (q === undefined) {
      q = { waiting: [], busy: false };
      this.queues.set(key, q);
    }
    const queue = q;
    let bytes = 0;
    for (const r of records) bytes += recordBytesMax(r);
    return new Promise<CallerResult>((resolve) => {
      const c: Contribution = { spec, records, bytes, deadline, signal, resolve, taken: false };
      if (signal.aborted) {
        resolve(cancelled());
        return;
      }
      this.watch(c);
      queue.waiting.push(c);
      if (!queue.busy) void this.drain(key, queue);
    });
  }

  /** Cancels `c` if its signal aborts while it waits. */
  private watch(c: Contribution): void {
    let w = this.watches.get(c.signal);
    if (w === undefined) {
      const waiting = new Set<Contribution>();
      const onAbort = () => {
        this.watches.delete(c.signal);
        for (const x of waiting) {
          x.taken = true; // skipped by takeGroup where it stands in its queue
          x.resolve(cancelled());
        }
      };
      w = { waiting, onAbort };
      this.watches.set(c.signal, w);
      c.signal.addEventListener("abort", onAbort, { once: true });
    }
    w.waiting.add(c);
  }

  /** `c` left its queue: its signal no longer cancels it. */
  private unwatch(c: Contribution): void {
    const w = this.watches.get(c.signal);
    if (w === undefined) return;
    w.waiting.delete(c);
    if (w.waiting.size === 0) {
      this.watches.delete(c.signal);
      c.signal.removeEventListener("abort", w.onAbort);
    }
  }

  /** Sends the partition's queued records, one coalesced append at a time, until none wait. */
  private async drain(key: string, q: PartitionQueue): Promise<void> {
    q.busy = true;
    try {
      for (;;) {
        const group = this.takeGroup(q);
        if (group.length === 0) break;
        await this.sendGroup(group);
      }
    } finally {
      q.busy = false;
      if (q.waiting.length === 0) this.queues.delete(key);
      else void this.drain(key, q);
    }
  }

  /** The next callers to send together: same acks, within the size limits, in order. */
  private takeGroup(q: PartitionQueue): Contribution[] {
    const group: Contribution[] = [];
    let bytes = 0;
    let records = 0;
    while (q.waiting.length > 0) {
      const c = q.waiting[0]!;
      if (c.taken) {
        q.waiting.shift(); // cancelled while it waited
        continue;
      }
      if (group.length > 0) {
        if (c.spec.acks !== group[0]!.spec.acks) break;
        if (bytes + c.bytes > COALESCED_APPEND_BYTES_MAX) break;
        if (records + c.records.length > COALESCED_APPEND_RECORDS_MAX) break;
        if (group.length >= COALESCED_APPEND_CALLERS_MAX) break;
      }
      q.waiting.shift();
      c.taken = true;
      this.unwatch(c);
      group.push(c);
      bytes += c.bytes;
      records += c.records.length;
    }
    return group;
  }

  /** Sends one group; on a refusal for its contents, each caller again on its own. */
  private async sendGroup(group: Contribution[]): Promise<void> {
    const answer = await this.sendOnce(group);
    if (group.length > 1 && CONTENT_ERRORS.has(fromProtoErrorCode(answer.errorCode))) {
      for (const c of group) {
        if (c.signal.aborted) c.resolve(cancelled());
        else this.settle([c], await this.sendOnce([c]));
      }
      return;
    }
    this.settle(group, answer);
  }

  private async sendOnce(group: readonly Contribution[]): Promise<CallerResult> {
    const first = group[0]!;
    let records: ProducerRecord[] | readonly ProducerRecord[] = first.records;
    let atMs = first.deadline.atMs;
    let timeoutMs = first.spec.timeoutMs;
    if (group.length > 1) {
      const all: ProducerRecord[] = [];
      for (const c of group) {
        for (const r of c.records) all.push(r);
        atMs = Math.max(atMs, c.deadline.atMs);
        timeoutMs = Math.max(timeoutMs, c.spec.timeoutMs);
      }
      records = all;
    }
    const spec = timeoutMs === first.spec.timeoutMs ? first.spec : { ...first.spec, timeoutMs };
    const deadline = group.length === 1 ? first.deadline : Deadline.at(atMs);
    this.onAppend(group.length);
    const signal = allAborted(group);
    try {
      return await this.send(spec, records, deadline, signal.signal);
    } catch (err) {
      return { baseOffset: "-1", ...errorResult(err) };
    } finally {
      signal.release();
    }
  }

  /** Gives each caller its share: consecutive offsets from the append's base, or its error. */
  private settle(group: readonly Contribution[], answer: CallerResult): void {
    const base = Number(answer.baseOffset);
    const ok = fromProtoErrorCode(answer.errorCode) === ErrorCode.NONE && base >= 0;
    let next = base;
    for (const c of group) {
      c.resolve({
        baseOffset: ok ? String(next) : "-1",
        errorCode: answer.errorCode,
        errorMessage: answer.errorMessage,
      });
      next += c.records.length;
    }
  }
}

/** The answer of a caller that went away before its records were sent (nobody reads it). */
function cancelled(): CallerResult {
  return {
    baseOffset: "-1",
    ...errorResult(
      new SamsaError(
        ErrorCode.REQUEST_TIMED_OUT,
        "the call was cancelled before its records were sent",
      ),
    ),
  };
}

/**
 * A signal that aborts once every caller of `group` has gone away (callers of one stream share
 * one signal: counted once), and `release` to stop listening when the append is done.
 */
function allAborted(group: readonly Contribution[]): { signal: AbortSignal; release: () => void } {
  const distinct = new Set<AbortSignal>();
  for (const c of group) distinct.add(c.signal);
  if (distinct.size === 1) return { signal: group[0]!.signal, release: () => {} };
  const controller = new AbortController();
  let left = distinct.size;
  const onAbort = () => {
    if (--left === 0) controller.abort();
  };
  for (const s of distinct) {
    if (s.aborted) left--;
    else s.addEventListener("abort", onAbort, { once: true });
  }
  if (left === 0) controller.abort();
  return {
    signal: controller.signal,
    release: () => {
      for (const s of distinct) s.removeEventListener("abort", onAbort);
    },
  };
}

/**
 * A consumer group member, as pleasant as kafkajs' consumer (docs/groups.md#the-typescript-client):
 *
 * ```ts
 * const consumer = new GroupConsumer({ groupId: "billing", gateways: "127.0.0.1:19095" });
 * consumer.subscribe(["orders"]);
 * await consumer.run({ eachMessage: async ({ message }) => { ... } }); // until disconnect()
 * // or: for await (const message of consumer) { ... }
 * await consumer.disconnect(); // commits what was processed, leaves the group
 * ```
 *
 * Membership (group-membership.ts) heartbeats to the coordinator through the gateways on its
 * own timer, so a handler slower than the session timeout keeps the member in the group (only
 * a handler that blocks the event loop stops heartbeats). Records are fetched from the partition
 * leaders directly (partition-fetcher.ts) when `bootstrapServers` names brokers, else through the
 * gateways. Delivery is at least once: auto-commit (every `autoCommitIntervalMs`, on revocation
 * and on disconnect) commits the offsets of records the handler has finished, never of records
 * only fetched; after a crash the records processed since the last commit are seen again.
 *
 * A revoked partition is fetched no more, its record in the handler finishes, the rebalance
 * listener's `onPartitionsRevoked` runs and its commit is done before the next heartbeat tells
 * the coordinator it is released. A fenced member (FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER) loses
 * its partitions without committing them (`onPartitionsLost`) and joins again with epoch 0.
 */
import { assert, ErrorCode, isSamsaError, SamsaError } from "../shared/errors.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import { sleep } from "../shared/retry.js";
import { GroupClient, type GroupTopicPartition } from "./group-client.js";
import { byTopic, GroupMembership, key } from "./group-membership.js";
import { listOffsets } from "./list-offsets.js";
import { Cluster } from "./metadata.js";
import { FETCH_MAX_WAIT_MS_DEFAULT, FETCH_MIN_BYTES_DEFAULT } from "./consumer.js";
import { PartitionFetcher } from "./partition-fetcher.js";
import type { ConsumerRecord } from "./records.js";
import { FETCH_PARTITION_BYTES_MAX_DEFAULT } from "../shared/protocol-limits.js";
import { REQUEST_TIMEOUT_MS_DEFAULT } from "../shared/retry.js";

/** Default auto-commit interval, ms (Kafka's auto.commit.interval.ms). */
export const AUTO_COMMIT_INTERVAL_MS_DEFAULT = 5_000;
/** Default rebalance timeout: how long a revocation may take, ms (Kafka's max.poll.interval.ms). */
export const GROUP_REBALANCE_TIMEOUT_MS_DEFAULT = 60_000;
/** Deadline of a commit with its retries, ms. */
export const COMMIT_TIMEOUT_MS = 10_000;

/** The rebalance listener: called as partitions come and go (may be async). */
export interface RebalanceListener {
  /** Partitions given to this member; called before their first record. */
  onPartitionsAssigned?(partitions: GroupTopicPartition[]): void | Promise<void>;
  /** Partitions taken away; called (and the auto-commit done) before they are released. */
  onPartitionsRevoked?(partitions: GroupTopicPartition[]): void | Promise<void>;
  /** Partitions lost (the member was fenced): nothing of them can be committed any more. */
  onPartitionsLost?(partitions: GroupTopicPartition[]): void | Promise<void>;
}

/** A committed offset, as {@link GroupConsumerOptions.onCommit} reports it. */
export interface CommittedPosition extends GroupTopicPartition {
  /** The next offset the group reads. */
  readonly offset: number;
}

/** Options of {@link GroupConsumer}. */
export interface GroupConsumerOptions {
  groupId: string;
  /** Gateways serving the GroupService, `host:port` each (or comma-separated). Required. */
  gateways: string | readonly string[];
  /** Where records are fetched: brokers (direct) or gateways. Default the gateways. */
  bootstrapServers?: string | readonly string[];
  /** A cluster to share (instead of `bootstrapServers`). */
  cluster?: Cluster;
  /** client.id, shown by DescribeGroups. Default "samsa-group-consumer". */
  clientId?: string;
  /** group.instance.id: a static member (a restart within the session moves nothing). */
  groupInstanceId?: string;
  rackId?: string;
  /** session.timeout.ms; 0 = the gateway's default. */
  sessionTimeoutMs?: number;
  /** How long a revocation may take, ms. Default {@link GROUP_REBALANCE_TIMEOUT_MS_DEFAULT}. */
  rebalanceTimeoutMs?: number;
  /** "range", "uniform" or "sticky"; default the group's (uniform). */
  serverAssignor?: string;
  /** Where to start without a committed offset. Default "latest". */
  autoOffsetReset?: "earliest" | "latest" | "none";
  /** Commit processed offsets on a timer, on revocation and on disconnect. Default true. */
  autoCommit?: boolean;
  /** Default {@link AUTO_COMMIT_INTERVAL_MS_DEFAULT}. */
  autoCommitIntervalMs?: number;
  rebalanceListener?: RebalanceListener;
  /** Called after every successful commit (instrumentation, tests). */
  onCommit?: (offsets: CommittedPosition[]) => void;
  /** Default {@link FETCH_MAX_WAIT_MS_DEFAULT}. */
  maxWaitMs?: number;
  /** Default {@link FETCH_MIN_BYTES_DEFAULT}. */
  minBytes?: number;
  /** Default {@link FETCH_PARTITION_BYTES_MAX_DEFAULT}. */
  partitionMaxBytes?: number;
  /** Deadline of one call, ms. Default {@link REQUEST_TIMEOUT_MS_DEFAULT}. */
  requestTimeoutMs?: number;
}

/** What `eachMessage` gets. */
export interface EachMessagePayload {
  readonly topic: string;
  readonly partition: number;
  readonly message: ConsumerRecord;
  /** Pauses this partition after this record. */
  pause(): void;
}

/**
 * What `eachBatch` gets: records of one partition, whole batches of one fetch answer (about
 * 1,000 records at a time, see partition-fetcher.ts).
 */
export interface EachBatchPayload {
  readonly batch: { topic: string; partition: number; messages: readonly ConsumerRecord[] };
  /** Marks records up to `offset` processed (`eachBatchAutoResolve` does it for the whole batch). */
  resolveOffset(offset: number): void;
  /** False once the partition was revoked or lost, or the consumer stops: stop early. */
  isRunning(): boolean;
}

/** Options of {@link GroupConsumer.run}: exactly one of the handlers. */
export interface RunOptions {
  eachMessage?: (payload: EachMessagePayload) => Promise<void> | void;
  eachBatch?: (payload: EachBatchPayload) => Promise<void> | void;
  /** Marks a batch processed when `eachBatch` returns. Default true. */
  eachBatchAutoResolve?: boolean;
}

/** A partition the member owns. */
interface Owned extends GroupTopicPartition {
  fetcher?: PartitionFetcher;
  /** The next offset after the last processed record; -1 until the start offset is known. */
  processed: number;
  /** The last offset committed (or read from the group) for it; -1 without one. */
  committed: number;
  /**
   * Bumped by a seek and by an out-of-range reset: records handed out before it no longer move
   * `processed` (which the seek set, lower or higher), and the rest of their answer is dropped.
   */
  positionGeneration: number;
  paused: boolean;
  /** Being revoked, lost or dropped: no more records are handed out. */
  gone: boolean;
  /** Resolves when the record or batch being processed is done. */
  busy?: Promise<void>;
}

/** A Kafka-style group consumer; see the module doc. */
export class GroupConsumer {
  private readonly groups: GroupClient;
  private readonly cluster: Cluster;
  private readonly ownsCluster: boolean;
  private readonly membership: GroupMembership;
  private readonly owned = new Map<string, Owned>();
  private readonly pausedKeys = new Set<string>();
  private started = false;
  private running = false;
  private stopping: Promise<void> | undefined;
  private failure: SamsaError | undefined;
  private wakeProcessor: (() => void) | undefined;
  private autoCommitTimer: NodeJS.Timeout | undefined;
  private commitChain: Promise<unknown> = Promise.resolve();
  private roundRobin = 0;
  private readonly o: Required<
    Pick<
      GroupConsumerOptions,
      "autoCommit" | "autoCommitIntervalMs" | "autoOffsetReset" | "requestTimeoutMs"
    >
  >;

  constructor(private readonly options: GroupConsumerOptions) {
    this.groups = new GroupClient({
      gateways: options.gateways,
      requestTimeoutMs: options.requestTimeoutMs,
    });
    this.ownsCluster = options.cluster === undefined;
    this.cluster =
      options.cluster ??
      new Cluster({
        bootstrapServers: options.bootstrapServers ?? options.gateways,
        requestTimeoutMs: options.requestTimeoutMs,
      });
    this.o = {
      autoCommit: options.autoCommit ?? true,
      autoCommitIntervalMs: options.autoCommitIntervalMs ?? AUTO_COMMIT_INTERVAL_MS_DEFAULT,
      autoOffsetReset: options.autoOffsetReset ?? "latest",
      requestTimeoutMs: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT,
    };
    this.membership = new GroupMembership(
      this.groups,
      {
        groupId: options.groupId,
        instanceId: options.groupInstanceId,
        rackId: options.rackId,
        clientId: options.clientId ?? "samsa-group-consumer",
        sessionTimeoutMs: options.sessionTimeoutMs ?? 0,
        rebalanceTimeoutMs: options.rebalanceTimeoutMs ?? GROUP_REBALANCE_TIMEOUT_MS_DEFAULT,
        serverAssignor: options.serverAssignor ?? "",
        requestTimeoutMs: this.o.requestTimeoutMs,
      },
      {
        owned: () => [...this.owned.values()].map(({ topic, partition }) => ({ topic, partition })),
        onAssigned: (ps) => this.assign(ps),
        onRevoked: (ps) => this.revoke(ps),
        onLost: () => this.lose(),
        onFatal: (err) => this.fail(err),
      },
    );
  }

  /** The member id ("" before the first answer). */
  get memberId(): string {
    return this.membership.memberId;
  }

  /** The member epoch of the last answer. */
  get memberEpoch(): number {
    return this.membership.epoch;
  }

  /** Heartbeats answered so far. */
  get heartbeats(): number {
    return this.membership.heartbeats;
  }

  /** The partitions owned now, sorted. */
  assignment(): GroupTopicPartition[] {
    return [...this.owned.values()]
      .filter((s) => !s.gone)
      .map(({ topic, partition }) => ({ topic, partition }))
      .sort((a, b) =>
        a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1,
      );
  }

  /** Subscribes to `topics` (replacing the subscription); joins at the first run or iteration. */
  subscribe(topics: string | readonly string[]): void {
    const list = typeof topics === "string" ? [topics] : [...topics];
    if (list.length === 0) throw new SamsaError(ErrorCode.INVALID_REQUEST, "subscribe to a topic");
    this.membership.subscribe(list);
  }

  /**
   * Processes records with `eachMessage` or `eachBatch` until {@link disconnect}; rejects with
   * a fatal error (the handler's own error included: the consumer then commits what was
   * processed, leaves the group and rethrows it).
   */
  async run(options: RunOptions): Promise<void> {
    assert(
      (options.eachMessage === undefined) !== (options.eachBatch === undefined),
      "run takes eachMessage or eachBatch",
    );
    this.start();
    try {
      while (this.running) {
        const next = await this.nextReady();
        if (next === undefined) continue;
        const [s, records] = next;
        const done = options.eachMessage
          ? this.eachMessage(s, records, options.eachMessage)
          : this.eachBatch(s, records, options);
        s.busy = done;
        try {
          await done;
        } finally {
          s.busy = undefined;
        }
      }
    } catch (err) {
      this.failure ??= isSamsaError(err)
        ? err
        : new SamsaError(ErrorCode.UNKNOWN, String(err), { cause: err });
      await this.disconnect();
      throw err;
    }
    if (this.failure !== undefined) {
      await this.disconnect();
      throw this.failure;
    }
  }

  /**
   * The records, one at a time (in order per partition). A record counts as processed when the
   * loop asks for the next one; leaving the loop does not disconnect.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<ConsumerRecord, void, undefined> {
    this.start();
    while (this.running) {
      const next = await this.nextReady();
      if (next === undefined) continue;
      const [s, records] = next;
      const generation = s.positionGeneration;
      for (let i = 0; i < records.length; i++) {
        if (s.positionGeneration !== generation) break; // a seek: the fetcher starts over
        if (!this.handing(s)) {
          this.requeue(s, records[i]!.offset);
          break;
        }
        let release = (): void => undefined;
        s.busy = new Promise<void>((r) => {
          release = r;
        });
        try {
          yield records[i]!;
        } finally {
          release();
          s.busy = undefined;
        }
        if (s.gone || s.positionGeneration !== generation) continue;
        s.processed = records[i]!.offset + 1;
      }
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Stops handing out records of `partitions` (fetching stops once their buffer is full). */
  pause(partitions: readonly GroupTopicPartition[]): void {
    for (const p of partitions) {
      this.pausedKeys.add(key(p));
      const s = this.owned.get(key(p));
      if (s !== undefined) s.paused = true;
    }
  }

  /** Hands out records of `partitions` again. */
  resume(partitions: readonly GroupTopicPartition[]): void {
    for (const p of partitions) {
      this.pausedKeys.delete(key(p));
      const s = this.owned.get(key(p));
      if (s !== undefined) s.paused = false;
    }
    this.wake();
  }

  /** The paused partitions. */
  paused(): GroupTopicPartition[] {
    return [...this.pausedKeys].map((k) => {
      const i = k.lastIndexOf(":");
      return { topic: k.slice(0, i), partition: Number(k.slice(i + 1)) };
    });
  }

  /**
   * Reads an owned partition from `offset` on; what is committed next for it is `offset` until
   * a record is processed, also when it is lower than what was committed (Kafka commits what it
   * is told). Records of the partition handed out before the seek (the rest of a batch, a
   * record in the handler) no longer count as processed.
   * @throws SamsaError INVALID_REQUEST when the partition is not owned (yet).
   */
  seek(p: GroupTopicPartition & { offset: number }): void {
    const s = this.owned.get(key(p));
    if (s === undefined || s.gone || s.fetcher === undefined)
      throw new SamsaError(ErrorCode.INVALID_REQUEST, `${p.topic}-${p.partition} is not owned`);
    s.positionGeneration++;
    s.fetcher.seek(p.offset);
    s.processed = p.offset;
  }

  /**
   * Commits `offsets` (the next offsets to read), or without an argument the offsets of every
   * owned partition's processed records. Commits run one at a time, in call order.
   * @throws SamsaError STALE_MEMBER_EPOCH (a partition not owned any more), UNKNOWN_MEMBER, ...
   */
  commit(offsets?: readonly CommittedPosition[]): Promise<void> {
    const run = this.commitChain.then(() => this.commitNow(offsets));
    this.commitChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Stops processing (the record in the handler finishes), runs `onPartitionsRevoked` for the
   * owned partitions, commits what was processed (with auto-commit) and leaves the group
   * (temporarily for a static member: it gets its partitions back if it returns within its
   * session). Safe to call twice.
   */
  disconnect(): Promise<void> {
    this.stopping ??= this.stop();
    return this.stopping;
  }

  private start(): void {
    if (this.started) return;
    if (this.membership.topics.length === 0)
      throw new SamsaError(ErrorCode.INVALID_REQUEST, "subscribe before run");
    this.started = true;
    this.running = true;
    this.membership.start();
    if (this.o.autoCommit) {
      this.autoCommitTimer = setInterval(() => {
        void this.commit().catch(() => undefined); // retried at the next interval
      }, this.o.autoCommitIntervalMs);
    }
  }

  private async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.autoCommitTimer);
    this.wake();
    const all = [...this.owned.values()];
    for (const s of all) s.fetcher?.close();
    await Promise.all(all.map((s) => s.busy));
    if (this.started && this.failure?.code !== ErrorCode.FENCED_MEMBER_EPOCH && all.length > 0) {
      await this.callListener("onPartitionsRevoked", all);
      if (this.o.autoCommit && this.membership.memberId !== "")
        await this.commit().catch(() => undefined);
    }
    for (const s of all) s.gone = true;
    this.owned.clear();
    await this.membership.leave();
    this.groups.close();
    if (this.ownsCluster) this.cluster.close();
  }

  private fail(err: SamsaError): void {
    this.failure ??= err;
    this.running = false;
    this.wake();
  }

  private wake(): void {
    const w = this.wakeProcessor;
    this.wakeProcessor = undefined;
    w?.();
  }

  /** Whether records of `s` may be handed out now. */
  private handing(s: Owned): boolean {
    return this.running && !s.gone && !s.paused;
  }

  /** Puts records from `offset` on back (a pause or stop in the middle of a fetch answer). */
  private requeue(s: Owned, offset: number): void {
    if (!s.gone) s.fetcher?.seek(offset);
  }

  /** The next partition with records to hand out (round robin), waiting for one. */
  private async nextReady(): Promise<[Owned, ConsumerRecord[]] | undefined> {
    const states = [...this.owned.values()];
    for (let i = 0; i < states.length; i++) {
      const s = states[(this.roundRobin + i) % states.length]!;
      if (!this.handing(s) || s.fetcher === undefined || !s.fetcher.ready) continue;
      this.roundRobin = (this.roundRobin + i + 1) % Math.max(1, states.length);
      const records = s.fetcher.take();
      if (records !== undefined) return [s, records];
    }
    if (!this.running) return undefined;
    await new Promise<void>((resolve) => {
      this.wakeProcessor = resolve;
    });
    return undefined;
  }

  private async eachMessage(
    s: Owned,
    records: ConsumerRecord[],
    handler: NonNullable<RunOptions["eachMessage"]>,
  ): Promise<void> {
    const generation = s.positionGeneration;
    for (let i = 0; i < records.length; i++) {
      const message = records[i]!;
      if (s.positionGeneration !== generation) return; // a seek: the fetcher starts over
      if (!this.handing(s)) return this.requeue(s, message.offset);
      let pauseAfter = false;
      try {
        await handler({
          topic: s.topic,
          partition: s.partition,
          message,
          pause: () => {
            pauseAfter = true;
          },
        });
      } catch (err) {
        if (s.positionGeneration === generation) this.requeue(s, message.offset);
        throw err;
      }
      if (!s.gone && s.positionGeneration === generation) s.processed = message.offset + 1;
      if (pauseAfter) this.pause([s]);
    }
  }

  private async eachBatch(s: Owned, records: ConsumerRecord[], options: RunOptions): Promise<void> {
    if (!this.handing(s)) return this.requeue(s, records[0]!.offset);
    const generation = s.positionGeneration;
    const current = () => !s.gone && s.positionGeneration === generation;
    let resolved = -1;
    await options.eachBatch!({
      batch: { topic: s.topic, partition: s.partition, messages: records },
      resolveOffset: (offset) => {
        resolved = Math.max(resolved, offset);
        if (current()) s.processed = resolved + 1;
      },
      isRunning: () => this.handing(s) && s.positionGeneration === generation,
    });
    if (!current()) return; // revoked, lost, or a seek in the handler: its position stands
    const last = records[records.length - 1]!.offset;
    if (options.eachBatchAutoResolve !== false) resolved = last;
    if (resolved >= 0) s.processed = resolved + 1;
    if (resolved < last) this.requeue(s, resolved + 1);
  }

  /** New partitions: their committed offsets (or the reset), the listener, then fetching. */
  private assign(partitions: GroupTopicPartition[]): void {
    const fresh: Owned[] = [];
    for (const p of partitions) {
      if (this.owned.has(key(p))) continue;
      const s: Owned = {
        ...p,
        processed: -1,
        committed: -1,
        positionGeneration: 0,
        paused: this.pausedKeys.has(key(p)),
        gone: false,
      };
      this.owned.set(key(p), s);
      fresh.push(s);
    }
    if (fresh.length > 0) void this.startFetching(fresh);
  }

  private async startFetching(states: Owned[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.startPositions(states);
        break;
      } catch (err) {
        const e = isSamsaError(err) ? err : new SamsaError(ErrorCode.UNKNOWN, String(err));
        if (!e.retriable) return this.fail(e);
        if (states.every((s) => s.gone) || !this.running) return;
        await sleep(Math.min(1000, 100 * 2 ** attempt));
      }
    }
    const live = states.filter((s) => !s.gone);
    if (live.length === 0 || !this.running) return;
    await this.callListener("onPartitionsAssigned", live);
    const settings = {
      maxWaitMs: this.options.maxWaitMs ?? FETCH_MAX_WAIT_MS_DEFAULT,
      minBytes: this.options.minBytes ?? FETCH_MIN_BYTES_DEFAULT,
      partitionMaxBytes: this.options.partitionMaxBytes ?? FETCH_PARTITION_BYTES_MAX_DEFAULT,
      requestTimeoutMs: this.o.requestTimeoutMs,
      autoOffsetReset: this.o.autoOffsetReset,
    };
    for (const s of live) {
      if (s.gone || !this.running) continue;
      s.fetcher = new PartitionFetcher(
        this.cluster,
        s.topic,
        s.partition,
        s.processed,
        settings,
        () => this.wake(),
        (err) => this.fail(err),
        (offset) => {
          // The committed offset was outside the log: the reset position is the one to commit.
          s.positionGeneration++;
          s.processed = offset;
        },
      );
    }
  }

  /** Sets `processed` and `committed` of new partitions from the group's committed offsets. */
  private async startPositions(states: Owned[]): Promise<void> {
    const committed = await this.groups.fetchOffsets(
      this.options.groupId,
      byTopic(states).map((t) => ({ topic: t.topic, partitions: t.partitions })),
      { timeoutMs: this.o.requestTimeoutMs },
    );
    const byKey = new Map(committed.map((c) => [key(c), c.offset]));
    const missing = new Map<string, number[]>();
    for (const s of states) {
      const offset = byKey.get(key(s)) ?? -1;
      s.committed = offset;
      s.processed = offset;
      if (offset < 0) missing.set(s.topic, [...(missing.get(s.topic) ?? []), s.partition]);
    }
    if (missing.size === 0) return;
    const reset = this.o.autoOffsetReset;
    if (reset === "none") {
      const [topic, ps] = [...missing][0]!;
      throw new SamsaError(
        ErrorCode.NO_OFFSET_FOR_PARTITION,
        `group ${this.options.groupId} has no offset for ${topic}-${ps[0]}`,
      );
    }
    for (const [topic, ps] of missing) {
      const offsets = await listOffsets(this.cluster, topic, ps, reset, {
        requestTimeoutMs: this.o.requestTimeoutMs,
        timeoutMs: this.o.requestTimeoutMs,
      });
      for (const s of states)
        if (s.topic === topic && s.processed < 0) s.processed = offsets.get(s.partition) ?? 0;
    }
  }

  /** Revoked partitions: stop, let the handler finish, the listener, the commit, then release. */
  private async revoke(partitions: GroupTopicPartition[]): Promise<void> {
    const states = partitions
      .map((p) => this.owned.get(key(p)))
      .filter((s): s is Owned => s !== undefined && !s.gone);
    if (states.length === 0) return;
    for (const s of states) {
      s.gone = true;
      s.fetcher?.close();
    }
    await Promise.all(states.map((s) => s.busy));
    await this.callListener("onPartitionsRevoked", states);
    if (this.o.autoCommit) await this.commitStates(states).catch(() => undefined);
    for (const s of states) if (this.owned.get(key(s)) === s) this.owned.delete(key(s));
  }

  /** Fenced: every partition is dropped without a commit. */
  private async lose(): Promise<void> {
    const states = [...this.owned.values()];
    for (const s of states) {
      s.gone = true;
      s.fetcher?.close();
    }
    this.owned.clear();
    if (states.length > 0) await this.callListener("onPartitionsLost", states);
  }

  private async callListener(
    name: keyof RebalanceListener,
    states: readonly GroupTopicPartition[],
  ): Promise<void> {
    const fn = this.options.rebalanceListener?.[name];
    if (fn === undefined) return;
    const list = states.map(({ topic, partition }) => ({ topic, partition }));
    try {
      await fn.call(this.options.rebalanceListener, list);
    } catch {
      // A listener's failure must not stop the rebalance (Kafka logs and goes on too).
    }
  }

  /** Commits the processed offsets of `states` (those other than their last commit). */
  private commitStates(states: readonly Owned[]): Promise<void> {
    const due = states.filter((s) => s.processed >= 0 && s.processed !== s.committed);
    if (due.length === 0) return Promise.resolve();
    return this.commit(
      due.map((s) => ({ topic: s.topic, partition: s.partition, offset: s.processed })),
    );
  }

  private async commitNow(offsets?: readonly CommittedPosition[]): Promise<void> {
    if (offsets === undefined) {
      const due = [...this.owned.values()].filter(
        (s) => !s.gone && s.processed >= 0 && s.processed !== s.committed,
      );
      offsets = due.map((s) => ({ topic: s.topic, partition: s.partition, offset: s.processed }));
    }
    if (offsets.length === 0) return;
    const m = this.membership;
    if (m.memberId === "")
      throw new SamsaError(ErrorCode.UNKNOWN_MEMBER, "not a member of the group (yet)");
    const topics = new Map<string, { partition: number; offset: string }[]>();
    for (const o of offsets) {
      const list = topics.get(o.topic) ?? [];
      list.push({ partition: o.partition, offset: String(o.offset) });
      topics.set(o.topic, list);
    }
    const res = await this.groups.call(
      "CommitOffsets",
      {
        groupId: this.options.groupId,
        memberId: m.memberId,
        memberEpoch: m.epoch,
        topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })),
      },
      { timeoutMs: COMMIT_TIMEOUT_MS },
    );
    const done: CommittedPosition[] = [];
    let firstError: SamsaError | undefined;
    for (const r of res.results) {
      const o = offsets.find((x) => x.topic === r.topic && x.partition === r.partition);
      const code = fromProtoErrorCode(r.errorCode);
      if (o === undefined) continue;
      if (code !== ErrorCode.NONE) {
        firstError ??= new SamsaError(
          code,
          r.errorMessage || `commit of ${r.topic}-${r.partition}`,
        );
        continue;
      }
      done.push(o);
      const s = this.owned.get(key(o));
      // What was committed, also a lower offset after a seek back (commits run in call order).
      if (s !== undefined) s.committed = o.offset;
    }
    if (done.length > 0) this.options.onCommit?.(done);
    if (firstError !== undefined) throw firstError;
  }
}

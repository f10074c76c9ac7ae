/**
 * The replication oracle of test/integration/replication-helpers.ts for the compose cluster,
 * where there is no LocalCluster to ask which processes run: partition state (leader, leader
 * epoch, ISR) comes from the gateway's Metadata (built from its etcd mirror, so it answers while
 * any broker is down), sends go straight to the leader's published EXTERNAL listener, and the
 * two readers of the check are independent paths: the leader's own listener, and the gateway's
 * BrokerService Fetch (which routes to the leader itself).
 *
 * As there, one sender per partition sends one batch per Produce with acks=all and never retries
 * the same records, so "each record in the log at most once" holds without idempotence. Unlike
 * there, a sender does not know which broker is faulted: it sends to whatever the metadata names
 * leader (a paused one included, where the send runs into its deadline), as a real client would.
 */
import assert from "node:assert/strict";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { unary } from "../../services/shared/grpc/client.js";
import { fromProtoErrorCode } from "../../services/shared/grpc/errors.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { type Clients, fetchAll, listOffset } from "../integration/cluster-helpers.js";
import {
  type Acked,
  ORACLE_SEND_TIMEOUT_MS,
  type PartitionInfo,
} from "../integration/replication-helpers.js";
import { waitFor } from "../support/wait-for.js";

/** The proto's ACKS_ALL. */
const ACKS_ALL = 3;
/** Pause after a failed send before the next one (metadata refresh), ms. */
const RETRY_PAUSE_MS = 100;
/** Records per batch a sender sends. */
const BATCH_RECORDS = 5;
/** Deadline of a Metadata or ListOffsets call while polling, ms. */
const POLL_CALL_DEADLINE_MS = 3_000;
/** How long the check waits for a leader's high watermark to cover the acknowledged records, ms. */
const HW_WAIT_MS = 30_000;
/** Pause between two polls of partition state, ms. */
const POLL_INTERVAL_MS = 200;

/** Where the compose cluster is reached from the host. */
export interface ComposeEndpoints {
  /** The gateway's published gRPC address (BrokerService, AdminService). */
  readonly gateway: string;
  /** A broker's published EXTERNAL listener, by broker id. */
  brokerAddress(id: number): string;
}

/** Bounds of a producer's send loops. */
export interface OracleLimits {
  /** Most sends per partition. */
  readonly sendsMax: number;
  /** Longest time the senders run, ms (they stop by themselves after it). */
  readonly durationMs: number;
}

/** Partition state of `topic` as the gateway's Metadata gives it; undefined if it cannot. */
export async function partitionStates(
  clients: Clients,
  endpoints: ComposeEndpoints,
  topic: string,
): Promise<Map<number, PartitionInfo> | undefined> {
  const md = await unary(
    clients.broker(endpoints.gateway),
    "Metadata",
    { topics: [topic] },
    { deadlineMs: POLL_CALL_DEADLINE_MS },
  ).catch(() => undefined);
  const t = md?.topics.find((x) => x.name === topic);
  if (t === undefined || t.errorCode !== 0) return undefined;
  return new Map(
    t.partitions.map((p) => [
      p.partition,
      { leader: p.leaderId, leaderEpoch: p.leaderEpoch, isr: p.isr, replicas: p.replicas },
    ]),
  );
}

/**
 * Waits until all `partitions` of `topic` have a leader and satisfy `ok`; returns their state.
 * The timeout's error carries the last state seen.
 */
export async function waitForPartitions(
  clients: Clients,
  endpoints: ComposeEndpoints,
  topic: string,
  partitions: number,
  ok: (p: PartitionInfo, partition: number) => boolean,
  timeoutMs: number,
  what: string,
): Promise<Map<number, PartitionInfo>> {
  let last: Map<number, PartitionInfo> | undefined;
  return waitFor(
    async () => {
      last = await partitionStates(clients, endpoints, topic);
      if (last === undefined || last.size !== partitions) return undefined;
      for (const [n, p] of last) if (p.leader < 0 || !ok(p, n)) return undefined;
      return last;
    },
    { timeoutMs, intervalMs: POLL_INTERVAL_MS, message: what },
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last state ${JSON.stringify([...(last ?? [])])}`, {
      cause: err,
    });
  });
}

/**
 * What one acks=all Produce got: the broker's answer for the partition (`code` NONE with the base
 * offset, or its error), or no answer at all (`answered` false: the call itself failed, e.g. no
 * connection, or its deadline passed).
 */
export type ProduceOutcome =
  | {
      readonly answered: true;
      readonly code: ErrorCode;
      readonly message: string;
      readonly baseOffset: number;
    }
  | { readonly answered: false; readonly error: SamsaError };

/** One acks=all Produce of one batch of `values` to `address`. */
export async function produceOnce(
  clients: Clients,
  address: string,
  topic: string,
  partition: number,
  values: readonly string[],
  deadlineMs = ORACLE_SEND_TIMEOUT_MS + 1_000,
): Promise<ProduceOutcome> {
  const records = buildBatch(values.map((v) => ({ key: null, value: Buffer.from(v) })));
  try {
    const res = await unary(
      clients.broker(address),
      "Produce",
      {
        partitions: [{ topic, partition, records }],
        acks: ACKS_ALL,
        timeoutMs: ORACLE_SEND_TIMEOUT_MS,
      },
      { deadlineMs },
    );
    const r = res.partitions[0]!;
    const code = fromProtoErrorCode(r.errorCode);
    return { answered: true, code, message: r.errorMessage, baseOffset: Number(r.baseOffset) };
  } catch (err) {
    if (!(err instanceof SamsaError)) throw err;
    return { answered: false, error: err };
  }
}

/** acks=all senders, one per partition (so send order is offset order), until stopped. */
export class ComposeOracleProducer {
  /** Acknowledged records per partition, in send order. */
  readonly acked = new Map<number, Acked[]>();
  /** Failed sends by error code name. */
  readonly failures = new Map<string, number>();
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private seq = 0;

  constructor(
    private readonly clients: Clients,
    private readonly endpoints: ComposeEndpoints,
    private readonly topic: string,
    private readonly partitions: number,
    private readonly limits: OracleLimits,
  ) {
    for (let p = 0; p < partitions; p++) this.acked.set(p, []);
  }

  /** Acknowledged records in all, or in `partitions` only. */
  ackedIn(partitions?: readonly number[]): number {
    let n = 0;
    for (const [p, a] of this.acked)
      if (partitions === undefined || partitions.includes(p)) n += a.length;
    return n;
  }

  /** Acknowledged records in all. */
  get ackedCount(): number {
    return this.ackedIn();
  }

  /** Failures as `CODE×n` for diagnostics. */
  get failureSummary(): string {
    return [...this.failures].map(([code, n]) => `${code}×${n}`).join(", ") || "none";
  }

  /** Starts one sender per partition. */
  start(): void {
    const until = Date.now() + this.limits.durationMs;
    for (let p = 0; p < this.partitions; p++) this.loops.push(this.sendLoop(p, until));
  }

  /** Stops sending; resolves once every sender's last send ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /** Waits until `n` more records were acknowledged than now (in `partitions`, or in all). */
  async waitForMoreAcks(
    n: number,
    timeoutMs: number,
    what: string,
    partitions?: readonly number[],
  ): Promise<void> {
    const target = this.ackedIn(partitions) + n;
    await waitFor(() => this.ackedIn(partitions) >= target, { timeoutMs, message: what }).catch(
      (err: Error) => {
        throw new Error(
          `${err.message}: ${this.ackedIn(partitions)} of ${target} acknowledged, failures ${this.failureSummary}`,
          { cause: err },
        );
      },
    );
  }

  private async sendLoop(partition: number, until: number): Promise<void> {
    let infos: Map<number, PartitionInfo> | undefined;
    for (let i = 0; i < this.limits.sendsMax && !this.stopped && Date.now() < until; i++) {
      try {
        infos ??= await partitionStates(this.clients, this.endpoints, this.topic);
        const leader = infos?.get(partition)?.leader ?? -1;
        if (leader < 0) throw new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "no leader");
        const values = Array.from({ length: BATCH_RECORDS }, () => `p${partition}-${this.seq++}`);
        const outcome = await produceOnce(
          this.clients,
          this.endpoints.brokerAddress(leader),
          this.topic,
          partition,
          values,
        );
        if (!outcome.answered) throw outcome.error;
        if (outcome.code !== ErrorCode.NONE) throw new SamsaError(outcome.code, outcome.message);
        const base = outcome.baseOffset;
        const acked = this.acked.get(partition)!;
        for (const [k, value] of values.entries()) acked.push({ offset: base + k, value });
      } catch (err) {
        const code = err instanceof SamsaError ? ErrorCode[err.code] : "OTHER";
        this.failures.set(code, (this.failures.get(code) ?? 0) + 1);
        infos = undefined;
        await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
      }
    }
  }
}

/**
 * The oracle: per partition, once the leader's high watermark covers every acknowledged record,
 * reader 1 (the leader's own listener, `clients`) and then reader 2 (the gateway's Fetch,
 * `freshClients`) read the whole partition; reader 2 sees at least as much and the same records
 * at the same offsets; offsets are contiguous, no value is in the log twice, every acknowledged
 * record is at its offset with its value, in send order. Returns the values read per partition.
 */
export async function checkComposeOracle(
  clients: Clients,
  freshClients: Clients,
  endpoints: ComposeEndpoints,
  topic: string,
  producer: ComposeOracleProducer,
): Promise<Map<number, Set<string>>> {
  const logs = new Map<number, Set<string>>();
  for (const [partition, acked] of producer.acked) {
    // A leader elected a moment ago learns the high watermark from its followers' next fetch:
    // wait (bounded) until it covers what was acknowledged. Lost records never get there.
    const needed = (acked.at(-1)?.offset ?? -1) + 1;
    const leader = await waitFor(
      async () => {
        const info = (await partitionStates(clients, endpoints, topic))?.get(partition);
        if (info === undefined || info.leader < 0) return undefined;
        const address = endpoints.brokerAddress(info.leader);
        const lo = await listOffset(clients.broker(address), topic, partition, -1, 2_000);
        return lo.errorCode === 0 && Number(lo.offset) >= needed ? info.leader : undefined;
      },
      { timeoutMs: HW_WAIT_MS, message: `partition ${partition}: high watermark at ${needed}` },
    );
    const read = async (c: Clients, address: string): Promise<Array<[number, string]>> =>
      (await fetchAll(c.broker(address), topic, partition)).map((r) => [r.offset, r.value ?? ""]);
    const first = await read(clients, endpoints.brokerAddress(leader));
    const second = await read(freshClients, endpoints.gateway);
    assert.ok(
      second.length >= first.length,
      `partition ${partition}: the second reader (gateway) has as much (${second.length} < ${first.length})`,
    );
    assert.deepEqual(
      second.slice(0, first.length),
      first,
      `partition ${partition}: both readers see the same records at the same offsets`,
    );
    const at = new Map<number, string>();
    const seen = new Set<string>();
    let previous: number | undefined;
    for (const [offset, value] of first) {
      if (previous !== undefined)
        assert.equal(offset, previous + 1, `partition ${partition}: contiguous offsets`);
      previous = offset;
      assert.ok(!seen.has(value), `partition ${partition}: ${value} is in the log once`);
      seen.add(value);
      at.set(offset, value);
    }
    logs.set(partition, seen);
    let last = -1;
    for (const a of acked) {
      assert.equal(
        at.get(a.offset),
        a.value,
        `partition ${partition}: acknowledged ${a.value} at offset ${a.offset}`,
      );
      assert.ok(a.offset > last, `partition ${partition}: acknowledged records in send order`);
      last = a.offset;
    }
  }
  return logs;
}

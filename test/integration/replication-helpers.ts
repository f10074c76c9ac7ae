/**
 * The replication oracle (Kafka's replication system tests): producers that send acks=all
 * throughout a fault and remember exactly what was acknowledged, and a check that afterwards
 * every acknowledged record is read back at its offset, once, in send order per partition, and
 * that two independent readers see the same records at the same offsets.
 *
 * The producer is a plain gRPC client sending one batch per Produce with no retry of the same
 * records (a failed send is simply not acknowledged; the next send carries new records), so that
 * "each record in the log at most once" holds without idempotence: a record may be in the log
 * without having been acknowledged (its answer was lost), never twice.
 */
import assert from "node:assert/strict";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { unary } from "../../services/shared/grpc/client.js";
import { fromProtoErrorCode } from "../../services/shared/grpc/errors.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { waitFor } from "../support/wait-for.js";
import { type Clients, fetchAll, listOffset } from "./cluster-helpers.js";

/** The proto's ACKS_ALL. */
const ACKS_ALL = 3;
/** Deadline of one oracle Produce (and its acks=all wait), ms. */
export const ORACLE_SEND_TIMEOUT_MS = 4_000;
/** Pause after a failed send before the next one (metadata refresh), ms. */
const ORACLE_RETRY_PAUSE_MS = 100;
/** Records per batch the oracle sends. */
const ORACLE_BATCH_RECORDS = 5;
/** How long the oracle waits for a leader's high watermark to cover the acknowledged records, ms. */
const HW_WAIT_MS = 15_000;
/** Deadline of a Metadata poll, ms. */
const METADATA_DEADLINE_MS = 2_000;

/** One acknowledged record. */
export interface Acked {
  readonly offset: number;
  readonly value: string;
}

/** A partition's state as Metadata gives it. */
export interface PartitionInfo {
  readonly leader: number;
  readonly leaderEpoch: number;
  readonly isr: readonly number[];
  readonly replicas: readonly number[];
}

/** Metadata of `topic` from the first broker that answers. */
export async function partitionInfos(
  cluster: LocalCluster,
  clients: Clients,
  topic: string,
): Promise<Map<number, PartitionInfo> | undefined> {
  for (const b of cluster.brokerProcesses) {
    if (!b.running || b.paused) continue;
    try {
      const md = await unary(
        clients.broker(b.address),
        "Metadata",
        { topics: [topic] },
        { deadlineMs: METADATA_DEADLINE_MS },
      );
      const t = md.topics.find((x) => x.name === topic);
      if (t === undefined || t.errorCode !== 0) continue;
      return new Map(
        t.partitions.map((p) => [
          p.partition,
          { leader: p.leaderId, leaderEpoch: p.leaderEpoch, isr: p.isr, replicas: p.replicas },
        ]),
      );
    } catch {
      // try the next broker
    }
  }
  return undefined;
}

/** Waits until every partition of `topic` has a leader and `isrSize` in-sync replicas. */
export async function waitForIsr(
  cluster: LocalCluster,
  clients: Clients,
  topic: string,
  partitions: number,
  isrSize: (p: PartitionInfo) => boolean,
  timeoutMs: number,
  what: string,
): Promise<Map<number, PartitionInfo>> {
  return waitFor(
    async () => {
      const infos = await partitionInfos(cluster, clients, topic);
      if (infos === undefined || infos.size !== partitions) return undefined;
      for (const p of infos.values()) if (p.leader < 0 || !isrSize(p)) return undefined;
      return infos;
    },
    { timeoutMs, intervalMs: 100, message: what },
  );
}

/** acks=all senders, one per partition (so send order is offset order), until stopped. */
export class OracleProducer {
  /** Acknowledged records per partition, in send order. */
  readonly acked = new Map<number, Acked[]>();
  /** Failed sends by error code name. */
  readonly failures = new Map<string, number>();
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private seq = 0;

  constructor(
    private readonly cluster: LocalCluster,
    private readonly clients: Clients,
    private readonly topic: string,
    private readonly partitions: number,
    /** Most sends per partition (bounds the loop). */
    private readonly sendsMax = 5_000,
  ) {
    for (let p = 0; p < partitions; p++) this.acked.set(p, []);
  }

  /** Acknowledged records in all. */
  get ackedCount(): number {
    let n = 0;
    for (const a of this.acked.values()) n += a.length;
    return n;
  }

  /** Starts one sender per partition. */
  start(): void {
    for (let p = 0; p < this.partitions; p++) this.loops.push(this.sendLoop(p));
  }

  /** Stops sending; resolves once every sender's last send ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /** Waits until `n` more records were acknowledged than now. */
  async waitForMoreAcks(n: number, timeoutMs: number, what: string): Promise<void> {
    const target = this.ackedCount + n;
    await waitFor(() => this.ackedCount >= target, { timeoutMs, message: what });
  }

  private async sendLoop(partition: number): Promise<void> {
    let infos: Map<number, PartitionInfo> | undefined;
    for (let i = 0; i < this.sendsMax && !this.stopped; i++) {
      try {
        infos ??= await partitionInfos(this.cluster, this.clients, this.topic);
        const leader = infos?.get(partition)?.leader ?? -1;
        if (leader < 0) throw new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "no leader");
        const values = Array.from(
          { length: ORACLE_BATCH_RECORDS },
          () => `p${partition}-${this.seq++}`,
        );
        const base = await this.send(leader, partition, values);
        const acked = this.acked.get(partition)!;
        for (const [k, value] of values.entries()) acked.push({ offset: base + k, value });
      } catch (err) {
        const code = err instanceof SamsaError ? ErrorCode[err.code] : "OTHER";
        this.failures.set(code, (this.failures.get(code) ?? 0) + 1);
        infos = undefined;
        await new Promise((r) => setTimeout(r, ORACLE_RETRY_PAUSE_MS));
      }
    }
  }

  private async send(leader: number, partition: number, values: string[]): Promise<number> {
    const broker = this.cluster.broker(leader);
    if (!broker.running || broker.paused) {
      // Still named leader in the metadata: the call would hang on a paused process.
      throw new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, `leader ${leader} is down`);
    }
    const records = buildBatch(values.map((v) => ({ key: null, value: Buffer.from(v) })));
    const res = await unary(
      this.clients.broker(broker.address),
      "Produce",
      {
        partitions: [{ topic: this.topic, partition, records }],
        acks: ACKS_ALL,
        timeoutMs: ORACLE_SEND_TIMEOUT_MS,
      },
      { deadlineMs: ORACLE_SEND_TIMEOUT_MS + 1_000 },
    );
    const r = res.partitions[0]!;
    const code = fromProtoErrorCode(r.errorCode);
    if (code !== ErrorCode.NONE) throw new SamsaError(code, r.errorMessage);
    return Number(r.baseOffset);
  }
}

/** Reads one partition from its current leader: [offset, value] in log order. */
async function readPartition(
  cluster: LocalCluster,
  clients: Clients,
  topic: string,
  partition: number,
  leader: number,
): Promise<Array<[number, string]>> {
  const records = await fetchAll(clients.broker(cluster.broker(leader).address), topic, partition);
  return records.map((r) => [r.offset, r.value ?? ""]);
}

/**
 * The oracle: every acknowledged record is read back at its offset with its value, no value is
 * in the log twice, acknowledged records are in send order, offsets are contiguous, and a second
 * read (from a fresh connection, after the first) sees the same records at the same offsets.
 * Returns the records read per partition.
 */
export async function checkOracle(
  cluster: LocalCluster,
  clients: Clients,
  freshClients: Clients,
  topic: string,
  producer: OracleProducer,
): Promise<void> {
  for (const [partition, acked] of producer.acked) {
    // A leader elected a moment ago learns the high watermark from its followers' next fetch:
    // wait (bounded) until it covers what was acknowledged. Lost records never get there.
    const needed = (acked.at(-1)?.offset ?? -1) + 1;
    const leader = await waitFor(
      async () => {
        const info = (await partitionInfos(cluster, clients, topic))?.get(partition);
        if (info === undefined || info.leader < 0) return undefined;
        const broker = cluster.broker(info.leader);
        const lo = await listOffset(clients.broker(broker.address), topic, partition, -1, 2_000);
        return lo.errorCode === 0 && Number(lo.offset) >= needed ? info.leader : undefined;
      },
      { timeoutMs: HW_WAIT_MS, message: `partition ${partition}: high watermark at ${needed}` },
    );
    const first = await readPartition(cluster, clients, topic, partition, leader);
    const second = await readPartition(cluster, freshClients, topic, partition, leader);
    assert.ok(second.length >= first.length, `partition ${partition}: the second read has as much`);
    assert.deepEqual(
      second.slice(0, first.length),
      first,
      `partition ${partition}: same records at the same offsets`,
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
}

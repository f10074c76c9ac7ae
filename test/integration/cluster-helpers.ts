/**
 * What the `cluster-*` integration tests share: gRPC clients of a {@link LocalCluster}, topic
 * creation, waiting for partition leaders, produce and fetch-everything over raw BrokerService
 * calls (the client library is not used on purpose: these tests pin the brokers' own behaviour),
 * and Kafka's murmur2 key partitioning.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  type LocalCluster,
  type LocalClusterOptions,
  startLocalCluster,
} from "../../services/local-cluster/local-cluster.js";
import { type ErrorCode, SamsaError } from "../../services/shared/errors.js";
import type { AdminServiceClient } from "../../services/shared/generated/samsa/v1/AdminService.js";
import type { BrokerServiceClient } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import type { CreatableTopic } from "../../services/shared/generated/samsa/v1/CreatableTopic.js";
import type { CreateTopicResult__Output } from "../../services/shared/generated/samsa/v1/CreateTopicResult.js";
import type { ProducePartitionResult__Output } from "../../services/shared/generated/samsa/v1/ProducePartitionResult.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import { adminService, brokerService } from "../../services/shared/grpc/proto.js";
import { FETCH_WAIT_MS_MAX } from "../../services/shared/protocol-limits.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";
import type { ProducerRecord } from "../../services/shared/record-batch/records.js";
import { waitFor } from "../support/wait-for.js";

/** Acks values of the proto. */
export const ACKS_LEADER = 2;
/** Deadline of one test call, ms (short: a hang should fail the test, not the runner). */
export const CALL_DEADLINE_MS = 10_000;
/** Deadline of one call made while polling, ms (a poll must not outlast its waitFor much). */
const POLL_CALL_DEADLINE_MS = 2_000;
/**
 * Long polls that data should wake are sent with the longest wait, {@link FETCH_WAIT_MS_MAX};
 * a test waits this long for their answer, ms: a poll that only answers at its max wait fails.
 */
export const LONG_POLL_WAKE_TIMEOUT_MS = FETCH_WAIT_MS_MAX / 2;
/** How long a new topic's partitions may take to get serving leaders, ms. */
export const LEADERS_TIMEOUT_MS = 15_000;
/** Bytes asked per fetch while reading a partition to its end. */
const FETCH_MAX_BYTES = 1024 * 1024;
/** Fetches {@link fetchAll} makes at most (bounds a broker that never reaches its end). */
const FETCH_ROUNDS_MAX = 1_000;

/**
 * Starts a test's cluster: ephemeral ports and a fresh temp dir (the defaults), `extra` on top.
 * With `KEEP_CLUSTER_DATA=1` in the environment the dir (data and `logs/<name>.log`) is kept
 * after the run and its path printed, to read the processes' logs after a failure.
 */
export async function startTestCluster(extra: LocalClusterOptions = {}): Promise<LocalCluster> {
  const keepDataDir = process.env.KEEP_CLUSTER_DATA === "1";
  const cluster = await startLocalCluster({ keepDataDir, ...extra });
  if (keepDataDir) console.log(`cluster data and logs: ${cluster.dataDir}`);
  return cluster;
}

/** gRPC clients by address, closed together. */
export class Clients {
  private readonly admins = new Map<string, AdminServiceClient>();
  private readonly brokers = new Map<string, BrokerServiceClient>();

  admin(address: string): AdminServiceClient {
    let c = this.admins.get(address);
    if (!c) {
      c = createClient(adminService.Client, address);
      this.admins.set(address, c);
    }
    return c;
  }

  broker(address: string): BrokerServiceClient {
    let c = this.brokers.get(address);
    if (!c) {
      c = createClient(brokerService.Client, address);
      this.brokers.set(address, c);
    }
    return c;
  }

  close(): void {
    for (const c of [...this.admins.values(), ...this.brokers.values()]) c.close();
    this.admins.clear();
    this.brokers.clear();
  }
}

/** A topic name no other test uses. */
export function uniqueTopic(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** CreateTopics, returning the per-topic results in request order. */
export async function createTopics(
  admin: AdminServiceClient,
  topics: CreatableTopic[],
): Promise<CreateTopicResult__Output[]> {
  const res = await unary(admin, "CreateTopics", { topics }, { deadlineMs: CALL_DEADLINE_MS });
  assert.equal(res.topics.length, topics.length, "one result per topic");
  return res.topics;
}

/** Creates one topic and asserts it worked. */
export async function createTopic(
  admin: AdminServiceClient,
  name: string,
  numPartitions: number,
  replicationFactor = 1,
): Promise<CreateTopicResult__Output> {
  const [r] = await createTopics(admin, [{ name, numPartitions, replicationFactor }]);
  assert.equal(r!.errorCode, 0, `create ${name}: ${r!.errorMessage}`);
  return r!;
}

/**
 * Waits until every partition of `topic` has a leader that serves it (ListOffsets answers on
 * it); returns each partition's leader id.
 */
export async function waitForLeaders(
  cluster: LocalCluster,
  clients: Clients,
  topic: string,
  partitions: number,
  timeoutMs = LEADERS_TIMEOUT_MS,
): Promise<Map<number, number>> {
  return waitFor(
    async () => {
      const running = cluster.brokerProcesses.find((b) => b.running && !b.paused);
      if (!running) return undefined;
      const md = await unary(
        clients.broker(running.address),
        "Metadata",
        { topics: [topic] },
        { deadlineMs: POLL_CALL_DEADLINE_MS },
      );
      const t = md.topics.find((x) => x.name === topic);
      if (t?.errorCode !== 0 || t.partitions.length !== partitions) return undefined;
      const leaders = new Map<number, number>();
      for (const p of t.partitions) {
        if (p.leaderId < 0) return undefined;
        const leader = clients.broker(cluster.broker(p.leaderId).address);
        const lo = await listOffset(leader, topic, p.partition, -1, POLL_CALL_DEADLINE_MS);
        if (lo.errorCode !== 0) return undefined;
        leaders.set(p.partition, p.leaderId);
      }
      return leaders;
    },
    { timeoutMs, message: `leaders of ${topic}'s ${partitions} partitions` },
  );
}

/** ListOffsets of one partition (`timestamp` -2 earliest, -1 latest, else ms). */
export async function listOffset(
  broker: BrokerServiceClient,
  topic: string,
  partition: number,
  timestamp: number,
  deadlineMs = CALL_DEADLINE_MS,
) {
  const res = await unary(
    broker,
    "ListOffsets",
    { partitions: [{ topic, partition, timestamp: String(timestamp) }] },
    { deadlineMs },
  );
  return res.partitions[0]!;
}

/** Produces raw bytes to one partition with acks=leader; returns its result. */
export async function produceRaw(
  broker: BrokerServiceClient,
  topic: string,
  partition: number,
  records: Buffer,
): Promise<ProducePartitionResult__Output> {
  const res = await unary(
    broker,
    "Produce",
    { partitions: [{ topic, partition, records }], acks: ACKS_LEADER },
    { deadlineMs: CALL_DEADLINE_MS },
  );
  assert.equal(res.partitions.length, 1);
  return res.partitions[0]!;
}

/** Produces one batch of `records`; asserts success and returns its base offset. */
export async function produce(
  broker: BrokerServiceClient,
  topic: string,
  partition: number,
  records: ProducerRecord[],
): Promise<number> {
  const r = await produceRaw(broker, topic, partition, buildBatch(records));
  assert.equal(r.errorCode, 0, `produce to ${topic}-${partition}: ${r.errorMessage}`);
  return Number(r.baseOffset);
}

/** A record as read back: text key and value. */
export interface ReadRecord {
  offset: number;
  key: string | null;
  value: string | null;
  timestamp: number;
}

/** Records as {@link ReadRecord}s (for comparing with what was read). */
export function textRecords(records: ProducerRecord[], firstOffset: number): ReadRecord[] {
  return records.map((r, i) => ({
    offset: firstOffset + i,
    key: r.key ? r.key.toString() : null,
    value: r.value ? r.value.toString() : null,
    timestamp: r.timestamp ?? -1,
  }));
}

/** Decodes fetched bytes, dropping records before `from` (a batch may start earlier). */
export function decodeRecords(bytes: Buffer, from = 0): ReadRecord[] {
  return decodeBatches(bytes)
    .flatMap((b) => b.records)
    .filter((r) => r.offset >= from)
    .map((r) => ({
      offset: r.offset,
      key: r.key ? r.key.toString() : null,
      value: r.value ? r.value.toString() : null,
      timestamp: r.timestamp,
    }));
}

/** Reads a partition from `from` up to its high watermark; asserts every fetch succeeds. */
export async function fetchAll(
  broker: BrokerServiceClient,
  topic: string,
  partition: number,
  from = 0,
): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  let offset = from;
  for (let round = 0; round < FETCH_ROUNDS_MAX; round++) {
    const res = await unary(
      broker,
      "Fetch",
      {
        partitions: [{ topic, partition, fetchOffset: String(offset), currentLeaderEpoch: -1 }],
        maxWaitMs: 0,
        minBytes: 0,
        maxBytes: FETCH_MAX_BYTES,
      },
      { deadlineMs: CALL_DEADLINE_MS },
    );
    const p = res.partitions[0]!;
    assert.equal(p.errorCode, 0, `fetch ${topic}-${partition}@${offset}: ${p.errorMessage}`);
    out.push(...decodeRecords(p.records as Buffer, offset));
    const next = Number(p.nextOffset);
    if (next >= Number(p.highWatermark) || next === offset) return out;
    offset = next;
  }
  throw new Error(`fetchAll ${topic}-${partition}: more than ${FETCH_ROUNDS_MAX} fetches`);
}

/** Asserts that `promise` rejects with a {@link SamsaError} of `code`; returns the error. */
export async function expectCallError(
  promise: Promise<unknown>,
  code: ErrorCode,
): Promise<SamsaError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SamsaError, `a SamsaError, not ${String(err)}`);
    assert.equal(err.code, code, `error code (${err.message})`);
    return err;
  }
  assert.fail(`expected a call error with code ${code}`);
}

/**
 * Whether `promise` has settled yet, as a function to poll (with {@link waitFor}). It does not
 * handle the promise's rejection for the caller: await the promise itself too.
 */
export function settledFlag(promise: Promise<unknown>): () => boolean {
  let settled = false;
  const settle = () => {
    settled = true;
  };
  promise.then(settle, settle);
  return () => settled;
}

/** Kafka's murmur2 (the Java client's `Utils.murmur2`) as a signed 32-bit integer. */
export function murmur2(data: Buffer): number {
  const m = 0x5bd1e995;
  const length = data.length;
  let h = (0x9747b28c ^ length) | 0;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const rest = length % 4;
  if (rest >= 3) h ^= data[whole + 2]! << 16;
  if (rest >= 2) h ^= data[whole + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[whole]!, m);
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition Kafka's default partitioner gives a key: `toPositive(murmur2(key)) % n`. */
export function partitionForKey(key: Buffer, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}

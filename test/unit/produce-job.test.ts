/**
 * One producer send (`services/client/produce-job.ts`) against stub brokers: in-process gRPC
 * servers on 127.0.0.1:0 whose Metadata and Produce answers each test scripts, reached through
 * the client's real `Cluster`. Checked: one outcome per record in input order with its offset,
 * one Produce call per leader per round, retriable errors retried with the same bytes (and a
 * metadata refresh only after stale-metadata errors such as NOT_LEADER, the retry then going
 * to the new leader), non-retriable errors failing their records at once, the delivery deadline
 * ending the retries with the last error, and a partition's batches written in order.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { Registry } from "prom-client";
import { Cluster } from "../../services/client/metadata.js";
import { Producer } from "../../services/client/producer.js";
import {
  ProduceJob,
  type ProduceJobOptions,
  type RecordOutcome,
} from "../../services/client/produce-job.js";
import type { ProducerRecord } from "../../services/client/records.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { Acks } from "../../services/shared/generated/samsa/v1/Acks.js";
import type { BrokerServiceHandlers } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import type { ProducePartitionResult } from "../../services/shared/generated/samsa/v1/ProducePartitionResult.js";
import type { ProduceRequest__Output } from "../../services/shared/generated/samsa/v1/ProduceRequest.js";
import { brokerService } from "../../services/shared/grpc/proto.js";
import {
  createGrpcServer,
  type GrpcServer,
  type ServiceHandlers,
} from "../../services/shared/grpc/server.js";
import { Partitioner } from "../../services/shared/partitioner.js";
import { CompressionType, decodeBatch } from "../../services/shared/record-batch/index.js";
import { decodeBatches } from "../../services/shared/record-batch/builder.js";

const TOPIC = "orders";
const PARTITIONS = 3;
const BROKER_IDS = [1, 2] as const;

/** A partition's answer to one produce, chosen by the test; absent = append. */
type Script = (
  broker: number,
  partition: number,
  attempt: number,
) => ProducePartitionResult | undefined;

/** What the stub cluster is and saw. */
interface StubState {
  /** Leader broker id per partition, as Metadata tells it. */
  leaders: number[];
  /** Metadata topic error (UNKNOWN_TOPIC_OR_PARTITION for a missing topic). */
  topicError: ErrorCode;
  metadataCalls: number;
  /** Every Produce call: which broker, and each partition's batch bytes. */
  produceCalls: { broker: number; partitions: { partition: number; batch: Buffer }[] }[];
  /** Appended batches per partition, in order. */
  logs: Buffer[][];
  /** A call-level error to throw, by broker, for the next Produce calls. */
  callErrors: Map<number, SamsaError[]>;
  script: Script;
  /** Produce attempts per partition so far. */
  attempts: number[];
}

const state: StubState = freshState();

function freshState(): StubState {
  return {
    leaders: [1, 1, 2],
    topicError: ErrorCode.NONE,
    metadataCalls: 0,
    produceCalls: [],
    logs: Array.from({ length: PARTITIONS }, () => []),
    callErrors: new Map(),
    script: () => undefined,
    attempts: new Array(PARTITIONS).fill(0),
  };
}

const servers = new Map<number, GrpcServer>();
const ports = new Map<number, number>();

function handlers(broker: number): ServiceHandlers<BrokerServiceHandlers> {
  const none = async () => {
    throw new SamsaError(ErrorCode.INVALID_REQUEST, "not in this stub");
  };
  return {
    Metadata: async () => {
      state.metadataCalls++;
      return {
        clusterId: "stub",
        controllerId: "",
        brokers: BROKER_IDS.map((id) => ({
          id,
          host: "127.0.0.1",
          port: ports.get(id)!,
          rack: "",
        })),
        topics: [
          {
            name: TOPIC,
            errorCode: state.topicError,
            topicId: "t-1",
            partitions:
              state.topicError === ErrorCode.NONE
                ? state.leaders.map((leaderId, partition) => ({
                    partition,
                    errorCode: 0,
                    leaderId,
                    leaderEpoch: 0,
                    replicas: [leaderId],
                    isr: [leaderId],
                    offlineReplicas: [],
                  }))
                : [],
          },
        ],
      };
    },
    Produce: async (request: ProduceRequest__Output) => {
      state.produceCalls.push({
        broker,
        partitions: request.partitions.map((p) => ({
          partition: p.partition,
          batch: Buffer.from(p.records),
        })),
      });
      const callError = state.callErrors.get(broker)?.shift();
      if (callError) throw callError;
      return {
        partitions: request.partitions.map((p) => {
          const attempt = state.attempts[p.partition]!++;
          const scripted = state.script(broker, p.partition, attempt);
          if (scripted) return { topic: p.topic, partition: p.partition, ...scripted };
          if (state.leaders[p.partition] !== broker) {
            return {
              topic: p.topic,
              partition: p.partition,
              errorCode: ErrorCode.NOT_LEADER,
              errorMessage: `broker ${broker} does not lead it`,
            };
          }
          const log = state.logs[p.partition]!;
          const baseOffset = log.reduce((n, b) => n + decodeBatch(b).records.length, 0);
          log.push(Buffer.from(p.records));
          return { topic: p.topic, partition: p.partition, errorCode: 0, baseOffset };
        }),
      };
    },
    Fetch: none,
    ListOffsets: none,
    OffsetsForLeaderEpoch: none,
    InitProducerId: async () => ({ producerId: "42", producerEpoch: 0 }),
    Subscribe: () => none(),
  };
}

let cluster: Cluster;

before(async () => {
  const registry = new Registry();
  for (const id of BROKER_IDS) {
    const server = createGrpcServer({ registry, shutdownGraceMs: 1_000 });
    server.addService(brokerService, handlers(id));
    ports.set(id, await server.listen("127.0.0.1", 0));
    servers.set(id, server);
  }
});
after(async () => {
  cluster?.close();
  for (const server of servers.values()) await server.stop();
});
beforeEach(() => {
  Object.assign(state, freshState());
  cluster?.close();
  cluster = new Cluster({ bootstrapServers: [`127.0.0.1:${ports.get(1)}`] });
});

const OPTIONS: ProduceJobOptions = {
  acks: Acks.ACKS_LEADER,
  compression: CompressionType.NONE,
  deliveryTimeoutMs: 20_000,
  requestTimeoutMs: 5_000,
  maxRequestSizeBytes: 1 << 20,
};

const run = (records: ProducerRecord[], options: Partial<ProduceJobOptions> = {}) =>
  new ProduceJob(cluster, new Partitioner(() => 0), TOPIC, records, {
    ...OPTIONS,
    ...options,
  }).run();

/** Records with explicit partitions: `v<i>` to partition `partitions[i]`. */
const toPartitions = (partitions: number[]): ProducerRecord[] =>
  partitions.map((partition, i) => ({ value: `v${i}`, partition }));

/** The outcomes as `partition:offset`, or the error code's name. */
const described = (outcomes: RecordOutcome[]) =>
  outcomes.map((o) => (o instanceof SamsaError ? ErrorCode[o.code] : `${o.partition}:${o.offset}`));

const callsTo = (partition: number) =>
  state.produceCalls.flatMap((c) =>
    c.partitions.filter((p) => p.partition === partition).map((p) => ({ ...p, broker: c.broker })),
  );

const valuesOf = (batch: Buffer) => decodeBatch(batch).records.map((r) => r.value?.toString());

describe("produce job: writing", () => {
  it("gives each record its partition and offset, in input order; one call per leader", async () => {
    const outcomes = await run(toPartitions([0, 2, 1, 0, 2, 0]));
    assert.deepEqual(described(outcomes), ["0:0", "2:0", "1:0", "0:1", "2:1", "0:2"]);
    // Partitions 0 and 1 are led by broker 1, partition 2 by broker 2 (calls in parallel).
    const calls = state.produceCalls
      .map((c) => [c.broker, c.partitions.map((p) => p.partition).sort()] as const)
      .sort((a, b) => a[0] - b[0]);
    assert.deepEqual(calls, [
      [1, [0, 1]],
      [2, [2]],
    ]);
    assert.deepEqual(valuesOf(state.logs[0]![0]!), ["v0", "v3", "v5"]);
    assert.equal(state.metadataCalls, 1);
  });

  it("with acks=0 the broker's -1 becomes offset -1 for every record", async () => {
    state.script = (_b, p) => ({ partition: p, errorCode: 0, baseOffset: -1 });
    const outcomes = await run(toPartitions([0, 0]), { acks: Acks.ACKS_NONE });
    assert.deepEqual(described(outcomes), ["0:-1", "0:-1"]);
  });

  it("fails alone a record too large for max.request.size, and one for a missing partition", async () => {
    const big = { value: Buffer.alloc(2_000), partition: 1 };
    const outcomes = await run(
      [{ value: "small", partition: 0 }, big, { value: "x", partition: 7 }],
      {
        maxRequestSizeBytes: 1_000,
      },
    );
    assert.deepEqual(described(outcomes), ["0:0", "MESSAGE_TOO_LARGE", "INVALID_REQUEST"]);
    assert.equal(callsTo(1).length, 0, "nothing sent for the oversized record");
  });
});

describe("produce job: retries", () => {
  it("retries a retriable error with the same bytes, without a metadata refresh", async () => {
    state.script = (_b, p, attempt) =>
      p === 0 && attempt < 2
        ? { partition: p, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS, errorMessage: "isr" }
        : undefined;
    const outcomes = await run(toPartitions([0, 1, 0]));
    assert.deepEqual(described(outcomes), ["0:0", "1:0", "0:1"]);
    const sent = callsTo(0);
    assert.equal(sent.length, 3, "two failures, then the write");
    for (const s of sent) assert.ok(s.batch.equals(sent[0]!.batch), "the same batch each time");
    assert.equal(callsTo(1).length, 1, "a written partition is not sent again");
    // NOT_ENOUGH_REPLICAS is not about stale metadata. The job asks the cluster for the topic's
    // metadata after each backoff; the cache answers without a call.
    assert.equal(state.metadataCalls, 1, "no Metadata call after NOT_ENOUGH_REPLICAS");
  });

  it("after NOT_LEADER refreshes the metadata and sends to the new leader", async () => {
    // Broker 1 loses partition 0 to broker 2 when it answers the first produce.
    state.script = (broker, p, attempt) => {
      if (broker === 1 && p === 0 && attempt === 0) {
        state.leaders[0] = 2;
        return { partition: p, errorCode: ErrorCode.NOT_LEADER, errorMessage: "moved" };
      }
      return undefined;
    };
    const outcomes = await run(toPartitions([0, 0, 1]));
    assert.deepEqual(described(outcomes), ["0:0", "0:1", "1:0"]);
    assert.deepEqual(
      callsTo(0).map((c) => c.broker),
      [1, 2],
      "the retry went to the new leader",
    );
    assert.ok(callsTo(0)[1]!.batch.equals(callsTo(0)[0]!.batch), "the same batch");
    assert.equal(state.metadataCalls, 2, "one refresh");
    assert.equal(state.logs[0]!.length, 1);
  });

  it("a call-level failure fails every partition in the call, and they are retried", async () => {
    state.callErrors.set(1, [new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "restarting")]);
    const outcomes = await run(toPartitions([0, 1, 2]));
    assert.deepEqual(described(outcomes), ["0:0", "1:0", "2:0"]);
    assert.equal(callsTo(0).length, 2);
    assert.equal(callsTo(1).length, 2);
    assert.equal(callsTo(2).length, 1, "broker 2's partition was written the first time");
    assert.equal(state.metadataCalls, 2, "LEADER_NOT_AVAILABLE refreshes the metadata");
  });

  it("fails the records of a non-retriable error at once, and only those", async () => {
    state.script = (_b, p) =>
      p === 1
        ? { partition: p, errorCode: ErrorCode.CORRUPT_MESSAGE, errorMessage: "crc" }
        : undefined;
    const outcomes = await run(toPartitions([1, 0, 1]));
    assert.deepEqual(described(outcomes), ["CORRUPT_MESSAGE", "0:0", "CORRUPT_MESSAGE"]);
    const err = outcomes[0] as SamsaError;
    assert.match(err.message, /orders-1: crc/);
    assert.equal(callsTo(1).length, 1, "not retried");
  });

  it("ends at the delivery deadline with the last retriable error", async () => {
    state.script = (_b, p) =>
      p === 2 ? { partition: p, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS } : undefined;
    const outcomes = await run(toPartitions([2, 0, 2]), { deliveryTimeoutMs: 400 });
    assert.deepEqual(described(outcomes), ["NOT_ENOUGH_REPLICAS", "0:0", "NOT_ENOUGH_REPLICAS"]);
    assert.ok(callsTo(2).length >= 2, `retried until the deadline (${callsTo(2).length} calls)`);
    assert.equal(state.logs[2]!.length, 0);
  });

  it("a topic the cluster does not know fails every record with that error", async () => {
    state.topicError = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
    const outcomes = await run(toPartitions([0, 1]), { deliveryTimeoutMs: 300 });
    assert.deepEqual(described(outcomes), [
      "UNKNOWN_TOPIC_OR_PARTITION",
      "UNKNOWN_TOPIC_OR_PARTITION",
    ]);
    assert.equal(state.produceCalls.length, 0);
  });

  it("writes a partition's batches in order, the next only after the one before", async () => {
    // About three records per batch, so partition 0 gets several batches; the first fails once.
    const value = "x".repeat(100);
    const records = Array.from({ length: 9 }, (_, i) => ({ value: `${i}:${value}`, partition: 0 }));
    state.script = (_b, p, attempt) =>
      p === 0 && attempt === 0
        ? { partition: p, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS }
        : undefined;
    const outcomes = await run(records, { maxRequestSizeBytes: 61 + 3 * 130 });
    assert.deepEqual(
      described(outcomes),
      records.map((_, i) => `0:${i}`),
    );
    const sent = callsTo(0).map((c) => valuesOf(c.batch).map((v) => Number(v!.split(":")[0])));
    assert.ok(sent.length >= 3, `several batches (${JSON.stringify(sent)})`);
    // First the failed batch, again; then each next batch once, in order.
    assert.deepEqual(sent[1], sent[0], "the failed batch is retried before any later one");
    assert.deepEqual(
      sent.slice(1).flat(),
      records.map((_, i) => i),
    );
    assert.ok(
      state.produceCalls.every((c) => c.partitions.filter((p) => p.partition === 0).length <= 1),
      "one batch of a partition per call",
    );
  });
});

describe("Producer.send of an idempotent producer (through the accumulator)", () => {
  const headersOf = (batch: Buffer) =>
    decodeBatches(batch).map((b) => ({
      producerId: b.header.producerId,
      epoch: b.header.producerEpoch,
      base: b.header.baseSequence,
      values: b.records.map((r) => r.value?.toString()),
    }));

  it("stamps the producer id and sequences; a retry sends the same batch; outcomes in input order", async () => {
    state.script = (_b, p, attempt) =>
      p === 0 && attempt === 0
        ? { partition: p, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS, errorMessage: "isr" }
        : undefined;
    const producer = new Producer({ cluster, acks: "all" });
    try {
      const out = await producer.send(TOPIC, toPartitions([0, 2, 0]));
      assert.deepEqual(
        out.map((m) => `${m.partition}:${m.offset}`),
        ["0:0", "2:0", "0:1"],
      );
      const sent = callsTo(0);
      assert.equal(sent.length, 2, "the failure, then the retry");
      assert.ok(sent[1]!.batch.equals(sent[0]!.batch), "the same bytes again");
      assert.deepEqual(headersOf(sent[0]!.batch), [
        { producerId: 42n, epoch: 0, base: 0, values: ["v0", "v2"] },
      ]);
      // The next send continues the partition's sequences.
      await producer.send(TOPIC, toPartitions([0]));
      assert.deepEqual(headersOf(callsTo(0)[2]!.batch)[0]!.base, 2);
      assert.equal(producer.producerId, 42n);
    } finally {
      await producer.close();
    }
  });

  it("keeps send's behaviour: the first failed record's error, a per-send timeout, round robin without keys", async () => {
    state.script = (_b, p) =>
      p === 1
        ? { partition: p, errorCode: ErrorCode.CORRUPT_MESSAGE, errorMessage: "crc" }
        : p === 2
          ? { partition: p, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS }
          : undefined;
    const producer = new Producer({ cluster, acks: "all" });
    try {
      const outcomes = await producer.produce(TOPIC, toPartitions([0, 1, 2]), { timeoutMs: 500 });
      assert.deepEqual(described(outcomes), ["0:0", "CORRUPT_MESSAGE", "REQUEST_TIMED_OUT"]);
      assert.match((outcomes[2] as SamsaError).message, /the send's timeout/);
      await assert.rejects(producer.send(TOPIC, toPartitions([1])), (err) =>
        isCode(err, ErrorCode.CORRUPT_MESSAGE),
      );
      state.script = () => undefined;
      const rr = await producer.send(TOPIC, [{ value: "a" }, { value: "b" }, { value: "c" }]);
      assert.deepEqual(rr.map((m) => m.partition).sort(), [0, 1, 2], "round robin");
      // Errors of sends are the sends' own: flush() does not report them again.
      await producer.flush();
    } finally {
      await producer.close();
    }
  });
});

const isCode = (err: unknown, code: ErrorCode) => err instanceof SamsaError && err.code === code;

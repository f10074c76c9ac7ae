/**
 * Bad input against a real local cluster (etcd, 1 controller, 3 brokers with
 * `message.max.bytes=10000`): every bad topic spec, record batch, offset and raw request gets
 * its documented error code, and after each one the brokers still serve and the stored data of
 * a reference partition is unchanged.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import type { BrokerServiceClient } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import { stream, unary } from "../../services/shared/grpc/client.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { CRC_OFFSET } from "../../services/shared/record-batch/layout.js";
import {
  CALL_DEADLINE_MS,
  Clients,
  createTopic,
  createTopics,
  expectCallError,
  fetchAll,
  listOffset,
  produce,
  produceRaw,
  type ReadRecord,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

/** The brokers' `message.max.bytes` in this file. */
const MESSAGE_MAX_BYTES = 10_000;
/** The controller's `num.partitions` in this file: not the default (1), so using it shows. */
const NUM_PARTITIONS = 3;

describe("cluster: bad input", { timeout: 60_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const good = uniqueTopic("good");
  let broker: BrokerServiceClient;
  let baseline: ReadRecord[];
  const admin = () => clients.admin(cluster.controllers[0]!);

  before(async () => {
    cluster = await startTestCluster({
      controllers: 1,
      controllerArgs: [`--num.partitions=${NUM_PARTITIONS}`],
      brokerArgs: [`--message.max.bytes=${MESSAGE_MAX_BYTES}`],
    });
    await createTopic(admin(), good, 1);
    const [leader] = (await waitForLeaders(cluster, clients, good, 1)).values();
    broker = clients.broker(cluster.broker(leader!).address);
    for (let b = 0; b < 3; b++) {
      const records = [0, 1].map((i) => ({
        key: Buffer.from(`k${b}`),
        value: Buffer.from(`v${b}-${i}`),
      }));
      await produce(broker, good, 0, records);
    }
    baseline = await fetchAll(broker, good, 0);
    assert.equal(baseline.length, 6);
  });
  after(async () => {
    clients.close();
    await cluster?.stop();
  });
  // After every bad input: every broker still answers, the reference data is as it was.
  afterEach(async () => {
    for (const address of cluster.bootstrap) {
      const md = await unary(clients.broker(address), "Metadata", { topics: [good] });
      assert.equal(md.topics[0]!.errorCode, 0, `broker ${address} still serves metadata`);
    }
    assert.deepEqual(await fetchAll(broker, good, 0), baseline, "stored data unchanged");
    assert.equal(Number((await listOffset(broker, good, 0, -1)).offset), baseline.length);
  });

  test("invalid topic names are INVALID_TOPIC, each on its own", async () => {
    const bad = ["", ".", "..", "a".repeat(250), "a b", "ü", "x/y", "tab\t"];
    const fine = `${"n".repeat(241)}-${uniqueTopic("x").slice(2)}`.slice(0, 249);
    const results = await createTopics(admin(), [
      ...bad.map((name) => ({ name, numPartitions: 1, replicationFactor: 1 })),
      { name: fine, numPartitions: 1, replicationFactor: 1 },
    ]);
    for (const [i, name] of bad.entries()) {
      assert.equal(results[i]!.errorCode, ErrorCode.INVALID_TOPIC, `name ${JSON.stringify(name)}`);
      assert.notEqual(results[i]!.errorMessage, "");
    }
    assert.equal(fine.length, 249, "Kafka's longest name");
    assert.equal(results.at(-1)!.errorCode, 0, "a valid name in the same request is created");
  });

  test("an existing topic is TOPIC_ALREADY_EXISTS, in a later request or the same one", async () => {
    const name = uniqueTopic("dup");
    await createTopic(admin(), name, 1);
    const [again] = await createTopics(admin(), [{ name, numPartitions: 1 }]);
    assert.equal(again!.errorCode, ErrorCode.TOPIC_ALREADY_EXISTS);
    const twice = uniqueTopic("twice");
    const results = await createTopics(admin(), [
      { name: twice, numPartitions: 1 },
      { name: twice, numPartitions: 2 },
    ]);
    assert.deepEqual(
      results.map((r) => r.errorCode),
      [0, ErrorCode.TOPIC_ALREADY_EXISTS],
    );
  });

  test("a replication factor above the live brokers is INVALID_REPLICATION_FACTOR", async () => {
    const [r] = await createTopics(admin(), [
      { name: uniqueTopic("rf4"), numPartitions: 1, replicationFactor: 4 },
    ]);
    assert.equal(r!.errorCode, ErrorCode.INVALID_REPLICATION_FACTOR);
  });

  test("partition counts: 0 (unset) and -1 take num.partitions, -5 and 20000 are INVALID_PARTITIONS", async () => {
    const [zero, minusOne, negative, huge] = await unary(admin(), "CreateTopics", {
      topics: [
        { name: uniqueTopic("p0"), numPartitions: 0 },
        { name: uniqueTopic("pdefault"), numPartitions: -1 },
        { name: uniqueTopic("pneg"), numPartitions: -5 },
        { name: uniqueTopic("phuge"), numPartitions: 20_000 },
      ],
      validateOnly: true,
    }).then((res) => res.topics);
    // -1 (Kafka's "default") and 0 (proto3's unset value) take num.partitions; other negatives
    // are refused, as Kafka does.
    assert.deepEqual([zero!.errorCode, zero!.numPartitions], [0, NUM_PARTITIONS]);
    assert.deepEqual([minusOne!.errorCode, minusOne!.numPartitions], [0, NUM_PARTITIONS]);
    assert.equal(negative!.errorCode, ErrorCode.INVALID_PARTITIONS);
    assert.equal(huge!.errorCode, ErrorCode.INVALID_PARTITIONS);
    // validate_only created nothing.
    const described = await unary(admin(), "DescribeTopics", {
      names: [zero!.name, minusOne!.name],
    });
    for (const t of described.topics) {
      assert.equal(t.errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, t.name);
    }
    assert.equal(described.topics.length, 2);
    // And a topic really created with -1 gets num.partitions partitions, each with a leader.
    const created = uniqueTopic("pcreated");
    const [r] = await createTopics(admin(), [{ name: created, numPartitions: -1 }]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    const leaders = await waitForLeaders(cluster, clients, created, NUM_PARTITIONS);
    assert.deepEqual([...leaders.keys()].sort(), [0, 1, 2]);
  });

  test("bad topic configs are INVALID_CONFIG", async () => {
    const configs: Record<string, string>[] = [
      { "retention.ms": "abc" },
      { "segment.bytes": "-1" },
      { "no.such.config": "1" },
      { "min.insync.replicas": "0" },
      // Accepted names, but not built yet: refused rather than silently ignored.
      { "cleanup.policy": "compact" },
      { "message.timestamp.type": "LogAppendTime" },
    ];
    const results = await createTopics(
      admin(),
      configs.map((c) => ({ name: uniqueTopic("cfg"), numPartitions: 1, configs: c })),
    );
    for (const [i, r] of results.entries()) {
      assert.equal(r.errorCode, ErrorCode.INVALID_CONFIG, JSON.stringify(configs[i]));
    }
  });

  test("unknown topics and partitions are UNKNOWN_TOPIC_OR_PARTITION", async () => {
    const batch = buildBatch([{ value: Buffer.from("x") }]);
    for (const [topic, partition] of [
      ["no-such-topic", 0],
      [good, 7],
      [good, -1],
    ] as const) {
      const what = `${topic}-${partition}`;
      const produced = await produceRaw(broker, topic, partition, batch);
      assert.equal(produced.errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `produce ${what}`);
      const fetched = await unary(broker, "Fetch", {
        partitions: [{ topic, partition, fetchOffset: "0", currentLeaderEpoch: -1 }],
        maxWaitMs: 0,
      });
      const fetchCode = fetched.partitions[0]!.errorCode;
      assert.equal(fetchCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `fetch ${what}`);
      const listed = await listOffset(broker, topic, partition, -1);
      assert.equal(listed.errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `list ${what}`);
      await expectCallError(
        stream(broker, "Subscribe", { topic, partition, offset: "0" }).next(),
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
      );
    }
    const md = await unary(broker, "Metadata", { topics: ["no-such-topic"] });
    assert.equal(md.topics[0]!.errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    const described = await unary(admin(), "DescribeTopics", { names: ["no-such-topic"] });
    assert.equal(described.topics[0]!.errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    const deleted = await unary(admin(), "DeleteTopics", { names: ["no-such-topic"] });
    assert.equal(deleted.topics[0]!.errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
  });

  test("a batch over message.max.bytes is MESSAGE_TOO_LARGE, one just under it is taken", async () => {
    const big = buildBatch([{ value: Buffer.alloc(MESSAGE_MAX_BYTES, 1) }]);
    assert.ok(big.length > MESSAGE_MAX_BYTES);
    const r = await produceRaw(broker, good, 0, big);
    assert.equal(r.errorCode, ErrorCode.MESSAGE_TOO_LARGE, r.errorMessage);
    assert.equal(r.baseOffset, "-1");

    const sized = uniqueTopic("sized");
    await createTopic(admin(), sized, 1);
    const [leader] = (await waitForLeaders(cluster, clients, sized, 1)).values();
    const other = clients.broker(cluster.broker(leader!).address);
    const fits = buildBatch([{ value: Buffer.alloc(MESSAGE_MAX_BYTES - 100, 2) }]);
    assert.ok(fits.length <= MESSAGE_MAX_BYTES);
    assert.equal((await produceRaw(other, sized, 0, fits)).errorCode, 0);
  });

  test("a batch whose CRC does not match is CORRUPT_MESSAGE", async () => {
    const batch = () => buildBatch([{ key: Buffer.from("k"), value: Buffer.from("payload") }]);
    const flippedCrc = batch();
    flippedCrc[CRC_OFFSET]! ^= 0xff;
    const flippedValue = batch();
    flippedValue[flippedValue.length - 2]! ^= 0x01;
    for (const bytes of [flippedCrc, flippedValue]) {
      const r = await produceRaw(broker, good, 0, bytes);
      assert.equal(r.errorCode, ErrorCode.CORRUPT_MESSAGE, r.errorMessage);
    }
  });

  test("garbage, empty and truncated record bytes are CORRUPT_MESSAGE", async () => {
    const whole = buildBatch([{ value: Buffer.from("whole") }]);
    const inputs = {
      garbage: Buffer.from("this is not a record batch at all, just some bytes".repeat(3)),
      empty: Buffer.alloc(0),
      truncated: whole.subarray(0, whole.length - 3),
      "valid then garbage": Buffer.concat([whole, Buffer.from([1, 2, 3, 4, 5])]),
    };
    for (const [what, bytes] of Object.entries(inputs)) {
      const r = await produceRaw(broker, good, 0, bytes);
      assert.equal(r.errorCode, ErrorCode.CORRUPT_MESSAGE, `${what}: ${r.errorMessage}`);
    }
  });

  test("offsets outside the log are OFFSET_OUT_OF_RANGE; the log end is an empty read", async () => {
    const end = baseline.length;
    const fetchAt = async (offset: number) => {
      const res = await unary(broker, "Fetch", {
        partitions: [
          { topic: good, partition: 0, fetchOffset: String(offset), currentLeaderEpoch: -1 },
        ],
        maxWaitMs: 0,
      });
      return res.partitions[0]!;
    };
    for (const offset of [-1, end + 1, end + 1000]) {
      const p = await fetchAt(offset);
      assert.equal(p.errorCode, ErrorCode.OFFSET_OUT_OF_RANGE, `fetch at ${offset}`);
    }
    const atEnd = await fetchAt(end);
    assert.equal(atEnd.errorCode, 0);
    assert.equal((atEnd.records as Buffer).length, 0);
    for (const offset of [-1, end + 1]) {
      await expectCallError(
        stream(broker, "Subscribe", { topic: good, partition: 0, offset: String(offset) }).next(),
        ErrorCode.OFFSET_OUT_OF_RANGE,
      );
    }
  });

  test("a produce or fetch without partitions is INVALID_REQUEST", async () => {
    await expectCallError(
      unary(broker, "Produce", { partitions: [], acks: 2 }),
      ErrorCode.INVALID_REQUEST,
    );
    await expectCallError(
      unary(broker, "Fetch", { partitions: [], maxWaitMs: 0 }),
      ErrorCode.INVALID_REQUEST,
    );
  });

  test("bytes that are not a protobuf message: INVALID_ARGUMENT with INVALID_REQUEST, never INTERNAL", async () => {
    const address = cluster.broker(1).address;
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    const identity = (b: Buffer) => b;
    const deadline = () => Date.now() + CALL_DEADLINE_MS;
    const unaryRaw = (method: string, body: Buffer) =>
      new Promise<grpc.ServiceError | undefined>((resolve) => {
        raw.makeUnaryRequest(
          `/samsa.v1.BrokerService/${method}`,
          identity,
          identity,
          body,
          { deadline: deadline() },
          (err) => resolve(err ?? undefined),
        );
      });
    const streamRaw = (method: string, body: Buffer) =>
      new Promise<grpc.ServiceError | undefined>((resolve) => {
        const call = raw.makeServerStreamRequest(
          `/samsa.v1.BrokerService/${method}`,
          identity,
          identity,
          body,
          { deadline: deadline() },
        );
        call.on("data", () => call.cancel());
        call.on("error", (err: grpc.ServiceError) => resolve(err));
        call.on("end", () => resolve(undefined));
      });
    const expectRefused = (err: grpc.ServiceError | undefined, what: string) => {
      assert.ok(err, `${what} fails`);
      assert.equal(
        err.code,
        grpc.status.INVALID_ARGUMENT,
        `${what}: status ${grpc.status[err.code]} (${err.details})`,
      );
      assert.deepEqual(err.metadata.get("samsa-error-code"), ["INVALID_REQUEST"], what);
      assert.match(err.details, /is not a valid message/, what);
    };
    // Wire type 7 does not exist (protobufjs reads a truncated *string* leniently, so every
    // method gets these two, and the truncated nested message below only where field 1 is one).
    const bodies = {
      "bad wire type": Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]),
      "endless varint": Buffer.alloc(16, 0xff),
    };
    // Field 1 (a repeated message) says 16 bytes follow; one does.
    const truncated = Buffer.from([0x0a, 0x10, 0x01]);
    try {
      for (const method of ["Produce", "Fetch", "ListOffsets", "Metadata"]) {
        for (const [what, body] of Object.entries(bodies))
          expectRefused(await unaryRaw(method, body), `${method} with ${what}`);
      }
      for (const method of ["Produce", "Fetch", "ListOffsets"])
        expectRefused(await unaryRaw(method, truncated), `${method} with a truncated message`);
      for (const [what, body] of Object.entries(bodies))
        expectRefused(await streamRaw("Subscribe", body), `Subscribe with ${what}`);
      // The same raw client is still answered when its bytes are a valid (empty) request.
      assert.equal(await unaryRaw("Metadata", Buffer.alloc(0)), undefined);
    } finally {
      raw.close();
    }
  });
});

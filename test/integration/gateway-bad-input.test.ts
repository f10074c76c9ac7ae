/**
 * Bad input through the gateway, in a real local cluster (etcd, 1 controller, 3 brokers with
 * `message.max.bytes=10000`, 1 gateway): unknown and invalid topics, oversized and corrupt
 * batches, negative offsets and empty requests get the same typed errors through the gateway as
 * at the partition's leader (the per-partition codes, and the `samsa-error-code` of call-level
 * errors); Publish and Consume get their documented codes; and after each one the gateway still
 * serves, with the stored data of a reference partition unchanged.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import type { BrokerServiceClient } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import type { GatewayServiceClient } from "../../services/shared/generated/samsa/v1/GatewayService.js";
import { SpecialOffset } from "../../services/shared/generated/samsa/v1/SpecialOffset.js";
import type { SubscribeRequest } from "../../services/shared/generated/samsa/v1/SubscribeRequest.js";
import { createClient, stream, unary } from "../../services/shared/grpc/client.js";
import { ERROR_CODE_METADATA_KEY } from "../../services/shared/grpc/errors.js";
import { gatewayService } from "../../services/shared/grpc/proto.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { CRC_OFFSET } from "../../services/shared/record-batch/layout.js";
import {
  ACKS_LEADER,
  CALL_DEADLINE_MS,
  Clients,
  createTopic,
  createTopics,
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

/**
 * The `samsa-error-code` trailing metadata of a call that must fail, as sent on the wire (read
 * from the gRPC error the client's SamsaError keeps as its cause).
 */
async function wireCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SamsaError, `a SamsaError, not ${String(err)}`);
    const [code] = (err.cause as grpc.ServiceError).metadata.get(ERROR_CODE_METADATA_KEY);
    assert.equal(typeof code, "string", `${ERROR_CODE_METADATA_KEY} is set (${err.message})`);
    return code as string;
  }
  assert.fail("the call succeeded");
}

/** The first message of a server stream (to make it fail). */
const firstOf = <T>(messages: AsyncGenerator<T>) => messages.next();

describe("gateway: bad input", { timeout: 60_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const good = uniqueTopic("good");
  let broker: BrokerServiceClient;
  let gateway: GatewayServiceClient;
  /**
   * The gateway as the cluster helpers' broker client: it answers the broker's Produce, Fetch
   * and ListOffsets with the same messages, which is all those helpers call.
   */
  let gatewayAsBroker: BrokerServiceClient;
  let baseline: ReadRecord[];
  const admin = () => clients.admin(cluster.controllers[0]!);

  /** The same call at the leader and through the gateway. */
  const both = async <T>(call: (client: BrokerServiceClient) => Promise<T>) => ({
    direct: await call(broker),
    viaGateway: await call(gatewayAsBroker),
  });
  /** The per-partition code of the same one-partition produce, fetch or list at both. */
  const sameCode = async (
    what: string,
    call: (client: BrokerServiceClient) => Promise<{ errorCode: number; errorMessage: string }>,
    expected: ErrorCode,
  ) => {
    const { direct, viaGateway } = await both(call);
    assert.equal(direct.errorCode, expected, `${what} at the leader: ${direct.errorMessage}`);
    assert.equal(
      viaGateway.errorCode,
      expected,
      `${what} via the gateway: ${viaGateway.errorMessage}`,
    );
  };
  /** The `samsa-error-code` of the same failing call at both. */
  const sameWireCode = async (
    what: string,
    call: (client: BrokerServiceClient) => Promise<unknown>,
    expected: ErrorCode,
  ) => {
    assert.equal(await wireCode(call(broker)), ErrorCode[expected], `${what} at the leader`);
    assert.equal(await wireCode(call(gatewayAsBroker)), ErrorCode[expected], `${what} via gateway`);
  };
  const fetchAt = (topic: string, partition: number, offset: number) => (c: BrokerServiceClient) =>
    unary(
      c,
      "Fetch",
      {
        partitions: [{ topic, partition, fetchOffset: String(offset), currentLeaderEpoch: -1 }],
        maxWaitMs: 0,
      },
      { deadlineMs: CALL_DEADLINE_MS },
    ).then((res) => res.partitions[0]!);
  const subscribeAt = (request: SubscribeRequest) => (c: BrokerServiceClient) =>
    firstOf(stream(c, "Subscribe", request, { deadlineMs: CALL_DEADLINE_MS }));

  before(async () => {
    cluster = await startTestCluster({
      controllers: 1,
      gateways: 1,
      brokerArgs: [`--message.max.bytes=${MESSAGE_MAX_BYTES}`],
    });
    gateway = createClient(gatewayService.Client, cluster.gateways[0]!);
    gatewayAsBroker = gateway as unknown as BrokerServiceClient;
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
    gateway?.close();
    clients.close();
    await cluster?.stop();
  });
  // After every bad input: the gateway still serves, the reference data is as it was.
  afterEach(async () => {
    const md = await unary(gateway, "Metadata", { topics: [good] });
    assert.equal(md.topics[0]!.errorCode, 0, "the gateway still serves metadata");
    assert.deepEqual(await fetchAll(gatewayAsBroker, good, 0), baseline, "stored data unchanged");
    const latest = await listOffset(gatewayAsBroker, good, 0, -1);
    assert.equal(Number(latest.offset), baseline.length);
  });

  test("unknown topics and partitions are UNKNOWN_TOPIC_OR_PARTITION at the leader and through the gateway", async () => {
    const batch = buildBatch([{ value: Buffer.from("x") }]);
    for (const [topic, partition] of [
      ["no-such-topic", 0],
      ["not a topic name", 0],
      [good, 7],
      [good, -1],
    ] as const) {
      const what = `${topic}-${partition}`;
      const unknown = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
      await sameCode(`produce ${what}`, (c) => produceRaw(c, topic, partition, batch), unknown);
      await sameCode(`fetch ${what}`, fetchAt(topic, partition, 0), unknown);
      await sameCode(`list ${what}`, (c) => listOffset(c, topic, partition, -1), unknown);
      await sameWireCode(
        `subscribe ${what}`,
        subscribeAt({ topic, partition, offset: "0" }),
        unknown,
      );
    }
    const topics = ["no-such-topic", "not a topic name"];
    const { direct, viaGateway } = await both((c) => unary(c, "Metadata", { topics }));
    assert.deepEqual(
      viaGateway.topics.map((t) => t.errorCode),
      [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_TOPIC],
    );
    assert.deepEqual(viaGateway.topics, direct.topics);
  });

  test("invalid topics: the broker's codes for Produce and Subscribe; INVALID_TOPIC for Publish and Consume", async () => {
    const batch = buildBatch([{ value: Buffer.from("x") }]);
    await sameCode("produce to ''", (c) => produceRaw(c, "", 0, batch), ErrorCode.INVALID_REQUEST);
    await sameWireCode(
      "subscribe to ''",
      subscribeAt({ topic: "", partition: 0, offset: "0" }),
      ErrorCode.INVALID_REQUEST,
    );
    const records = [{ value: Buffer.from("x") }];
    for (const topic of ["", "a b", ".", "x".repeat(250), "ü"]) {
      const what = JSON.stringify(topic);
      const publish = unary(gateway, "Publish", { topic, records });
      assert.equal(await wireCode(publish), "INVALID_TOPIC", `publish to ${what}`);
      const consume = firstOf(stream(gateway, "Consume", { topic, offset: "0" }));
      assert.equal(await wireCode(consume), "INVALID_TOPIC", `consume ${what}`);
    }
    const unknown = "UNKNOWN_TOPIC_OR_PARTITION";
    const publish = unary(gateway, "Publish", { topic: "no-such-topic", records });
    assert.equal(await wireCode(publish), unknown, "publish to an unknown topic");
    const consume = stream(gateway, "Consume", { topic: "no-such-topic", offset: "0" });
    assert.equal(await wireCode(firstOf(consume)), unknown, "consume an unknown topic");
    const partition7 = stream(gateway, "Consume", { topic: good, partition: 7, offset: "0" });
    assert.equal(await wireCode(firstOf(partition7)), unknown, "consume an unknown partition");
  });

  test("a batch over message.max.bytes is MESSAGE_TOO_LARGE through the gateway too", async () => {
    const big = buildBatch([{ value: Buffer.alloc(MESSAGE_MAX_BYTES, 1) }]);
    assert.ok(big.length > MESSAGE_MAX_BYTES);
    await sameCode("produce", (c) => produceRaw(c, good, 0, big), ErrorCode.MESSAGE_TOO_LARGE);
    // Publish: the oversized record's partition fails as one (every record of it), others work.
    const sized = uniqueTopic("sized");
    await createTopic(admin(), sized, 2);
    await waitForLeaders(cluster, clients, sized, 2);
    const res = await unary(gateway, "Publish", {
      topic: sized,
      records: [
        { value: Buffer.alloc(MESSAGE_MAX_BYTES, 2), partition: 0 },
        { value: Buffer.from("small"), partition: 0 },
        { value: Buffer.from("fine"), partition: 1 },
      ],
    });
    assert.deepEqual(
      res.results.map((r) => [r.partition, r.errorCode, r.offset]),
      [
        [0, ErrorCode.MESSAGE_TOO_LARGE, "-1"],
        [0, ErrorCode.MESSAGE_TOO_LARGE, "-1"],
        [1, 0, "0"],
      ],
    );
  });

  test("Publish splits many records into batches that fit the topic's max.message.bytes", async () => {
    const capped = uniqueTopic("capped");
    const [created] = await createTopics(admin(), [
      { name: capped, numPartitions: 1, configs: { "max.message.bytes": "4000" } },
    ]);
    assert.equal(created!.errorCode, 0, created!.errorMessage);
    await waitForLeaders(cluster, clients, capped, 1);
    const records = Array.from({ length: 30 }, (_, i) => ({
      value: Buffer.alloc(1_000, i),
      partition: 0,
    }));
    const res = await unary(gateway, "Publish", { topic: capped, records });
    assert.deepEqual(
      res.results.map((r) => [r.errorCode, r.offset]),
      records.map((_, i) => [0, String(i)]),
    );
  });

  test("corrupt batches are CORRUPT_MESSAGE through the gateway too", async () => {
    const batch = () => buildBatch([{ key: Buffer.from("k"), value: Buffer.from("payload") }]);
    const flippedCrc = batch();
    flippedCrc[CRC_OFFSET]! ^= 0xff;
    const flippedValue = batch();
    flippedValue[flippedValue.length - 2]! ^= 0x01;
    const whole = batch();
    const inputs = {
      "flipped CRC": flippedCrc,
      "flipped value": flippedValue,
      garbage: Buffer.from("this is not a record batch at all, just some bytes".repeat(3)),
      empty: Buffer.alloc(0),
      truncated: whole.subarray(0, whole.length - 3),
      "valid then garbage": Buffer.concat([whole, Buffer.from([1, 2, 3, 4, 5])]),
    };
    for (const [what, bytes] of Object.entries(inputs)) {
      await sameCode(what, (c) => produceRaw(c, good, 0, bytes), ErrorCode.CORRUPT_MESSAGE);
    }
  });

  test("negative and out-of-range offsets and timestamps get the broker's codes", async () => {
    const end = baseline.length;
    for (const offset of [-1, end + 1]) {
      await sameCode(`fetch at ${offset}`, fetchAt(good, 0, offset), ErrorCode.OFFSET_OUT_OF_RANGE);
      await sameWireCode(
        `subscribe at ${offset}`,
        subscribeAt({ topic: good, partition: 0, offset: String(offset) }),
        ErrorCode.OFFSET_OUT_OF_RANGE,
      );
      const consume = stream(gateway, "Consume", { topic: good, offset: String(offset) });
      assert.equal(await wireCode(firstOf(consume)), "OFFSET_OUT_OF_RANGE", `consume at ${offset}`);
    }
    await sameCode("list at -5", (c) => listOffset(c, good, 0, -5), ErrorCode.INVALID_REQUEST);
    await sameWireCode(
      "subscribe from special 0",
      subscribeAt({ topic: good, partition: 0, special: SpecialOffset.SPECIAL_OFFSET_UNSPECIFIED }),
      ErrorCode.INVALID_REQUEST,
    );
    const res = await unary(gateway, "Publish", {
      topic: good,
      records: [
        { value: Buffer.from("x"), timestamp: "-5" },
        { value: Buffer.from("y"), partition: 7 },
        { value: Buffer.from("z"), partition: -1 },
      ],
    });
    assert.deepEqual(
      res.results.map((r) => r.errorCode),
      [
        ErrorCode.INVALID_TIMESTAMP,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
      ],
    );
  });

  test("empty requests are INVALID_REQUEST at the leader and through the gateway", async () => {
    const invalid = ErrorCode.INVALID_REQUEST;
    await sameWireCode(
      "produce",
      (c) => unary(c, "Produce", { partitions: [], acks: ACKS_LEADER }),
      invalid,
    );
    await sameWireCode(
      "fetch",
      (c) => unary(c, "Fetch", { partitions: [], maxWaitMs: 0 }),
      invalid,
    );
    await sameWireCode("list", (c) => unary(c, "ListOffsets", { partitions: [] }), invalid);
    const publish = unary(gateway, "Publish", { topic: good, records: [] });
    assert.equal(await wireCode(publish), "INVALID_REQUEST", "publish without records");
  });

  test("bytes that are not a protobuf message: INVALID_ARGUMENT with INVALID_REQUEST, never INTERNAL", async () => {
    const raw = new grpc.Client(cluster.gateways[0]!, grpc.credentials.createInsecure());
    const identity = (b: Buffer) => b;
    const deadline = () => Date.now() + CALL_DEADLINE_MS;
    const unaryRaw = (method: string, body: Buffer) =>
      new Promise<grpc.ServiceError | undefined>((resolve) => {
        raw.makeUnaryRequest(
          `/samsa.v1.GatewayService/${method}`,
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
          `/samsa.v1.GatewayService/${method}`,
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
    const bodies = {
      "bad wire type": Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]),
      "endless varint": Buffer.alloc(16, 0xff),
    };
    try {
      for (const method of ["Produce", "Fetch", "ListOffsets", "Metadata", "Publish"]) {
        for (const [what, body] of Object.entries(bodies))
          expectRefused(await unaryRaw(method, body), `${method} with ${what}`);
      }
      for (const method of ["Subscribe", "Consume"]) {
        for (const [what, body] of Object.entries(bodies))
          expectRefused(await streamRaw(method, body), `${method} with ${what}`);
      }
      assert.equal(await unaryRaw("Metadata", Buffer.alloc(0)), undefined, "still answered");
    } finally {
      raw.close();
    }
  });
});

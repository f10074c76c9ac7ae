/**
 * GatewayService.PublishStream (services/gateway/publish-stream.ts) in a real local cluster
 * (etcd, a controller, brokers and a gateway as processes) from a plain grpc-js client: one
 * response per request, in order, echoing its request_id, each record at the offset it was
 * given; flow control: while the partition's leader cannot append (paused), the gateway stops
 * reading a stream that keeps writing (a bounded amount is taken) and answers every request
 * once the leader is back; a call-level
 * error ends the stream with its code after the answers of the requests before it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type * as grpc from "@grpc/grpc-js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { Acks } from "../../services/shared/generated/samsa/v1/Acks.js";
import type { GatewayServiceClient } from "../../services/shared/generated/samsa/v1/GatewayService.js";
import type { PublishRequest } from "../../services/shared/generated/samsa/v1/PublishRequest.js";
import type { PublishResponse__Output } from "../../services/shared/generated/samsa/v1/PublishResponse.js";
import { createClient } from "../../services/shared/grpc/client.js";
import { fromServiceError } from "../../services/shared/grpc/errors.js";
import { gatewayService } from "../../services/shared/grpc/proto.js";
import { SERVER_FLOW_CONTROL_WINDOW_BYTES } from "../../services/shared/grpc/server.js";
import { PUBLISH_STREAM_UNACKED_BYTES_MAX } from "../../services/gateway/publish-stream.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  fetchAll,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

/** Requests of the ordering test, one record each, over 2 partitions. */
const ORDER_REQUESTS = 2000;
/** The flow-control test: requests of RECORDS_PER_REQUEST records of VALUE_BYTES each (60 MiB). */
const FLOW_REQUESTS = 960;
const RECORDS_PER_REQUEST = 64;
const VALUE_BYTES = 1024;
/** How long the test waits for each step, ms. */
const STEP_TIMEOUT_MS = 60_000;

type Duplex = grpc.ClientDuplexStream<PublishRequest, PublishResponse__Output>;

/** Collects a stream's responses and its end. */
function collect(call: Duplex) {
  const responses: PublishResponse__Output[] = [];
  let error: grpc.ServiceError | undefined;
  let ended = false;
  call.on("data", (r: PublishResponse__Output) => responses.push(r));
  call.on("error", (e: grpc.ServiceError) => {
    error = e;
    ended = true;
  });
  call.on("end", () => {
    ended = true;
  });
  return {
    responses,
    get error() {
      return error;
    },
    get ended() {
      return ended;
    },
  };
}

describe("gateway: PublishStream", { timeout: 240_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let gateway: GatewayServiceClient;
  const admin = () => clients.admin(cluster.controllers[0]!);

  before(async () => {
    cluster = await startTestCluster({ brokers: 1, gateways: 1 });
    gateway = createClient(gatewayService.Client, cluster.gateways[0]!);
  });
  after(async () => {
    gateway?.close();
    clients.close();
    await cluster?.stop();
  });

  test("one response per request, in order, echoing request_id; records where they were answered", async () => {
    const topic = uniqueTopic("pstream");
    await createTopic(admin(), topic, 2);
    const leaders = await waitForLeaders(cluster, clients, topic, 2);
    const call = gateway.PublishStream();
    const got = collect(call);
    for (let i = 0; i < ORDER_REQUESTS; i++) {
      call.write({
        topic,
        acks: Acks.ACKS_ALL,
        requestId: `r-${i}`,
        records: [{ partition: i % 2, value: Buffer.from(`v-${i}`) }],
      });
    }
    call.end();
    await waitFor(() => got.ended, { timeoutMs: STEP_TIMEOUT_MS, message: "the stream ends" });
    assert.equal(got.error, undefined, got.error?.message);
    assert.deepEqual(
      got.responses.map((r) => r.requestId),
      Array.from({ length: ORDER_REQUESTS }, (_, i) => `r-${i}`),
      "one response per request, in request order",
    );
    const answered = new Map<string, string>();
    for (const [i, r] of got.responses.entries()) {
      const result = r.results[0]!;
      assert.equal(result.errorCode, ErrorCode.NONE, result.errorMessage);
      answered.set(`${result.partition}:${result.offset}`, `v-${i}`);
    }
    assert.equal(answered.size, ORDER_REQUESTS, "no offset given twice");
    for (let p = 0; p < 2; p++) {
      const leader = clients.broker(cluster.broker(leaders.get(p)!).address);
      for (const rec of await fetchAll(leader, topic, p, 0)) {
        assert.equal(rec.value, answered.get(`${p}:${rec.offset}`), `${p}:${rec.offset}`);
      }
    }
  });

  test("while the partition cannot append, the gateway stops reading the stream; then answers all", async () => {
    const topic = uniqueTopic("pstream-flow");
    await createTopic(admin(), topic, 1);
    const leaders = await waitForLeaders(cluster, clients, topic, 1);
    const broker = cluster.brokerProcesses.find(
      (b) => b.address === cluster.broker(leaders.get(0)!).address,
    )!;
    const call = gateway.PublishStream();
    const got = collect(call);
    const value = Buffer.alloc(VALUE_BYTES, 7);
    const requestBytes = RECORDS_PER_REQUEST * VALUE_BYTES;
    // The leader stops answering: every append the gateway starts waits.
    await broker.pause();
    let taken = 0;
    try {
      for (let i = 0; i < FLOW_REQUESTS; i++) {
        call.write(
          {
            topic,
            acks: Acks.ACKS_LEADER,
            requestId: String(i),
            records: Array.from({ length: RECORDS_PER_REQUEST }, () => ({ partition: 0, value })),
          },
          () => taken++,
        );
      }
      // The client's writes go out until the gateway stops reading: its queue bound plus what
      // HTTP/2's windows hold, far below what was written.
      let last = -1;
      await waitFor(
        () => {
          const settled = taken > 0 && taken === last;
          last = taken;
          return settled;
        },
        {
          timeoutMs: STEP_TIMEOUT_MS,
          intervalMs: 500,
          message: "the client's writes stop going out",
        },
      );
      const boundRequests = Math.ceil(
        (PUBLISH_STREAM_UNACKED_BYTES_MAX + 2 * SERVER_FLOW_CONTROL_WINDOW_BYTES) / requestBytes,
      );
      assert.ok(
        taken <= boundRequests && taken < FLOW_REQUESTS,
        `${taken} of ${FLOW_REQUESTS} requests taken while nothing could be appended (bound ${boundRequests})`,
      );
    } finally {
      await broker.resume();
    }
    call.end();
    await waitFor(() => got.ended, { timeoutMs: STEP_TIMEOUT_MS, message: "the stream ends" });
    assert.equal(got.error, undefined, got.error?.message);
    assert.deepEqual(
      got.responses.map((r) => r.requestId),
      Array.from({ length: FLOW_REQUESTS }, (_, i) => String(i)),
    );
    for (const r of got.responses)
      assert.equal(r.results[0]!.errorCode, ErrorCode.NONE, r.results[0]!.errorMessage);
  });

  test("a call-level error ends the stream with its code, after the answers before it", async () => {
    const topic = uniqueTopic("pstream-err");
    await createTopic(admin(), topic, 1);
    await waitForLeaders(cluster, clients, topic, 1);
    const call = gateway.PublishStream();
    const got = collect(call);
    const good = (id: string): PublishRequest => ({
      topic,
      acks: Acks.ACKS_ALL,
      requestId: id,
      records: [{ value: Buffer.from(id) }],
    });
    call.write(good("a"));
    call.write(good("b"));
    call.write({
      topic: "not a topic name!",
      requestId: "bad",
      records: [{ value: Buffer.from("x") }],
    });
    call.write(good("c"));
    call.end();
    await waitFor(() => got.ended, { timeoutMs: STEP_TIMEOUT_MS, message: "the stream ends" });
    assert.ok(got.error !== undefined, "the stream ends with an error");
    assert.equal(fromServiceError(got.error).code, ErrorCode.INVALID_TOPIC);
    assert.deepEqual(
      got.responses.map((r) => r.requestId),
      ["a", "b"],
    );
  });
});

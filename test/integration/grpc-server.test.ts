/**
 * The shared gRPC plumbing against a real server on 127.0.0.1:0: error mapping, health,
 * reflection, metrics, streaming, cancellation and stop. The BrokerService here is a stub that
 * exists only to exercise the plumbing.
 */
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { Registry } from "prom-client";
import { ErrorCode, isSamsaError, SamsaError } from "../../services/shared/errors.js";
import type { BrokerServiceHandlers } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import type { SubscribeResponse } from "../../services/shared/generated/samsa/v1/SubscribeResponse.js";
import { createClient, stream, unary } from "../../services/shared/grpc/client.js";
import { ERROR_CODE_METADATA_KEY } from "../../services/shared/grpc/errors.js";
import { type BrokerServiceClient, brokerService } from "../../services/shared/grpc/proto.js";
import {
  createGrpcServer,
  type GrpcServer,
  SERVER_FLOW_CONTROL_WINDOW_BYTES,
  type ServiceHandlers,
} from "../../services/shared/grpc/server.js";
import { type CapturedLine, memoryLogger } from "../../services/shared/logger.js";
import { waitFor } from "../support/wait-for.js";

/** Pause between two messages of the endless stub stream, ms. */
const STREAM_STEP_MS = 10;
const BROKER = "samsa.v1.BrokerService";

const batch = (n: number): SubscribeResponse => ({
  records: Buffer.from([n]),
  highWatermark: "100",
  nextOffset: String(n + 1),
});

/** A stub broker: just enough behaviour to exercise every path of the plumbing. */
const handlers: ServiceHandlers<BrokerServiceHandlers> = {
  Metadata: async (request) => ({
    clusterId: "test-cluster",
    controllerId: "",
    brokers: [{ id: 1, host: "127.0.0.1", port: 1, rack: "" }],
    topics: request.topics.map((name) => ({ name, errorCode: 0, topicId: "", partitions: [] })),
  }),
  Produce: async () => {
    throw new SamsaError(ErrorCode.NOT_LEADER);
  },
  ListOffsets: async () => {
    throw new TypeError("a bug with a secret /var/lib/samsa path");
  },
  // A long poll that only ends when its signal aborts (client deadline or server stop).
  Fetch: async (_request, _call, ctx) => {
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
    return { partitions: [] };
  },
  OffsetsForLeaderEpoch: async () => ({ partitions: [] }),
  InitProducerId: async () => ({ producerId: "0", producerEpoch: 0 }),
  Subscribe: (request, _call, send, ctx) => {
    if (request.topic === "generator") {
      return (async function* () {
        for (let i = 0; i < 3; i++) yield batch(i);
      })();
    }
    return (async () => {
      if (request.topic === "fail-after-one") {
        await send(batch(0));
        throw new SamsaError(ErrorCode.OFFSET_OUT_OF_RANGE, "offset 7 is gone");
      }
      // "forever": streams until cancelled or stopped.
      for (let i = 0; ; i++) {
        await send(batch(i));
        await sleep(STREAM_STEP_MS, undefined, { signal: ctx.signal }).catch(() => undefined);
      }
    })();
  },
};

let server: GrpcServer;
let registry: Registry;
const logged: CapturedLine[] = [];
let address: string;
let client: BrokerServiceClient;

async function counter(method: string, code: string): Promise<number> {
  const metric = await registry.getSingleMetric("samsa_rpc_requests_total")?.get();
  const value = metric?.values.find(
    (v) => v.labels.service === BROKER && v.labels.method === method && v.labels.code === code,
  );
  return value?.value ?? 0;
}

/** Observations of `samsa_rpc_duration_seconds` for `method`. */
async function durations(method: string): Promise<number> {
  const metric = await registry.getSingleMetric("samsa_rpc_duration_seconds")?.get();
  // A histogram's values carry their series name (prom-client types only `value` and `labels`).
  const values = (metric?.values ?? []) as {
    metricName?: string;
    value: number;
    labels: Record<string, unknown>;
  }[];
  const value = values.find(
    (v) =>
      v.metricName === "samsa_rpc_duration_seconds_count" &&
      v.labels.service === BROKER &&
      v.labels.method === method,
  );
  return value?.value ?? 0;
}

/**
 * The change of a counter across `action`: tests compare before and after, so that they hold
 * whichever tests ran before them.
 */
async function delta(read: () => Promise<number>, action: () => Promise<unknown>) {
  const before = await read();
  await action();
  return (await read()) - before;
}

before(async () => {
  registry = new Registry();
  server = createGrpcServer({ registry, logger: memoryLogger(logged), shutdownGraceMs: 1_000 });
  server.addService(brokerService, handlers);
  const port = await server.listen("127.0.0.1", 0);
  assert.ok(port > 0);
  assert.equal(server.port, port);
  address = `127.0.0.1:${port}`;
  client = createClient(brokerService.Client, address);
});

after(async () => {
  client?.close();
  await server?.stop();
});

describe("gRPC server plumbing", () => {
  it("answers a unary call and counts it", async () => {
    const counted = await delta(
      () => counter("Metadata", "NONE"),
      async () => {
        const response = await unary(client, "Metadata", { topics: ["a", "b"] });
        assert.equal(response.clusterId, "test-cluster");
        assert.deepEqual(
          response.topics.map((t) => t.name),
          ["a", "b"],
        );
        assert.equal(response.brokers[0]?.host, "127.0.0.1");
      },
    );
    assert.equal(counted, 1);
  });

  it("sends a SamsaError as its table status with samsa-error-code", async () => {
    const before = await counter("Produce", "NOT_LEADER");
    const raw = await new Promise<grpc.ServiceError>((resolve) => {
      client.Produce({ partitions: [] }, (err) => resolve(err!));
    });
    assert.equal(raw.code, grpc.status.FAILED_PRECONDITION);
    assert.deepEqual(raw.metadata.get(ERROR_CODE_METADATA_KEY), ["NOT_LEADER"]);
    await assert.rejects(unary(client, "Produce", { partitions: [] }), (err: unknown) => {
      assert.ok(isSamsaError(err, ErrorCode.NOT_LEADER));
      assert.equal(err.retriable, true);
      return true;
    });
    assert.equal((await counter("Produce", "NOT_LEADER")) - before, 2);
  });

  it("sends an unexpected throw as INTERNAL / UNKNOWN without its message", async () => {
    const before = await counter("ListOffsets", "UNKNOWN");
    await assert.rejects(unary(client, "ListOffsets", { partitions: [] }), (err: unknown) => {
      assert.ok(isSamsaError(err, ErrorCode.UNKNOWN));
      assert.doesNotMatch(err.message, /secret|TypeError/);
      assert.equal((err.cause as grpc.ServiceError).code, grpc.status.INTERNAL);
      return true;
    });
    assert.equal((await counter("ListOffsets", "UNKNOWN")) - before, 1);
    // The server keeps what the client must not see.
    const line = logged.find((l) => l.fields.method === "ListOffsets");
    assert.equal(line?.level, "error");
    assert.match(String(line?.fields.stack), /TypeError: a bug with a secret/);
  });

  it("aborts a long poll when the client's deadline passes", async () => {
    const before = await counter("Fetch", "CANCELLED");
    await assert.rejects(unary(client, "Fetch", { partitions: [] }, { deadlineMs: 50 }), (err) =>
      isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT),
    );
    await waitFor(async () => (await counter("Fetch", "CANCELLED")) - before === 1, {
      message: "Fetch cancelled",
    });
  });

  it("streams from an async generator", async () => {
    const before = await counter("Subscribe", "NONE");
    const got: string[] = [];
    for await (const m of stream(client, "Subscribe", { topic: "generator", partition: 0 })) {
      got.push(m.nextOffset);
      assert.ok(Buffer.isBuffer(m.records));
    }
    assert.deepEqual(got, ["1", "2", "3"]);
    assert.equal((await counter("Subscribe", "NONE")) - before, 1);
  });

  it("ends a stream with the SamsaError its handler throws", async () => {
    const got: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const m of stream(client, "Subscribe", { topic: "fail-after-one" })) {
          got.push(m.nextOffset);
        }
      })(),
      (err) =>
        isSamsaError(err, ErrorCode.OFFSET_OUT_OF_RANGE) && err.message === "offset 7 is gone",
    );
    assert.deepEqual(got, ["1"]);
  });

  it("cancels the server side when the client leaves a stream early", async () => {
    const before = await counter("Subscribe", "CANCELLED");
    let n = 0;
    for await (const _ of stream(client, "Subscribe", { topic: "forever" })) {
      if (++n === 3) break;
    }
    await waitFor(async () => (await counter("Subscribe", "CANCELLED")) - before === 1, {
      message: "cancel seen",
    });
  });

  it("answers grpc.health.v1 Check with SERVING", async () => {
    const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
    const health = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const healthClient = new health.grpc.health.v1.Health(
      address,
      grpc.credentials.createInsecure(),
    );
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) => {
        healthClient.Check({ service }, (err: Error | null, res: { status: string }) =>
          err ? reject(err) : resolve(res),
        );
      });
    try {
      assert.equal((await check("")).status, "SERVING");
      assert.equal((await check(BROKER)).status, "SERVING");
      server.setStatus(BROKER, "NOT_SERVING");
      assert.equal((await check(BROKER)).status, "NOT_SERVING");
      server.setStatus(BROKER, "SERVING");
    } finally {
      healthClient.close();
    }
  });

  it("lists samsa.v1.BrokerService by server reflection (v1)", async () => {
    const require = createRequire(import.meta.url);
    const root = join(dirname(require.resolve("@grpc/reflection")), "..", "proto");
    const def = protoLoader.loadSync("grpc/reflection/v1/reflection.proto", {
      keepCase: true,
      includeDirs: [root],
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const reflection = new pkg.grpc.reflection.v1.ServerReflection(
      address,
      grpc.credentials.createInsecure(),
    );
    try {
      const call = reflection.ServerReflectionInfo() as grpc.ClientDuplexStream<
        unknown,
        { list_services_response?: { service: Array<{ name: string }> } }
      >;
      const answer = new Promise<string[]>((resolve, reject) => {
        call.once(
          "data",
          (res: { list_services_response?: { service: Array<{ name: string }> } }) =>
            resolve(res.list_services_response?.service.map((s) => s.name) ?? []),
        );
        call.once("error", reject);
      });
      call.write({ host: "", list_services: "" });
      const names = await answer;
      call.end();
      assert.ok(names.includes(BROKER), `reflection lists ${names.join(", ")}`);
      assert.ok(!names.includes("samsa.v1.AdminService"), "only the services this server runs");
    } finally {
      reflection.close();
    }
  });

  it("grants each client connection and call the wide HTTP/2 flow-control window", async () => {
    const session = http2.connect(`http://${address}`);
    try {
      // The window arrives as a second SETTINGS frame and a connection WINDOW_UPDATE.
      await waitFor(
        () =>
          session.remoteSettings?.initialWindowSize === SERVER_FLOW_CONTROL_WINDOW_BYTES &&
          session.state.remoteWindowSize === SERVER_FLOW_CONTROL_WINDOW_BYTES,
      );
    } finally {
      session.close();
    }
  });

  it("records a duration for every call, whatever its outcome", async () => {
    const calls: Record<string, () => Promise<unknown>> = {
      Metadata: () => unary(client, "Metadata", { topics: [] }),
      Produce: () => unary(client, "Produce", { partitions: [] }).catch(() => undefined),
      ListOffsets: () => unary(client, "ListOffsets", { partitions: [] }).catch(() => undefined),
      Fetch: () =>
        unary(client, "Fetch", { partitions: [] }, { deadlineMs: 50 }).catch(() => undefined),
      Subscribe: async () => {
        for await (const _ of stream(client, "Subscribe", { topic: "generator" })) {
          // drain
        }
      },
    };
    for (const [method, call] of Object.entries(calls)) {
      // A cancelled call is recorded once the server has seen the cancellation.
      const before = await durations(method);
      await call();
      await waitFor(async () => (await durations(method)) - before === 1, {
        message: `one ${method} duration recorded`,
      });
    }
  });

  // The grace period is far longer than the test may take: stop() completes only because the
  // open stream ends when stop() aborts it, not because the grace period ran out.
  it("stop() ends open streams with a retriable error and completes", {
    timeout: 20_000,
  }, async () => {
    const own = createGrpcServer({ registry, shutdownGraceMs: 120_000 });
    own.addService(brokerService, handlers);
    const port = await own.listen("127.0.0.1", 0);
    const ownClient = createClient(brokerService.Client, `127.0.0.1:${port}`);
    try {
      const received: string[] = [];
      // Settled into a value at once, so the rejection is never unhandled while stop() runs.
      const outcome = (async () => {
        for await (const m of stream(ownClient, "Subscribe", { topic: "forever" })) {
          received.push(m.nextOffset);
        }
      })().then(
        () => undefined,
        (err: unknown) => err,
      );
      await waitFor(() => received.length >= 2, { message: "stream running" });
      await own.stop();
      const err = await outcome;
      assert.ok(isSamsaError(err, ErrorCode.LEADER_NOT_AVAILABLE), String(err));
      assert.equal(err.retriable, true);
      await own.stop(); // idempotent
    } finally {
      ownClient.close();
    }
  });
});

/**
 * The gRPC server's load bounds on a real broker process (issue 12, "Bounded under load"),
 * started with small ones: 4 connections, 5 unary calls in flight per connection, 8 in all.
 *
 * - traffic below the bounds is untouched (produce and fetch answer as usual);
 * - the 6th concurrent long-poll Fetch of one connection, and the 9th of the server, are
 *   answered at once with TOO_MANY_REQUESTS (gRPC RESOURCE_EXHAUSTED) naming the bound, while
 *   the admitted ones go on; once they have answered, new calls succeed;
 * - the connection past the 4th is closed at accept (the call on it fails UNAVAILABLE), with a
 *   log line and a metric; once a connection closes, a new one is served.
 *
 * Each client here has its own subchannel pool, so that each is its own TCP connection.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import {
  SERVER_CONNECTIONS_METRIC,
  SERVER_REFUSED_METRIC,
} from "../../services/shared/grpc/limits.js";
import {
  adminService,
  type BrokerServiceClient,
  brokerService,
} from "../../services/shared/grpc/proto.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { waitFor } from "../support/wait-for.js";
import {
  CALL_DEADLINE_MS,
  createTopic,
  produceRaw,
  startTestCluster,
  uniqueTopic,
} from "./cluster-helpers.js";

const CONNECTIONS_MAX = 4;
const INFLIGHT_PER_CONNECTION_MAX = 5;
const INFLIGHT_MAX = 8;
/** Wait of the long polls that fill the bounds, ms: long enough to send the refused ones. */
const LONG_POLL_MS = 5_000;
/** How soon a refused call must be answered, ms (far below {@link LONG_POLL_MS}). */
const REFUSAL_MS_MAX = 2_000;

/** One metric's value (summed over label sets matching `labels`) from a /metrics page. */
function metricValue(page: string, name: string, labels = ""): number {
  let sum = 0;
  for (const line of page.split("\n")) {
    if (!line.startsWith(name) || (line[name.length] !== " " && line[name.length] !== "{"))
      continue;
    if (!line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

describe("gRPC server limits on a broker", { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  let topic: string;
  const opened: BrokerServiceClient[] = [];

  /** A client on its own TCP connection (connected lazily, by its first call). */
  const open = (): BrokerServiceClient => {
    const c = createClient(brokerService.Client, cluster.brokerProcesses[0]!.address, {
      channelOptions: { "grpc.use_local_subchannel_pool": 1 },
    });
    opened.push(c);
    return c;
  };
  const metrics = async (): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${cluster.brokerProcesses[0]!.metricsPort}/metrics`);
    return res.text();
  };
  const longPoll = (c: BrokerServiceClient, offset: number, waitMs = LONG_POLL_MS) =>
    unary(
      c,
      "Fetch",
      {
        partitions: [{ topic, partition: 0, fetchOffset: String(offset), currentLeaderEpoch: -1 }],
        maxWaitMs: waitMs,
        minBytes: 1,
        maxBytes: 1024 * 1024,
      },
      { deadlineMs: waitMs + CALL_DEADLINE_MS },
    );
  /** Expects `call` to be refused quickly with TOO_MANY_REQUESTS naming `limit`. */
  const expectRefused = async (call: Promise<unknown>, limit: string): Promise<void> => {
    const started = Date.now();
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof SamsaError, `a SamsaError, not ${String(err)}`);
      assert.equal(err.code, ErrorCode.TOO_MANY_REQUESTS, err.message);
      assert.equal(err.retriable, true);
      assert.equal(err.metadata?.["samsa-limit"], limit);
      return true;
    });
    assert.ok(
      Date.now() - started < REFUSAL_MS_MAX,
      `refused at once (${Date.now() - started} ms)`,
    );
  };

  before(async () => {
    cluster = await startTestCluster({
      controllers: 1,
      brokers: 1,
      brokerArgs: [
        `--max.connections=${CONNECTIONS_MAX}`,
        `--max.inflight.requests.per.connection=${INFLIGHT_PER_CONNECTION_MAX}`,
        `--max.inflight.requests=${INFLIGHT_MAX}`,
      ],
    });
    topic = uniqueTopic("limits");
    const active = await cluster.activeController();
    const admin = createClient(adminService.Client, active.address);
    try {
      await createTopic(admin, topic, 1);
    } finally {
      admin.close();
    }
  });
  after(async () => {
    for (const c of opened) c.close();
    await cluster?.stop();
  });

  test("in-flight bounds: past them TOO_MANY_REQUESTS at once, the others untouched", async () => {
    const a = open();
    const b = open();
    const c = open();
    // Below the bounds: produce and fetch as usual (the leader may take a moment to serve).
    const batch = buildBatch([{ value: Buffer.from("before") }]);
    const produced = await waitFor(
      async () => {
        const r = await produceRaw(a, topic, 0, batch);
        return r.errorCode === 0 ? r : undefined;
      },
      { timeoutMs: 15_000, message: "the partition's leader serves" },
    );
    const end = Number(produced.baseOffset) + 1;
    const first = await longPoll(b, 0, 0);
    assert.equal(first.partitions[0]!.errorCode, 0);
    assert.ok(first.partitions[0]!.records.length > 0, "the record is fetched");
    await unary(c, "Metadata", { topics: [topic] });

    // Fill a's bound with long polls at the end of the log (nothing will wake them).
    const polls = Array.from({ length: INFLIGHT_PER_CONNECTION_MAX }, () => longPoll(a, end));
    await new Promise((res) => setTimeout(res, 500));
    await expectRefused(longPoll(a, end), "inflight_connection");
    // The server's: 5 on a + 3 on b = 8; the 9th (on c, which has none) is refused.
    polls.push(
      ...Array.from({ length: INFLIGHT_MAX - INFLIGHT_PER_CONNECTION_MAX }, () => longPoll(b, end)),
    );
    await new Promise((res) => setTimeout(res, 500));
    await expectRefused(longPoll(c, end), "inflight_server");
    await expectRefused(unary(c, "Metadata", { topics: [] }), "inflight_server");

    // The admitted ones were not disturbed: each answers at its max wait, without error.
    for (const res of await Promise.all(polls)) assert.equal(res.partitions[0]!.errorCode, 0);
    // And new calls succeed on every connection.
    for (const client of [a, b, c]) {
      const res = await longPoll(client, 0, 0);
      assert.equal(res.partitions[0]!.errorCode, 0);
    }
    const page = await metrics();
    assert.ok(metricValue(page, SERVER_REFUSED_METRIC, 'reason="inflight_connection"') >= 1);
    assert.ok(metricValue(page, SERVER_REFUSED_METRIC, 'reason="inflight_server"') >= 2);
  });

  test("the connection past max.connections is closed at accept, logged and counted", async () => {
    // Open connections until the broker holds its bound (the controller may hold one too).
    const held: BrokerServiceClient[] = [];
    for (;;) {
      const openNow = metricValue(await metrics(), SERVER_CONNECTIONS_METRIC);
      if (openNow >= CONNECTIONS_MAX) break;
      const client = open();
      await unary(client, "Metadata", { topics: [] }, { deadlineMs: CALL_DEADLINE_MS });
      held.push(client);
      await waitFor(async () => metricValue(await metrics(), SERVER_CONNECTIONS_METRIC) > openNow, {
        message: "the connection counted",
      });
    }
    assert.equal(metricValue(await metrics(), SERVER_CONNECTIONS_METRIC), CONNECTIONS_MAX);

    const refused = open();
    await assert.rejects(
      unary(refused, "Metadata", { topics: [] }, { deadlineMs: 3_000 }),
      (err: unknown) => {
        assert.ok(err instanceof SamsaError, `a SamsaError, not ${String(err)}`);
        // The client sees its connection closed: UNAVAILABLE (LEADER_NOT_AVAILABLE to a Samsa
        // client), or its deadline while it reconnects.
        assert.ok(
          err.code === ErrorCode.LEADER_NOT_AVAILABLE || err.code === ErrorCode.REQUEST_TIMED_OUT,
          `refused connection: ${err.message}`,
        );
        return true;
      },
    );
    refused.close();
    const page = await metrics();
    assert.ok(metricValue(page, SERVER_REFUSED_METRIC, 'reason="connections"') >= 1);
    assert.ok(metricValue(page, SERVER_CONNECTIONS_METRIC) <= CONNECTIONS_MAX);
    const log = await readFile(cluster.brokerProcesses[0]!.logFile, "utf8");
    assert.match(log, /connection refused: max.connections reached/);

    // One connection goes: a new one is served.
    held.pop()?.close();
    opened[0]!.close();
    await waitFor(
      async () => metricValue(await metrics(), SERVER_CONNECTIONS_METRIC) < CONNECTIONS_MAX,
      { message: "a connection closed" },
    );
    const next = open();
    const md = await unary(next, "Metadata", { topics: [] }, { deadlineMs: CALL_DEADLINE_MS });
    assert.ok(md.brokers.length >= 1);
  });
});

/**
 * The etcd client factory against a real etcd: the latency hook and histogram see unary calls,
 * a paused etcd makes calls fail by their deadline, and connecting to nothing times out.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { GRPCDeadlineExceededError } from "etcd3";
import { Registry } from "prom-client";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import {
  connectEtcd,
  createEtcdClient,
  type EtcdCallSample,
  etcdLatencyMetricName,
} from "../../services/shared/etcd/client.js";
import { type EtcdProcess, freePort, startEtcd } from "../support/etcd.js";

describe("etcd client (real etcd)", () => {
  let etcd: EtcdProcess;

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it("reports the latency of unary calls to the hook and the histogram", async () => {
    const registry = new Registry();
    const samples: EtcdCallSample[] = [];
    const client = createEtcdClient({
      endpoints: [etcd.endpoint],
      registry,
      onCall: (s) => samples.push(s),
    });
    // A second client on the same registry reuses the histogram instead of failing.
    createEtcdClient({ endpoints: [etcd.endpoint], registry }).close();
    try {
      await client.put("/samsa-client-test").value("1");
      await client.get("/samsa-client-test").string();
      assert.deepEqual(
        samples.map((s) => `${s.service}.${s.method}:${s.code}`),
        ["KV.put:0", "KV.range:0"],
      );
      assert.ok(samples.every((s) => s.seconds > 0 && Number.isFinite(s.seconds)));
      const text = await registry.getSingleMetricAsString(etcdLatencyMetricName);
      assert.match(
        text,
        /samsa_etcd_request_duration_seconds_count\{method="KV.range",result="ok"\} 1/,
      );
      // The histogram observed the very durations the hook saw, in seconds.
      const sum = text.match(
        /samsa_etcd_request_duration_seconds_sum\{method="KV.range",result="ok"\} (\S+)/,
      );
      assert.ok(sum, text);
      const rangeSeconds = samples.find((s) => s.method === "range")!.seconds;
      assert.ok(Math.abs(Number(sum[1]) - rangeSeconds) < 1e-9, `${sum[1]} vs ${rangeSeconds}`);
    } finally {
      client.close();
    }
  });

  // Without a deadline the call would hang while etcd is paused; the test timeout bounds that.
  it("fails a call by its deadline while etcd is paused", { timeout: 20_000 }, async () => {
    const samples: EtcdCallSample[] = [];
    const client = createEtcdClient({
      endpoints: [etcd.endpoint],
      callTimeoutMs: 500,
      onCall: (s) => samples.push(s),
    });
    try {
      await client.get("/warm-up").string();
      await etcd.pause();
      await assert.rejects(
        client.get("/samsa-client-test").string(),
        (err) => err instanceof GRPCDeadlineExceededError,
      );
      const failed = samples.filter((s) => s.method === "range" && s.code !== 0);
      assert.ok(failed.length >= 1, "the failed attempts were observed");
      assert.ok(
        failed.every((s) => s.code === status.DEADLINE_EXCEEDED),
        `attempts failed by their deadline: ${failed.map((s) => s.code).join(",")}`,
      );
    } finally {
      await etcd.resume();
      client.close();
    }
  });

  it("connectEtcd gives up after connectTimeoutMs when nothing listens", async () => {
    const port = await freePort();
    await assert.rejects(
      connectEtcd({ endpoints: [`http://127.0.0.1:${port}`], connectTimeoutMs: 500 }),
      (err) =>
        isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT) &&
        err.message.includes(`127.0.0.1:${port} within 500 ms`),
    );
    const client = await connectEtcd({ endpoints: [etcd.endpoint], connectTimeoutMs: 5_000 });
    client.close();
  });
});

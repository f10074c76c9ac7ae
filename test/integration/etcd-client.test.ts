/**
 * The etcd client factory against a real etcd: the latency hook and histogram see unary calls,
 * a paused etcd makes calls fail by their deadline, and connecting to nothing times out.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
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
      assert.ok(samples.every((s) => s.seconds > 0 && s.seconds < 5));
      const text = await registry.getSingleMetricAsString(etcdLatencyMetricName);
      assert.match(
        text,
        /samsa_etcd_request_duration_seconds_count\{method="KV.range",result="ok"\} 1/,
      );
    } finally {
      client.close();
    }
  });

  it("fails a call by its deadline while etcd is paused", async () => {
    const client = createEtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 500 });
    try {
      await client.get("/warm-up").string();
      await etcd.pause();
      const startedAt = Date.now();
      await assert.rejects(client.get("/samsa-client-test").string());
      // A deadline per attempt, a few attempts: well under the default 5 s deadline.
      assert.ok(Date.now() - startedAt < 4_000, `took ${Date.now() - startedAt} ms`);
    } finally {
      await etcd.resume();
      client.close();
    }
  });

  it("connectEtcd gives up after connectTimeoutMs when nothing listens", async () => {
    const port = await freePort();
    const startedAt = Date.now();
    await assert.rejects(
      connectEtcd({ endpoints: [`http://127.0.0.1:${port}`], connectTimeoutMs: 500 }),
      (err) => isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT),
    );
    assert.ok(Date.now() - startedAt < 3_000);
    const client = await connectEtcd({ endpoints: [etcd.endpoint], connectTimeoutMs: 5_000 });
    client.close();
  });
});

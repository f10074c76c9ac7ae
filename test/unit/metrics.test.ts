import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Counter, Histogram } from "prom-client";
import {
  createRegistry,
  type MetricsServer,
  startMetricsServer,
  timed,
} from "../../services/shared/metrics.js";

/** True when `text` has a sample of `name` with `label`, the default labels and `value`. */
function hasSample(text: string, name: string, label: string, value: number): boolean {
  return text.split("\n").some((line) => {
    const [series = "", sample] = line.split(" ");
    return (
      series.startsWith(`${name}{`) &&
      [label, 'service="broker"', 'id="7"'].every((l) => series.includes(l)) &&
      Number(sample) === value
    );
  });
}

describe("metrics server", () => {
  const registry = createRegistry("broker", { id: "7" });
  const produced = new Counter({
    name: "samsa_test_messages_in_total",
    help: "Messages produced (test).",
    labelNames: ["topic"],
    registers: [registry],
  });
  const latency = new Histogram({
    name: "samsa_test_request_seconds",
    help: "Request latency (test).",
    labelNames: ["rpc"],
    registers: [registry],
  });
  let healthy = true;
  let server: MetricsServer;
  let base: string;

  before(async () => {
    server = await startMetricsServer({
      port: 0,
      host: "127.0.0.1",
      registry,
      health: () => (healthy ? { ok: true } : { ok: false, detail: { etcd: "down" } }),
    });
    base = `http://127.0.0.1:${server.port}`;
  });
  after(() => server.close());

  it("binds an ephemeral port", () => {
    assert.ok(server.port > 0);
  });

  it("GET /metrics serves registered and default metrics with labels", async () => {
    produced.inc({ topic: "orders" }, 3);
    assert.equal(await timed(latency, { rpc: "Produce" }, () => 42), 42);
    await assert.rejects(
      timed(latency, { rpc: "Fetch" }, async () => {
        throw new Error("boom");
      }),
    );
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.ok(hasSample(text, "samsa_test_messages_in_total", 'topic="orders"', 3), text);
    assert.ok(hasSample(text, "samsa_test_request_seconds_count", 'rpc="Produce"', 1), text);
    assert.ok(hasSample(text, "samsa_test_request_seconds_count", 'rpc="Fetch"', 1), text);
    assert.match(text, /^samsa_process_cpu_user_seconds_total/m);
    assert.match(text, /^samsa_nodejs_heap_size_total_bytes/m);
  });

  it("GET /healthz is 200 when healthy, 503 with detail when not", async () => {
    const ok = await fetch(`${base}/healthz`);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true });
    healthy = false;
    const bad = await fetch(`${base}/healthz`);
    assert.equal(bad.status, 503);
    assert.deepEqual(await bad.json(), { ok: false, detail: { etcd: "down" } });
    healthy = true;
  });

  it("404 for other paths, 405 for other methods", async () => {
    assert.equal((await fetch(`${base}/nope`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: "POST" })).status, 405);
  });

  it("a health check that throws answers 503", async () => {
    const s = await startMetricsServer({
      port: 0,
      host: "127.0.0.1",
      registry,
      health: () => {
        throw new Error("no etcd");
      },
    });
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/healthz`);
      assert.equal(res.status, 503);
      assert.match(JSON.stringify(await res.json()), /no etcd/);
    } finally {
      await s.close();
    }
  });
});

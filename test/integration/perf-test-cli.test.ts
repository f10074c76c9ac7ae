/**
 * `samsa perf-test` end to end against a real local cluster (etcd, 1 controller, 1 broker, 1
 * gateway as processes), each run its own child process as a user runs it: `perf-test producer
 * --json` sends the records and `perf-test consumer --json` reads them back, through the client
 * and through the gateway. Counts and the shape of the report are checked; no timing is asserted.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
  type LocalCluster,
  startLocalCluster,
} from "../../services/local-cluster/local-cluster.js";
import { type CliRun, runCli } from "../support/cli.js";

/** Longest one CLI run may take, ms. */
const CLI_RUN_TIMEOUT_MS = 60_000;
const RECORDS = 2000;
const RECORD_BYTES = 100;

const KEEP_DATA = process.env.KEEP_CLUSTER_DATA === "1";

/** The JSON object of a `--json` run: its only line on stdout. */
function report(run: CliRun): Record<string, unknown> {
  const lines = run.stdout.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one JSON line on stdout, got: ${run.stdout}`);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

/** Asserts the fields every report has: counts, sizes, finite positive rates. */
function assertSane(r: Record<string, unknown>, records: number): void {
  assert.equal(r.records, records);
  assert.equal(r.bytes, records * RECORD_BYTES);
  for (const key of ["elapsedMs", "recordsPerSec", "mbPerSec"]) {
    const v = r[key];
    assert.ok(typeof v === "number" && Number.isFinite(v) && v > 0, `${key} = ${v}`);
  }
}

/** Asserts a latency summary: ordered percentiles, none negative. */
function assertLatency(l: unknown): void {
  const lat = l as Record<string, number>;
  assert.ok(lat !== undefined, "latencyMs present");
  for (const k of ["avg", "max", "p50", "p95", "p99", "p999"]) {
    assert.ok(Number.isFinite(lat[k]) && lat[k]! >= 0, `latency ${k} = ${lat[k]}`);
  }
  assert.ok(lat.p50! <= lat.p95! && lat.p95! <= lat.p99! && lat.p99! <= lat.p999!);
  assert.ok(lat.p999! <= lat.max!);
}

describe("samsa perf-test (child processes, real cluster)", { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  const topic = `perf-${randomBytes(4).toString("hex")}`;

  const ok = async (args: readonly string[]): Promise<CliRun> => {
    const run = await runCli(args, {
      bootstrap: cluster.bootstrap.join(","),
      controller: cluster.controllers.join(","),
      timeoutMs: CLI_RUN_TIMEOUT_MS,
    });
    assert.equal(
      run.code,
      0,
      `samsa ${args.join(" ")} exited ${run.code ?? run.signal}; stderr: ${run.stderr}`,
    );
    return run;
  };
  const producer = (extra: readonly string[]) =>
    ok([
      "perf-test",
      "producer",
      "--topic",
      topic,
      "--num-records",
      String(RECORDS),
      "--record-size",
      String(RECORD_BYTES),
      "--throughput",
      "-1",
      "--acks",
      "1",
      "--json",
      ...extra,
    ]);
  const consumer = (extra: readonly string[]) =>
    ok(["perf-test", "consumer", "--topic", topic, "--json", ...extra]);

  before(async () => {
    cluster = await startLocalCluster({
      controllers: 1,
      brokers: 1,
      gateways: 1,
      keepDataDir: KEEP_DATA,
    });
    await ok([
      "topics",
      "create",
      "--topic",
      topic,
      "--partitions",
      "2",
      "--replication-factor",
      "1",
    ]);
  });

  after(async () => {
    await cluster?.stop();
  });

  test("producer through the client reports every record with its latencies", async () => {
    const r = report(await producer([]));
    assert.equal(r.type, "producer");
    assert.equal(r.path, "client");
    assert.equal(r.failed, 0);
    assert.equal(r.cutShort, false);
    assertSane(r, RECORDS);
    assertLatency(r.latencyMs);
  });

  test("consumer through the client reads them back from the start", async () => {
    const r = report(await consumer(["--messages", String(RECORDS)]));
    assert.equal(r.type, "consumer");
    assert.equal(r.path, "client");
    assert.equal(r.timedOut, false);
    assertSane(r, RECORDS);
  });

  test("producer through the gateway's Publish reports every record", async () => {
    const gateway = ["--through-gateway", "--gateway", cluster.gateways[0]!];
    const r = report(await producer([...gateway, "--concurrency", "100"]));
    assert.equal(r.path, "gateway");
    assert.equal(r.failed, 0);
    assertSane(r, RECORDS);
    assertLatency(r.latencyMs);
  });

  test("consumer through the gateway's Consume reads both runs' records", async () => {
    const gateway = ["--through-gateway", "--gateway", cluster.gateways[0]!];
    const r = report(await consumer([...gateway, "--messages", String(2 * RECORDS)]));
    assert.equal(r.path, "gateway");
    assert.equal(r.timedOut, false);
    assertSane(r, 2 * RECORDS);
  });

  test("without --json: the perf tests' text reports", async () => {
    const run = await ok([
      "perf-test",
      "producer",
      "--topic",
      topic,
      "--num-records",
      "100",
      "--record-size",
      String(RECORD_BYTES),
      "--throughput",
      "1000",
      "--stamp-values",
    ]);
    assert.match(
      run.stdout,
      /^100 records sent, [\d.]+ records\/sec \([\d.]+ MB\/sec\), [\d.]+ ms avg latency, [\d.]+ ms max latency, [\d.]+ ms 50th, [\d.]+ ms 95th, [\d.]+ ms 99th, [\d.]+ ms 99\.9th\.$/m,
    );
    const c = await ok([
      "perf-test",
      "consumer",
      "--topic",
      topic,
      "--messages",
      String(2 * RECORDS + 100),
    ]);
    assert.match(c.stdout, /^start\.time, end\.time, data\.consumed\.in\.MB, MB\.sec/m);
    assert.match(c.stdout, new RegExp(`, ${2 * RECORDS + 100}, `));
  });
});

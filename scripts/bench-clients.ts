/**
 * `npm run bench:clients`: the paths users take (issue 10's table), each measured against a local
 * cluster this script starts (etcd, 1 controller, 3 brokers, 1 gateway as processes; topics of
 * RF=1, acks=leader, 100-byte values). Not a test: it prints each figure with its setup, and its
 * last line is machine-readable:
 *
 *   bench:clients sdk_produce_s=<n> sdk_consume_s=<n> e2e_p50_ms=<n> e2e_p99_ms=<n> produce_rtt_ms=<n> gw_publish_s=<n> gw_stream_s=<n> gw_consume_s=<n> many_clients_s=<n> many_clients_p99_ms=<n>
 *
 * (NA where a row cannot run). The rows that `samsa perf-test` covers are run by its own loops
 * (services/cli/commands/perf-run.ts), so the tool is what produces the figures:
 *
 * 1. `Producer.add` per record with a callback, ≤ 1000 unacknowledged, one partition.
 * 2. `Consumer.consume` async iteration of those records from the start.
 * 3. End-to-end latency at 2,000 records/s: the producer (linger.ms 0) stamps each value with its
 *    send time, a consumer in this process tails the topic and subtracts it.
 * 4. One Produce of a one-record batch at a time to the leader (a raw BrokerService client).
 * 5. The same with 1000 calls in flight.
 * 6. The gateway's `Publish`, one record per call, 1000 calls in flight (grpc-js client of the .proto).
 * 7. The gateway's `Consume` stream from the start (row 1's records).
 * 8. The gateway's `PublishStream`, one record per request on one stream (grpc-js client of the .proto).
 * 9. 1,000 clients, each its own connection, one record at a time (Produce, one-record batches)
 *    over 6 partitions, run in several child processes (scripts/bench-clients-worker.ts) so that
 *    one client event loop is not what is measured.
 *
 * Every loop is bounded in count and time; the cluster is stopped and its dir removed at the
 * end, also on error. `--rows=1,2,9` runs some rows only; `--marks=1` prints each row's window
 * on the clock of `--cpu-prof` samples, to profile one row (docs/performance.md). On this 2-core machine the clients and
 * the cluster share the cores: the client's CPU is printed beside each figure.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type * as grpc from "@grpc/grpc-js";
import { AdminClient, Cluster, Consumer, Producer } from "../services/client/index.js";
import {
  clientSender,
  clientSource,
  gatewaySender,
  gatewayStreamSender,
  gatewaySource,
  type ProducerResult,
  type RecordSender,
  runConsumerPerf,
  runProducerPerf,
} from "../services/cli/commands/perf-run.js";
import type { TextOut } from "../services/cli/commands/output.js";
import { createClient } from "../services/shared/grpc/client.js";
import {
  type BrokerServiceClient,
  brokerService,
  gatewayService,
} from "../services/shared/grpc/proto.js";
import { buildBatch } from "../services/shared/record-batch/builder.js";
import {
  type LocalCluster,
  type ProcessHandle,
  startLocalCluster,
} from "../services/local-cluster/local-cluster.js";
import type { RecordSource } from "../services/cli/commands/perf-run.js";
import {
  busyWarning,
  cpuMeter,
  cpuSummary,
  fixed,
  human,
  intOption,
  machineLines,
  otherLoadMeter,
  percentiles,
  processCpuMs,
  stringOption,
} from "./bench-util.js";

const RECORD_BYTES = intOption("record-bytes", "BENCH_RECORD_BYTES", 100, 1);
const SDK_RECORDS = intOption("records", "BENCH_RECORDS", 1_000_000, 1000);
const WARMUP_RECORDS = intOption("warmup", "BENCH_WARMUP", 50_000, 0);
/** Bound of each throughput row, ms. */
const ROW_MS = intOption("row-ms", "BENCH_ROW_MS", 30_000, 1000);
const E2E_RATE = intOption("e2e-rate", "BENCH_E2E_RATE", 2000, 1);
const E2E_RECORDS = intOption("e2e-records", "BENCH_E2E_RECORDS", 20_000, 100);
/** Row 7's `max_records_per_message`. */
const GW_RECORDS_PER_MESSAGE = intOption(
  "gw-records-per-message",
  "BENCH_GW_RECORDS_PER_MESSAGE",
  1000,
  1,
);
/** Records of row 7b (one record per message), fewer than row 7's: it is some 15 times slower. */
const GW_SINGLE_RECORDS = 200_000;
const RTT_CALLS = intOption("rtt-calls", "BENCH_RTT_CALLS", 10_000, 10);
const INFLIGHT = intOption("inflight", "BENCH_INFLIGHT", 1000, 1);
const INFLIGHT_CALLS = intOption("inflight-calls", "BENCH_INFLIGHT_CALLS", 200_000, 100);
const GW_RECORDS = intOption("gw-records", "BENCH_GW_RECORDS", 200_000, 100);
/** Records of the PublishStream row. */
const GW_STREAM_RECORDS = intOption("gw-stream-records", "BENCH_GW_STREAM_RECORDS", 1_000_000, 100);
const MANY_CLIENTS = intOption("clients", "BENCH_CLIENTS", 1000, 1);
const MANY_PROCESSES = intOption("client-processes", "BENCH_CLIENT_PROCESSES", 4, 1);
const MANY_MS = intOption("many-ms", "BENCH_MANY_MS", 15_000, 1000);
const MANY_WARMUP_MS = intOption("many-warmup-ms", "BENCH_MANY_WARMUP_MS", 2_000, 0);
const ROWS = stringOption("rows", "BENCH_ROWS", "1,2,3,4,5,6,7,8,9")
  .split(",")
  .map((s) => Number(s.trim()));
/** `--marks=1`: print each row's time window on the clock of `--cpu-prof` profiles. */
const MARKS = intOption("marks", "BENCH_MARKS", 0, 0) === 1;
const MANY_PARTITIONS = 6;
/** Deadline of one call, ms. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Longest wait for a worker process (connect, run, report), ms. */
const WORKER_TIMEOUT_MS = MANY_MS + MANY_WARMUP_MS + 90_000;
/** A consumer row ends after this long without a record, ms. */
const IDLE_TIMEOUT_MS = 10_000;
const ACKS_LEADER = 2;
/** Successful calls before the one-record Produce rows. */
const WARMUP_CALLS = 200;
const WORKER = fileURLToPath(new URL("./bench-clients-worker.ts", import.meta.url));

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** The perf tool's own lines, indented under the row's heading. */
const indented: TextOut = {
  write: (t: string) => process.stdout.write(t.replace(/^(?=.)/gm, "    ")),
};

/** The CPU of this process and of the cluster's processes over a row, printed at its end. */
function rowMeter(lc: LocalCluster): () => string {
  const procs: ProcessHandle[] = [...lc.brokerProcesses, ...lc.gatewayProcesses];
  const start = procs.map((p) => ({ p, ms: processCpuMs(p.pid) }));
  const own = cpuMeter();
  const others = otherLoadMeter();
  const t0 = performance.now();
  const mono0 = process.hrtime.bigint() / 1000n;
  return () => {
    const wall = performance.now() - t0;
    if (MARKS) {
      const mono1 = process.hrtime.bigint() / 1000n;
      console.log(`    window (CLOCK_MONOTONIC µs, as --cpu-prof timestamps): ${mono0} ${mono1}`);
    }
    const cluster = start
      .map(({ p, ms }) => {
        const now = processCpuMs(p.pid);
        const cores = ms === undefined || now === undefined ? Number.NaN : (now - ms) / wall;
        return cores >= 0.05 ? `${p.name} ${fixed(cores, 2)}` : undefined;
      })
      .filter((x) => x !== undefined)
      .join(", ");
    const load = others();
    return `    cpu: this process ${cpuSummary(own(wall))}; cluster (cores) ${cluster || "idle"}; everything but this process ${load.cores === undefined ? "?" : fixed(load.cores, 2)} cores`;
  };
}

async function createTopic(admin: AdminClient, name: string, partitions: number): Promise<void> {
  const [created] = await admin.createTopics([
    { name, numPartitions: partitions, replicationFactor: 1 },
  ]);
  if (created?.error) throw created.error;
}

/** The leaders' addresses of `topic`'s partitions, waiting (bounded) until each has one. */
async function leaders(cluster: Cluster, topic: string): Promise<string[]> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    cluster.invalidate(topic);
    const md = await cluster.topic(topic, { timeoutMs: 10_000 });
    const found = md.partitions.map((_, p) => cluster.leaderOf(md, p));
    if (found.every((l) => "address" in l))
      return found.map((l) => (l as { address: string }).address);
    if (performance.now() > deadline) throw new Error(`no leaders for ${topic}`);
    await sleep(100);
  }
}

/** One-record batches with Produce to a partition's leader (rows 4 and 5). */
function produceSender(client: BrokerServiceClient, topic: string): RecordSender {
  const records = buildBatch([{ value: Buffer.alloc(RECORD_BYTES, 0x61) }]);
  return {
    send: (_value, done) => {
      client.Produce(
        { partitions: [{ topic, partition: 0, records }], acks: ACKS_LEADER },
        { deadline: Date.now() + REQUEST_TIMEOUT_MS },
        (err: grpc.ServiceError | null, res) => {
          const code = Number(res?.partitions[0]?.errorCode ?? -1);
          done(err ?? (code === 0 ? null : new Error(`Produce error code ${code}`)));
        },
      );
      return undefined;
    },
    flush: () => Promise.resolve(),
  };
}

/** Calls the sender until {@link WARMUP_CALLS} succeeded (bounded): the leader may learn of its leadership after the metadata says so. */
async function warmUp(sender: RecordSender): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (let ok = 0; ok < WARMUP_CALLS && performance.now() < deadline; ) {
    const err = await new Promise<Error | null>((r) => sender.send(Buffer.alloc(0), r));
    if (err === null) ok++;
    else await sleep(50);
  }
}

const producerRun = (numRecords: number, concurrency: number, throughput = -1) => ({
  numRecords,
  recordSize: RECORD_BYTES,
  throughput,
  concurrency,
  maxDurationMs: ROW_MS,
  reportingIntervalMs: 5000,
  stampValues: false,
  quiet: false,
});

const consumerRun = (messages: number, endToEnd = false) => ({
  messages,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  maxDurationMs: ROW_MS,
  reportingIntervalMs: 5000,
  endToEnd,
  quiet: false,
});

function failures(r: ProducerResult): string {
  return r.failed > 0 ? ` (${human(r.failed)} FAILED, first: ${r.firstError})` : "";
}

/** The machine line's figures, NA until a row sets them. */
const figures: Record<string, string> = Object.fromEntries(
  [
    "sdk_produce_s",
    "sdk_consume_s",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "produce_rtt_ms",
    "gw_publish_s",
    "gw_stream_s",
    "gw_consume_s",
    "many_clients_s",
    "many_clients_p99_ms",
  ].map((k) => [k, "NA"]),
);

async function sdkRows(lc: LocalCluster, cluster: Cluster, admin: AdminClient): Promise<number> {
  const topic = "bench-sdk";
  await createTopic(admin, topic, 1);
  await leaders(cluster, topic);
  const producer = new Producer({ cluster, acks: 1, deliveryTimeoutMs: 60_000 });
  let produced = 0;
  try {
    if (WARMUP_RECORDS > 0) {
      const run = { ...producerRun(WARMUP_RECORDS, INFLIGHT), quiet: true };
      produced += (await runProducerPerf(clientSender(producer, topic), run, indented)).records;
    }
    if (ROWS.includes(1)) {
      console.log(
        `row 1: Producer.add per record with a delivery callback, ≤ ${INFLIGHT} unacknowledged, ${human(SDK_RECORDS)} records (≤ ${ROW_MS / 1000} s) after ${human(WARMUP_RECORDS)} warm-up, acks=1, linger.ms/batch.size default, 1 partition`,
      );
      const meter = rowMeter(lc);
      const r = await runProducerPerf(
        clientSender(producer, topic),
        producerRun(SDK_RECORDS, INFLIGHT),
        indented,
      );
      console.log(meter());
      produced += r.records;
      figures.sdk_produce_s = fixed(r.recordsPerSec, 0);
      if (r.failed > 0) console.log(`    ${failures(r)}`);
    }
  } finally {
    await producer.close().catch(() => undefined);
  }
  if (ROWS.includes(2)) {
    console.log(
      `row 2: Consumer.consume async iteration from the start of that topic: ${human(produced)} records (≤ ${ROW_MS / 1000} s)`,
    );
    const consumer = new Consumer({ cluster });
    const meter = rowMeter(lc);
    const r = await runConsumerPerf(
      clientSource(consumer, topic, "earliest", REQUEST_TIMEOUT_MS),
      consumerRun(produced),
      indented,
    );
    console.log(meter());
    figures.sdk_consume_s = fixed(r.recordsPerSec, 0);
    // The batch-at-a-time iteration of the same records, for comparison (not in the machine line).
    console.log(
      `row 2b: Consumer.consumeBatches of the same records (a stored batch per step, the perf tool's per-record count)`,
    );
    const batchMeter = rowMeter(lc);
    await runConsumerPerf(batchSource(consumer, topic), consumerRun(produced), indented);
    console.log(batchMeter());
  }
  return produced;
}

/** `Consumer.consumeBatches` from the earliest offset, each record's value handed on. */
function batchSource(consumer: Consumer, topic: string): RecordSource {
  return {
    run: async (onRecord, signal) => {
      const options = { from: "earliest" as const, signal, startTimeoutMs: REQUEST_TIMEOUT_MS };
      for await (const batch of consumer.consumeBatches(topic, options)) {
        for (const r of batch.records) if (!onRecord(r.value)) return;
      }
    },
  };
}

async function e2eRow(lc: LocalCluster, cluster: Cluster, admin: AdminClient): Promise<void> {
  const topic = "bench-e2e";
  await createTopic(admin, topic, 1);
  await leaders(cluster, topic);
  console.log(
    `row 3: end-to-end latency: ${human(E2E_RECORDS)} records at ${human(E2E_RATE)} records/s (ThroughputThrottler), Producer.add with linger.ms 0, acks=1, to a Consumer.consume tailing the topic in this process; latency = receipt - send time stamped in the value`,
  );
  const producer = new Producer({ cluster, acks: 1, lingerMs: 0, deliveryTimeoutMs: 60_000 });
  const consumer = new Consumer({ cluster });
  const meter = rowMeter(lc);
  try {
    const consuming = runConsumerPerf(
      clientSource(consumer, topic, { offset: 0 }, REQUEST_TIMEOUT_MS),
      { ...consumerRun(E2E_RECORDS, true), quiet: true },
      indented,
    );
    await sleep(1000); // the consumer is long-polling by then
    const run = { ...producerRun(E2E_RECORDS, INFLIGHT, E2E_RATE), stampValues: true };
    const p = await runProducerPerf(clientSender(producer, topic), run, indented);
    const c = await consuming;
    console.log(meter());
    const l = c.latencyMs;
    if (l === undefined) throw new Error("row 3: no latency measured");
    console.log(
      `    consumer: ${human(c.records)} records; end-to-end p50 ${fixed(l.p50, 2)} ms, p95 ${fixed(l.p95, 2)} ms, p99 ${fixed(l.p99, 2)} ms, p99.9 ${fixed(l.p999, 2)} ms, max ${fixed(l.max, 2)} ms${failures(p)}`,
    );
    figures.e2e_p50_ms = fixed(l.p50, 2);
    figures.e2e_p99_ms = fixed(l.p99, 2);
  } finally {
    await producer.close().catch(() => undefined);
  }
}

async function produceRows(lc: LocalCluster, cluster: Cluster, admin: AdminClient): Promise<void> {
  const topic = "bench-rpc";
  await createTopic(admin, topic, 1);
  const [leader] = await leaders(cluster, topic);
  const client = createClient(brokerService.Client, leader!);
  try {
    await warmUp(produceSender(client, topic));
    if (ROWS.includes(4)) {
      console.log(
        `row 4: Produce of a one-record batch (${RECORD_BYTES} B value), one call at a time, acks=1, to the leader (${leader}) with a raw BrokerService client; ${human(RTT_CALLS)} calls (≤ ${ROW_MS / 1000} s)`,
      );
      const meter = rowMeter(lc);
      const r = await runProducerPerf(
        produceSender(client, topic),
        producerRun(RTT_CALLS, 1),
        indented,
      );
      console.log(meter());
      console.log(
        `    mean round trip ${fixed(r.elapsedMs / Math.max(1, r.records), 3)} ms${failures(r)}`,
      );
      figures.produce_rtt_ms = fixed(r.elapsedMs / Math.max(1, r.records), 3);
    }
    if (ROWS.includes(5)) {
      console.log(
        `row 5: Produce of one-record batches, ${human(INFLIGHT)} calls in flight on one connection, acks=1; ${human(INFLIGHT_CALLS)} calls (≤ ${ROW_MS / 1000} s)`,
      );
      const meter = rowMeter(lc);
      const r = await runProducerPerf(
        produceSender(client, topic),
        producerRun(INFLIGHT_CALLS, INFLIGHT),
        indented,
      );
      console.log(meter());
      if (r.failed > 0) console.log(`    ${failures(r)}`);
    }
  } finally {
    client.close();
  }
}

async function gatewayRows(
  lc: LocalCluster,
  cluster: Cluster,
  admin: AdminClient,
  sdkRecords: number,
): Promise<void> {
  const gwAddress = lc.gateways[0]!;
  const gw = createClient(gatewayService.Client, gwAddress);
  try {
    if (ROWS.includes(6)) {
      const topic = "bench-gw";
      await createTopic(admin, topic, 1);
      await leaders(cluster, topic);
      console.log(
        `row 6: gateway Publish (${gwAddress}), one record per call, ${human(INFLIGHT)} calls in flight from a grpc-js client of the .proto, acks=1, 1 partition; ${human(GW_RECORDS)} records (≤ ${ROW_MS / 1000} s)`,
      );
      const meter = rowMeter(lc);
      const sender = gatewaySender(gw, topic, 1, REQUEST_TIMEOUT_MS, 0);
      const r = await runProducerPerf(sender, producerRun(GW_RECORDS, INFLIGHT), indented);
      console.log(meter());
      if (r.failed > 0) console.log(`    ${failures(r)}`);
      figures.gw_publish_s = fixed(r.recordsPerSec, 0);
    }
    if (ROWS.includes(7) && sdkRecords > 0) {
      console.log(
        `row 7: gateway Consume stream of row 1's topic from the start, one partition, max_records_per_message ${GW_RECORDS_PER_MESSAGE}: ${human(sdkRecords)} records (≤ ${ROW_MS / 1000} s)`,
      );
      const meter = rowMeter(lc);
      const r = await runConsumerPerf(
        gatewaySource(gw, "bench-sdk", "earliest", sdkRecords, 0, GW_RECORDS_PER_MESSAGE),
        consumerRun(sdkRecords),
        indented,
      );
      console.log(meter());
      figures.gw_consume_s = fixed(r.recordsPerSec, 0);
      const single = Math.min(sdkRecords, GW_SINGLE_RECORDS);
      console.log(
        `row 7b: the same with one record per message (max_records_per_message unset, the single-record fields): ${human(single)} records (≤ ${ROW_MS / 1000} s)`,
      );
      const meterB = rowMeter(lc);
      await runConsumerPerf(
        gatewaySource(gw, "bench-sdk", "earliest", single, 0, 1),
        consumerRun(single),
        indented,
      );
      console.log(meterB());
    }
    if (ROWS.includes(8)) {
      const topic = "bench-gw-stream";
      await createTopic(admin, topic, 1);
      await leaders(cluster, topic);
      console.log(
        `row 8: gateway PublishStream (${gwAddress}), one record per request on one stream from a grpc-js client of the .proto, acks=1, 1 partition; ${human(GW_STREAM_RECORDS)} records (≤ ${ROW_MS / 1000} s)`,
      );
      const meter = rowMeter(lc);
      const sender = gatewayStreamSender(gw, topic, 1, 0);
      const r = await runProducerPerf(sender, producerRun(GW_STREAM_RECORDS, 0), indented);
      console.log(meter());
      if (r.failed > 0) console.log(`    ${failures(r)}`);
      figures.gw_stream_s = fixed(r.recordsPerSec, 0);
    }
  } finally {
    gw.close();
  }
}

interface WorkerReport {
  counted: number;
  errors: number;
  cpuCores: number;
  latencies: number[];
}

/** Starts a worker process; resolves once it is ready, with its report's promise and stdin. */
function startWorker(
  first: number,
  clients: number,
  leadersList: string[],
): Promise<{ go: (from: number, to: number) => void; report: Promise<WorkerReport> }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      WORKER,
      `--clients=${clients}`,
      `--first=${first}`,
      `--record-bytes=${RECORD_BYTES}`,
      "--topic=bench-many",
      `--leaders=${JSON.stringify(leadersList)}`,
    ],
    { stdio: ["pipe", "pipe", "inherit"], timeout: WORKER_TIMEOUT_MS, killSignal: "SIGKILL" },
  );
  let out = "";
  let onReady: (() => void) | undefined;
  const report = new Promise<WorkerReport>((resolve, reject) => {
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      if (onReady !== undefined && out.includes("ready\n")) {
        onReady();
        onReady = undefined;
      }
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const last = out.trim().split("\n").pop() ?? "";
      if (code === 0 && last.startsWith("{")) resolve(JSON.parse(last) as WorkerReport);
      else reject(new Error(`worker exited ${code ?? signal}: ${out.slice(-500)}`));
    });
  });
  return new Promise((resolve, reject) => {
    onReady = () => resolve({ go: (from, to) => child.stdin.end(`go ${from} ${to}\n`), report });
    report.catch(reject);
  });
}

async function manyClientsRow(
  lc: LocalCluster,
  cluster: Cluster,
  admin: AdminClient,
): Promise<void> {
  const topic = "bench-many";
  await createTopic(admin, topic, MANY_PARTITIONS);
  const leadersList = await leaders(cluster, topic);
  const per = Math.ceil(MANY_CLIENTS / MANY_PROCESSES);
  console.log(
    `row 9: ${human(MANY_CLIENTS)} clients, each its own connection (grpc-js local subchannel pool) to its partition's leader, each sending a one-record batch with Produce (acks=1) and waiting for the answer before the next; ${MANY_PARTITIONS} partitions (leaders ${leadersList.join(" ")}); ${MANY_PROCESSES} client processes of ≤ ${per} clients; ${MANY_WARMUP_MS / 1000} s warm-up, then ${MANY_MS / 1000} s measured`,
  );
  const workers = [];
  for (let first = 0; first < MANY_CLIENTS; first += per) {
    workers.push(startWorker(first, Math.min(per, MANY_CLIENTS - first), leadersList));
  }
  const ready = await Promise.all(workers);
  // Every client starts now; only what is sent and answered between `from` and `to` counts.
  const from = performance.timeOrigin + performance.now() + MANY_WARMUP_MS;
  const to = from + MANY_MS;
  for (const w of ready) w.go(from, to);
  await sleep(MANY_WARMUP_MS);
  const meter = rowMeter(lc);
  const reports = await Promise.all(ready.map((w) => w.report));
  console.log(meter());
  const all = Float64Array.from(reports.flatMap((r) => r.latencies));
  const counted = all.length;
  const errors = reports.reduce((s, r) => s + r.errors, 0);
  const [p50, p99, max] = percentiles(all, counted, [50, 99, 100]);
  const rate = counted / (MANY_MS / 1000);
  console.log(
    `    ${human(counted)} records in ${MANY_MS / 1000} s: ${human(rate)} records/s; latency p50 ${fixed(p50!, 2)} ms, p99 ${fixed(p99!, 2)} ms, max ${fixed(max!, 2)} ms; ${errors} errors; client processes' cpu ${reports.map((r) => fixed(r.cpuCores, 2)).join(", ")} cores`,
  );
  figures.many_clients_s = fixed(rate, 0);
  figures.many_clients_p99_ms = fixed(p99!, 2);
}

/** Runs a row; a failure is printed and leaves its figures NA, and the next rows still run. */
async function attempt(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    console.log(
      `  ${what} FAILED (their figures stay NA): ${err instanceof Error ? err.message : err}`,
    );
  }
}

async function main(): Promise<void> {
  const lc = await startLocalCluster({
    controllers: 1,
    brokers: 3,
    gateways: 1,
    logLevel: "warn",
    keepDataDir: process.env.BENCH_KEEP_DIR === "1",
  });
  const admin = new AdminClient({ controllers: lc.controllers });
  const cluster = new Cluster({ bootstrapServers: lc.bootstrap });
  try {
    console.log("bench:clients setup");
    for (const line of machineLines()) console.log(`  ${line}`);
    console.log(
      "  cluster: etcd + 1 controller + 3 brokers + 1 gateway, separate processes, gRPC over loopback; topics RF=1, acks=1 (leader), values of " +
        `${RECORD_BYTES} B without keys, uncompressed; the clients share this machine's cores with the cluster (figures are noisy when others work on it)`,
    );
    const busy = busyWarning();
    if (busy) console.log(`  ${busy}`);
    let sdkRecords = 0;
    if (ROWS.includes(1) || ROWS.includes(2) || ROWS.includes(7)) {
      await attempt("rows 1-2", async () => {
        sdkRecords = await sdkRows(lc, cluster, admin);
      });
    }
    if (ROWS.includes(3)) await attempt("row 3", () => e2eRow(lc, cluster, admin));
    if (ROWS.includes(4) || ROWS.includes(5)) {
      await attempt("rows 4-5", () => produceRows(lc, cluster, admin));
    }
    if (ROWS.some((r) => r >= 6 && r <= 8)) {
      await attempt("rows 6-8", () => gatewayRows(lc, cluster, admin, sdkRecords));
    }
    if (ROWS.includes(9)) await attempt("row 9", () => manyClientsRow(lc, cluster, admin));
    console.log(
      `bench:clients ${Object.entries(figures)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`,
    );
  } finally {
    cluster.close();
    admin.close();
    await lc.stop();
  }
}

await main();
process.exit(0);

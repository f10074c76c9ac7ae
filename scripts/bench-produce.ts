/**
 * `npm run bench:produce`: one producer against one broker over gRPC (RF=1, acks=leader), then
 * one consumer reading everything back. Not a test: it prints its setup and figures, and its last
 * line is machine-readable:
 *
 *   bench:produce produce_msgs_s=<n> produce_mb_s=<n> consume_msgs_s=<n> p50_ms=<n> p99_ms=<n>
 *
 * The cluster is real (etcd, a controller and a broker as separate processes, see
 * services/local-cluster/local-cluster.ts). Batches of 100-byte records are built before timing (a producer's
 * batching is client CPU, measured by bench:log's build figures), and the producer keeps
 * `--inflight` Produce requests outstanding, as Kafka's max.in.flight.requests.per.connection does.
 * Latency is the round trip of one Produce request. The consumer fetches sequentially and decodes
 * every record (key, value, headers), as a real consumer does.
 */
import { createClient, unary } from "../services/shared/grpc/client.js";
import { adminService, brokerService } from "../services/shared/grpc/proto.js";
import { buildBatch, iterateBatches } from "../services/shared/record-batch/builder.js";
import {
  busyWarning,
  cpuMeter,
  cpuSummary,
  fixed,
  human,
  intOption,
  latencySummary,
  machineLines,
  mbPerSec,
  percentiles,
  perSec,
} from "./bench-util.js";
import { startLocalCluster } from "../services/local-cluster/local-cluster.js";

const RECORDS = intOption("records", "BENCH_RECORDS", 2_000_000, 1000);
const BATCH_RECORDS = intOption("batch", "BENCH_BATCH", 1000, 1);
const RECORD_BYTES = intOption("record-bytes", "BENCH_RECORD_BYTES", 100, 1);
const INFLIGHT = intOption("inflight", "BENCH_INFLIGHT", 8, 1);
const FETCH_BYTES = intOption("fetch-bytes", "BENCH_FETCH_BYTES", 8 * 1024 * 1024, 1024);
/** Each phase stops after this long even if the volume is not reached. */
const PHASE_MS_MAX = intOption("phase-ms", "BENCH_PHASE_MS", 120_000, 1000);
/** Distinct pre-built batches cycled through. */
const BATCH_POOL = 64;
const TOPIC = "bench-produce";
const ACKS_LEADER = 2;

function buildPool(): Buffer[] {
  const pool: Buffer[] = [];
  for (let b = 0; b < BATCH_POOL; b++) {
    const records = [];
    for (let i = 0; i < BATCH_RECORDS; i++) {
      const value = Buffer.allocUnsafe(RECORD_BYTES);
      for (let j = 0; j < RECORD_BYTES; j++) value[j] = (b * 31 + i * 7 + j) & 0xff;
      records.push({ value });
    }
    pool.push(buildBatch(records));
  }
  return pool;
}

async function main(): Promise<void> {
  const cluster = await startLocalCluster({ controllers: 1, brokers: 1, logLevel: "warn" });
  try {
    const admin = createClient(adminService.Client, cluster.controllers[0]!);
    const created = await unary(admin, "CreateTopics", {
      topics: [{ name: TOPIC, numPartitions: 1, replicationFactor: 1 }],
    });
    if (created.topics[0]?.errorCode !== 0)
      throw new Error(`create failed: ${created.topics[0]?.errorMessage}`);
    const broker = createClient(brokerService.Client, cluster.bootstrap[0]!);
    for (let i = 0; ; i++) {
      const md = await unary(broker, "Metadata", { topics: [TOPIC] });
      if (md.topics[0]?.partitions[0]?.leaderId === 1) break;
      if (i > 200) throw new Error("no leader for the bench topic");
      await new Promise((r) => setTimeout(r, 50));
    }
    const pool = buildPool();
    const batchBytes = pool[0]!.length;
    const requests = Math.ceil(RECORDS / BATCH_RECORDS);
    console.log("bench:produce setup");
    for (const line of machineLines()) console.log(`  ${line}`);
    console.log(
      `  cluster: etcd + 1 controller + 1 broker, separate processes, gRPC over loopback`,
    );
    console.log(`  topic: 1 partition, RF=1, acks=leader, flush by the OS (Kafka's default)`);
    console.log(
      `  records: ${human(requests * BATCH_RECORDS)} x ${RECORD_BYTES} B, ${BATCH_RECORDS} per batch (${batchBytes} B), uncompressed`,
    );
    console.log(
      `  producer: ${INFLIGHT} Produce requests in flight; consumer: sequential Fetch of ${human(FETCH_BYTES)} B, every record decoded`,
    );
    const busy = busyWarning();
    if (busy) console.log(`  ${busy}`);

    const latencies = new Float64Array(requests);
    let sent = 0;
    let done = 0;
    const cpu = cpuMeter();
    const t0 = performance.now();
    const deadline = t0 + PHASE_MS_MAX;
    const worker = async () => {
      while (sent < requests && performance.now() < deadline) {
        const records = pool[sent % BATCH_POOL]!;
        sent++;
        const start = performance.now();
        const res = await unary(broker, "Produce", {
          partitions: [{ topic: TOPIC, partition: 0, records }],
          acks: ACKS_LEADER,
        });
        const p = res.partitions[0]!;
        if (p.errorCode !== 0) throw new Error(`produce failed: ${p.errorCode} ${p.errorMessage}`);
        latencies[done++] = performance.now() - start;
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, worker));
    const produceMs = performance.now() - t0;
    const produceCpu = cpu(produceMs);
    const produced = done * BATCH_RECORDS;
    const [p50, p99] = percentiles(latencies, done, [50, 99]);
    console.log(
      `produce: ${human(produced)} records in ${fixed(produceMs / 1000, 2)} s: ${human(perSec(produced, produceMs))} msgs/s, ${fixed(mbPerSec(produced * RECORD_BYTES, produceMs), 1)} MB/s of values, ${fixed(mbPerSec(done * batchBytes, produceMs), 1)} MB/s of batches; ${cpuSummary(produceCpu)}`,
    );
    console.log(`produce latency: ${latencySummary(latencies, done)}`);

    // The next Fetch is sent as soon as an answer names its next offset, so decoding one answer
    // overlaps the broker reading the next (what a consumer's fetcher thread does). None is sent
    // past the last produced offset: it would long-poll for maxWaitMs, and the clock would count
    // that wait as consume time.
    const fetchAt = (offset: number) =>
      unary(broker, "Fetch", {
        partitions: [
          {
            topic: TOPIC,
            partition: 0,
            fetchOffset: String(offset),
            partitionMaxBytes: FETCH_BYTES,
          },
        ],
        maxBytes: FETCH_BYTES,
        maxWaitMs: 500,
        minBytes: 1,
      });
    let consumed = 0;
    let lastOffset = -1;
    const cpu2 = cpuMeter();
    const t1 = performance.now();
    let pending: ReturnType<typeof fetchAt> | undefined = fetchAt(0);
    while (pending !== undefined && performance.now() < t1 + PHASE_MS_MAX) {
      const res: Awaited<ReturnType<typeof fetchAt>> = await pending;
      const p = res.partitions[0]!;
      if (p.errorCode !== 0) throw new Error(`fetch failed: ${p.errorCode} ${p.errorMessage}`);
      const nextOffset = Number(p.nextOffset);
      pending = nextOffset < produced ? fetchAt(nextOffset) : undefined;
      for (const batch of iterateBatches(p.records as Buffer)) {
        for (const r of batch.records) {
          if (r.offset <= lastOffset) continue;
          if (r.offset !== lastOffset + 1) throw new Error(`gap: ${r.offset} after ${lastOffset}`);
          lastOffset = r.offset;
          consumed++;
        }
      }
    }
    const consumeMs = performance.now() - t1;
    await pending?.catch(() => undefined);
    if (consumed !== produced) throw new Error(`consumed ${consumed} of ${produced} records`);
    console.log(
      `consume: ${human(consumed)} records in ${fixed(consumeMs / 1000, 2)} s: ${human(perSec(consumed, consumeMs))} msgs/s, ${fixed(mbPerSec(consumed * RECORD_BYTES, consumeMs), 1)} MB/s of values; ${cpuSummary(cpu2(consumeMs))}`,
    );
    console.log(
      `bench:produce produce_msgs_s=${Math.round(perSec(produced, produceMs))} produce_mb_s=${fixed(mbPerSec(produced * RECORD_BYTES, produceMs), 1)} consume_msgs_s=${Math.round(perSec(consumed, consumeMs))} p50_ms=${fixed(p50!, 2)} p99_ms=${fixed(p99!, 2)}`,
    );
    admin.close();
    broker.close();
  } finally {
    await cluster.stop();
  }
}

await main();

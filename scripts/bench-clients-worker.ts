/**
 * One process of bench:clients' many-clients phase (scripts/bench-clients.ts starts several):
 * `--clients` clients, each with its own gRPC connection (a local subchannel pool, so grpc-js
 * does not share one connection between them) to the leader of its partition, each sending a
 * one-record batch with Produce (acks=leader) and waiting for the answer before the next.
 *
 * Protocol over stdio: the parent passes `--leaders=<json>` (partition → `host:port`),
 * `--first=<n>` (the global index of this process's first client: client i writes partition
 * i mod partitions) and the topic; the worker connects every client (bounded), prints `ready`,
 * and waits for `go <measureFromEpochMs> <measureToEpochMs>` on stdin. Clients send until the
 * end of the window; a record counts when it was sent and answered inside the window. At the end
 * one JSON line: counted records, errors, the counted latencies (ms) and the process's CPU.
 */
import type * as grpc from "@grpc/grpc-js";
import { createClient } from "../services/shared/grpc/client.js";
import { brokerService, type BrokerServiceClient } from "../services/shared/grpc/proto.js";
import { buildBatch } from "../services/shared/record-batch/builder.js";
import { intOption, stringOption } from "./bench-util.js";

const CLIENTS = intOption("clients", "BENCH_WORKER_CLIENTS", 250, 1);
const FIRST = intOption("first", "BENCH_WORKER_FIRST", 0, 0);
const RECORD_BYTES = intOption("record-bytes", "BENCH_RECORD_BYTES", 100, 1);
const TOPIC = stringOption("topic", "BENCH_WORKER_TOPIC", "bench-many");
const LEADERS = JSON.parse(stringOption("leaders", "BENCH_WORKER_LEADERS", "[]")) as string[];
/** Longest wait for every client's connection, ms. */
const CONNECT_TIMEOUT_MS = 30_000;
/** Longest wait for `go`, ms (the parent waits for every worker's `ready` first). */
const GO_TIMEOUT_MS = 120_000;
/** Deadline of one Produce, ms. */
const PRODUCE_TIMEOUT_MS = 10_000;
/** Most latencies kept (bounded memory whatever the rate). */
const LATENCIES_MAX = 2_000_000;
const ACKS_LEADER = 2;

function connect(address: string): Promise<BrokerServiceClient> {
  const client = createClient(brokerService.Client, address, {
    channelOptions: { "grpc.use_local_subchannel_pool": 1 },
  });
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + CONNECT_TIMEOUT_MS, (err) =>
      err ? reject(err) : resolve(client),
    );
  });
}

function produce(client: BrokerServiceClient, partition: number, batch: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    client.Produce(
      { partitions: [{ topic: TOPIC, partition, records: batch }], acks: ACKS_LEADER },
      { deadline: Date.now() + PRODUCE_TIMEOUT_MS },
      (err: grpc.ServiceError | null, res) =>
        resolve(err === null && Number(res?.partitions[0]?.errorCode ?? -1) === 0),
    );
  });
}

function waitForGo(): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no go from the parent")), GO_TIMEOUT_MS);
    let buffered = "";
    process.stdin.setEncoding("utf8").on("data", (d: string) => {
      buffered += d;
      const m = /go (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)/.exec(buffered);
      if (m === null) return;
      clearTimeout(timer);
      process.stdin.pause();
      resolve([Number(m[1]), Number(m[2])]);
    });
  });
}

async function main(): Promise<void> {
  const partitions = LEADERS.length;
  if (partitions === 0) throw new Error("--leaders names no partition");
  const value = Buffer.alloc(RECORD_BYTES, 0x61);
  const batches = LEADERS.map(() => buildBatch([{ value }]));
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => connect(LEADERS[(FIRST + i) % partitions]!)),
  );
  process.stdout.write("ready\n");
  const [fromEpoch, toEpoch] = await waitForGo();
  const epochNow = (): number => performance.timeOrigin + performance.now();
  const latencies = new Float64Array(LATENCIES_MAX);
  let counted = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (client, i) => {
      const partition = (FIRST + i) % partitions;
      const batch = batches[partition]!;
      while (epochNow() < toEpoch) {
        const start = epochNow();
        const ok = await produce(client, partition, batch);
        const end = epochNow();
        if (!ok) errors++;
        else if (start >= fromEpoch && end <= toEpoch && counted < LATENCIES_MAX) {
          latencies[counted++] = end - start;
        }
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - t0;
  for (const c of clients) c.close();
  process.stdout.write(
    `${JSON.stringify({
      counted,
      errors,
      cpuCores: (cpu.user + cpu.system) / 1000 / wallMs,
      latencies: Array.from(latencies.subarray(0, counted), (l) => Math.round(l * 1000) / 1000),
    })}\n`,
  );
}

await main();
// Exit once the line is written: a closed channel's timers must not keep the worker alive.
process.stdout.write("", () => process.exit(0));

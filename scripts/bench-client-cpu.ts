/**
 * `npm run bench:client-cpu`: the CPU the TypeScript producer itself spends per record, with no
 * network and no broker. The producer's accumulator and sender (the same classes `Producer` uses)
 * run over a transport that encodes each Produce request as the real one does (the generated
 * protobuf serializer, `--serialize=0` skips it) and answers it on the event loop's next turn,
 * driven by `samsa perf-test producer`'s own loop: `Producer.add` per record with a delivery
 * callback, at most `--concurrency` records unacknowledged (row 1 of `bench:clients`). One
 * process, one core. The difference from row 1's client CPU is what grpc-js and the wait for the
 * broker add (docs/performance.md). The last line is machine-readable:
 *
 *   bench:client-cpu records_s=<n> cpu_us_per_record=<n> records_per_call=<n>
 */
import { RecordAccumulator } from "../services/client/record-accumulator.js";
import { type ProducePartition, Sender } from "../services/client/sender.js";
import { runProducerPerf } from "../services/cli/commands/perf-run.js";
import { Acks } from "../services/shared/generated/samsa/v1/Acks.js";
import type { ProducePartitionResult__Output } from "../services/shared/generated/samsa/v1/ProducePartitionResult.js";
import { brokerService } from "../services/shared/grpc/proto.js";
import { CompressionType } from "../services/shared/record-batch/index.js";
import { fixed, human, intOption, machineLines } from "./bench-util.js";

const RECORDS = intOption("records", "BENCH_RECORDS", 2_000_000, 1000);
const RECORD_BYTES = intOption("record-bytes", "BENCH_RECORD_BYTES", 100, 1);
const CONCURRENCY = intOption("concurrency", "BENCH_CONCURRENCY", 1000, 0);
const LINGER_MS = intOption("linger-ms", "BENCH_LINGER_MS", 0, 0);
const SERIALIZE = intOption("serialize", "BENCH_SERIALIZE", 1, 0) === 1;
/** A run stops after this long even if the volume is not reached, ms. */
const RUN_MS_MAX = intOption("run-ms", "BENCH_RUN_MS", 60_000, 1000);
const TOPIC = "bench-client-cpu";
const DELIVERY_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_REQUEST_BYTES = 1024 * 1024;
const MAX_IN_FLIGHT_PER_BROKER = 5;

type Serialize = (request: unknown) => Buffer;
const serialize = (
  brokerService.Client as unknown as { service: { Produce: { requestSerialize: Serialize } } }
).service.Produce.requestSerialize;

async function main(): Promise<void> {
  console.log("bench:client-cpu setup");
  for (const line of machineLines()) console.log(`  ${line}`);
  console.log(
    `  Producer's accumulator and sender in this process over a transport that ${SERIALIZE ? "encodes each Produce request (protobuf) and " : ""}answers it on the next event-loop turn; no network, no broker; ${human(RECORDS)} records of ${RECORD_BYTES} B, ≤ ${human(CONCURRENCY)} unacknowledged, linger.ms ${LINGER_MS}, batch.size default, acks=1, one partition`,
  );
  const accumulator = new RecordAccumulator(
    { partitionCount: () => 1, loadPartitionCount: async () => 1 },
    { lingerMs: LINGER_MS, maxRequestSizeBytes: MAX_REQUEST_BYTES },
  );
  let calls = 0;
  let nextOffset = 0;
  const answer = (partitions: ProducePartition[]): ProducePartitionResult__Output[] =>
    partitions.map((p) => {
      const baseOffset = String(nextOffset);
      nextOffset += 1_000_000; // any increasing offsets do
      return {
        topic: p.topic,
        partition: p.partition,
        errorCode: 0,
        errorMessage: "",
        baseOffset,
        logAppendTimeMs: "-1",
        logStartOffset: "0",
      } as unknown as ProducePartitionResult__Output;
    });
  new Sender(
    accumulator,
    {
      leader: () => ({ address: "in-process" }),
      refresh: async () => {},
      produce: (_address, partitions, acks, timeoutMs) => {
        calls++;
        if (SERIALIZE) serialize({ partitions, acks, timeoutMs });
        return new Promise((resolve) => setImmediate(() => resolve(answer(partitions))));
      },
    },
    {
      acks: Acks.ACKS_LEADER,
      compression: CompressionType.NONE,
      deliveryTimeoutMs: DELIVERY_TIMEOUT_MS,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      maxRequestSizeBytes: MAX_REQUEST_BYTES,
      maxInFlightPerBroker: MAX_IN_FLIGHT_PER_BROKER,
    },
  );
  const sender = {
    send: (value: Buffer, done: (err: Error | null) => void) =>
      accumulator.add(TOPIC, { value }, (err) => done(err)),
    flush: () => accumulator.flush(),
  };
  const out = { write: (t: string) => process.stdout.write(t.replace(/^(?=.)/gm, "  ")) };
  const cpu0 = process.cpuUsage();
  const result = await runProducerPerf(
    sender,
    {
      numRecords: RECORDS,
      recordSize: RECORD_BYTES,
      throughput: -1,
      concurrency: CONCURRENCY,
      maxDurationMs: RUN_MS_MAX,
      reportingIntervalMs: 5_000,
      stampValues: false,
      quiet: false,
    },
    out,
  );
  const cpu = process.cpuUsage(cpu0);
  const usPerRecord = (cpu.user + cpu.system) / Math.max(1, result.records);
  const perCall = result.records / Math.max(1, calls);
  console.log(
    `  CPU ${fixed(usPerRecord, 2)} µs a record (user ${Math.round(cpu.user / 1000)} ms, system ${Math.round(cpu.system / 1000)} ms); ${human(calls)} Produce requests of ${human(perCall)} records`,
  );
  console.log(
    `bench:client-cpu records_s=${fixed(result.recordsPerSec, 0)} cpu_us_per_record=${fixed(usPerRecord, 2)} records_per_call=${fixed(perCall, 0)}`,
  );
}

await main();

/**
 * `samsa perf-test producer` and `samsa perf-test consumer`: Kafka's
 * `kafka-producer-perf-test` and `kafka-consumer-perf-test` for Samsa. A line every reporting
 * interval (records, records/sec, MB/sec, avg and max latency), the totals with p50/p95/p99/p99.9
 * at the end, a progress bar when standard output is a terminal, and `--json` for machines (one
 * object on one line, nothing else on standard output).
 *
 * The producer sends through the client's batching (`Producer.add` with a callback per record)
 * or, with `--through-gateway`, through a gateway's `Publish` (one record per call,
 * `--concurrency` calls in flight) from a plain grpc-js client of the gateway named by
 * `--gateway` (env SAMSA_GATEWAY, as `consumer-groups` takes it). `--throughput -1` sends as fast as it can; a positive value throttles like Kafka's
 * ThroughputThrottler. The consumer iterates `Consumer.consume` or, through a gateway, its
 * `Consume` stream. Every run is bounded in records and in time (`--max-duration-ms`). The loops
 * live in perf-run.ts, where benchmarks call them too.
 */
import { type Command, InvalidArgumentError } from "commander";
import {
  type Acks,
  Consumer,
  ErrorCode,
  Producer,
  SamsaError,
  type StartFrom,
} from "../../client/index.js";
import { createClient } from "../../shared/grpc/client.js";
import { gatewayService } from "../../shared/grpc/proto.js";
import { intAtLeast, parseAcks } from "./args.js";
import { DEFAULT_GATEWAYS, GATEWAY_ENV, gatewaysOf } from "./consumer-groups.js";
import { type CliContext, type GlobalOptions, globalsOf, withCluster } from "./context.js";
import {
  type ConsumerResult,
  clientSender,
  clientSource,
  gatewaySender,
  gatewaySource,
  type ProducerResult,
  runConsumerPerf,
  runProducerPerf,
} from "./perf-run.js";
import { PERF_REPORTING_INTERVAL_MS_DEFAULT } from "./perf-stats.js";

/** Records in flight by default (Kafka's tool has no such cap; the figures use 1000). */
export const PERF_CONCURRENCY_DEFAULT = 1000;
/** Default bound of one run, ms. */
export const PERF_MAX_DURATION_MS_DEFAULT = 600_000;
/** Default time a consumer waits for the next record before it ends, ms (Kafka's `--timeout`). */
export const PERF_CONSUMER_IDLE_TIMEOUT_MS_DEFAULT = 10_000;
/**
 * Records per Consume message by default with `--through-gateway` (`max_records_per_message`):
 * the gateway then fills each message with what one broker read brought, up to this many.
 */
export const PERF_GATEWAY_RECORDS_PER_MESSAGE_DEFAULT = 1000;

interface PerfCommon extends GlobalOptions {
  topic: string;
  throughGateway?: boolean;
  gateway?: string;
  partition?: number;
  maxDurationMs: number;
  reportingInterval: number;
  json?: boolean;
}

interface ProducerPerfOptions extends PerfCommon {
  numRecords: number;
  recordSize: number;
  throughput: number;
  acks: Acks;
  concurrency: number;
  lingerMs?: number;
  batchSize?: number;
  stampValues?: boolean;
}

interface ConsumerPerfOptions extends PerfCommon {
  messages: number;
  from: StartFrom;
  timeoutMs: number;
  endToEnd?: boolean;
  recordsPerMessage: number;
}

/** Commander parser of `--throughput`: -1 (unthrottled) or a positive rate. */
function parseThroughput(value: string): number {
  const n = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (n === -1 || (Number.isSafeInteger(n) && n > 0)) return n;
  throw new InvalidArgumentError("expected -1 (unthrottled) or records/sec > 0");
}

/** Commander parser of `consumer --from`: earliest, latest or an offset. */
function parseFrom(value: string): StartFrom {
  const v = value.trim().toLowerCase();
  if (v === "earliest" || v === "latest") return v;
  if (/^\d+$/.test(v)) return { offset: Number(v) };
  throw new InvalidArgumentError("expected earliest, latest or an offset");
}

function addCommon(cmd: Command): Command {
  return cmd
    .requiredOption("--topic <name>", "topic")
    .option("--through-gateway", "go through a gateway's Publish / Consume instead of the client")
    .option(
      "--gateway <host:port,...>",
      `gateway of --through-gateway, the first one (env ${GATEWAY_ENV}; default ${DEFAULT_GATEWAYS.join(",")})`,
    )
    .option("--partition <p>", "only this partition", intAtLeast(0))
    .option(
      "--max-duration-ms <ms>",
      "stop after this long",
      intAtLeast(1),
      PERF_MAX_DURATION_MS_DEFAULT,
    )
    .option(
      "--reporting-interval <ms>",
      "interval of the progress lines",
      intAtLeast(1),
      PERF_REPORTING_INTERVAL_MS_DEFAULT,
    )
    .option("--json", "print one JSON object with the results, nothing else");
}

/** Adds `perf-test producer` and `perf-test consumer` to `program`. */
export function addPerfTestCommand(program: Command, ctx: CliContext): void {
  const perf = program
    .command("perf-test")
    .description("measure produce and consume throughput and latency (kafka-*-perf-test)");
  addCommon(perf.command("producer").description("send records and measure"))
    .requiredOption("--num-records <n>", "records to send", intAtLeast(1))
    .requiredOption("--record-size <bytes>", "value size of each record", intAtLeast(1))
    .requiredOption("--throughput <n>", "records/sec at most; -1 = unthrottled", parseThroughput)
    .option("--acks <acks>", "0, 1 or all", parseAcks, "all")
    .option(
      "--concurrency <n>",
      "records unacknowledged at most (gateway: Publish calls in flight); 0 = no cap",
      intAtLeast(0),
      PERF_CONCURRENCY_DEFAULT,
    )
    .option("--linger-ms <ms>", "linger.ms of the client", intAtLeast(0))
    .option("--batch-size <bytes>", "batch.size of the client", intAtLeast(1))
    .option("--stamp-values", "write the send time into each value (for consumer --end-to-end)")
    .action(async (_opts: object, cmd: Command) => {
      await producerPerf(ctx, cmd.optsWithGlobals<ProducerPerfOptions>());
    });
  addCommon(perf.command("consumer").description("read records and measure"))
    .requiredOption("--messages <n>", "records to read", intAtLeast(1))
    .option("--from <where>", "earliest, latest or an offset", parseFrom, "earliest")
    .option(
      "--timeout-ms <ms>",
      "end after this long without a record",
      intAtLeast(1),
      PERF_CONSUMER_IDLE_TIMEOUT_MS_DEFAULT,
    )
    .option("--end-to-end", "report the latency from the values' send times (--stamp-values)")
    .option(
      "--records-per-message <n>",
      "with --through-gateway: records per Consume message at most (max_records_per_message; 1 = one record per message)",
      intAtLeast(1),
      PERF_GATEWAY_RECORDS_PER_MESSAGE_DEFAULT,
    )
    .action(async (_opts: object, cmd: Command) => {
      await consumerPerf(ctx, cmd.optsWithGlobals<ConsumerPerfOptions>());
    });
}

/** A gateway client of the first `--gateway` address, closed after `fn`. */
async function withGateway<T>(
  ctx: CliContext,
  opts: PerfCommon,
  fn: (client: ReturnType<typeof gatewayClient>, requestTimeoutMs: number) => Promise<T>,
): Promise<T> {
  const { settings } = globalsOf(opts, ctx.env);
  const client = gatewayClient(gatewaysOf(opts, ctx.env)[0]!);
  try {
    return await fn(client, settings.requestTimeoutMs);
  } finally {
    client.close();
  }
}

function gatewayClient(address: string) {
  return createClient(gatewayService.Client, address);
}

async function producerPerf(ctx: CliContext, o: ProducerPerfOptions): Promise<void> {
  const run = {
    numRecords: o.numRecords,
    recordSize: o.recordSize,
    throughput: o.throughput,
    concurrency: o.concurrency,
    maxDurationMs: o.maxDurationMs,
    reportingIntervalMs: o.reportingInterval,
    stampValues: o.stampValues === true,
    quiet: o.json === true,
  };
  let result: ProducerResult;
  if (o.throughGateway) {
    result = await withGateway(ctx, o, (client, timeoutMs) =>
      runProducerPerf(
        gatewaySender(client, o.topic, o.acks, timeoutMs, o.partition),
        run,
        ctx.stdout,
        ctx.signal,
      ),
    );
  } else {
    result = await withCluster(ctx, o, async (cluster, settings) => {
      const producer = new Producer({
        cluster,
        acks: o.acks,
        lingerMs: o.lingerMs,
        batchSizeBytes: o.batchSize,
        deliveryTimeoutMs: settings.apiTimeoutMs,
        requestTimeoutMs: settings.requestTimeoutMs,
        maxBlockMs: settings.apiTimeoutMs,
      });
      try {
        return await runProducerPerf(
          clientSender(producer, o.topic, o.partition),
          run,
          ctx.stdout,
          ctx.signal,
        );
      } finally {
        await producer.close().catch(() => undefined);
      }
    });
  }
  if (o.json) {
    const path = o.throughGateway ? "gateway" : "client";
    ctx.stdout.write(`${JSON.stringify({ type: "producer", path, topic: o.topic, ...result })}\n`);
  }
  if (result.failed > 0) {
    throw new SamsaError(
      ErrorCode.UNKNOWN,
      `${result.failed} records failed; the first: ${result.firstError}`,
    );
  }
}

async function consumerPerf(ctx: CliContext, o: ConsumerPerfOptions): Promise<void> {
  const run = {
    messages: o.messages,
    idleTimeoutMs: o.timeoutMs,
    maxDurationMs: o.maxDurationMs,
    reportingIntervalMs: o.reportingInterval,
    endToEnd: o.endToEnd === true,
    quiet: o.json === true,
  };
  let result: ConsumerResult;
  if (o.throughGateway) {
    result = await withGateway(ctx, o, (client) =>
      runConsumerPerf(
        gatewaySource(client, o.topic, o.from, o.messages, o.partition, o.recordsPerMessage),
        run,
        ctx.stdout,
        ctx.signal,
      ),
    );
  } else {
    result = await withCluster(ctx, o, (cluster, settings) => {
      const consumer = new Consumer({ cluster, requestTimeoutMs: settings.requestTimeoutMs });
      return runConsumerPerf(
        clientSource(consumer, o.topic, o.from, settings.apiTimeoutMs, o.partition),
        run,
        ctx.stdout,
        ctx.signal,
      );
    });
  }
  if (o.json) {
    const path = o.throughGateway ? "gateway" : "client";
    ctx.stdout.write(`${JSON.stringify({ type: "consumer", path, topic: o.topic, ...result })}\n`);
  }
}

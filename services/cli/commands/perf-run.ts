/**
 * The loops of `samsa perf-test`, apart from the command line so that benchmarks run the same
 * code (scripts/bench-clients.ts): {@link runProducerPerf} sends records through a
 * {@link RecordSender} (the client's `Producer.add` with a callback per record, a gateway's
 * `Publish` with one record per call, or a benchmark's own), throttled like Kafka's perf test and
 * with at most `concurrency` records unacknowledged; {@link runConsumerPerf} counts the records
 * of a {@link RecordSource} (the client's `Consumer.consume`, or a gateway's `Consume` stream).
 * Both are bounded in count and in time, and print kafka-*-perf-test's lines.
 */
import * as grpc from "@grpc/grpc-js";
import {
  type Acks,
  type Consumer,
  ErrorCode,
  type Producer,
  SamsaError,
  type StartFrom,
  toProtoAcks,
} from "../../client/index.js";
import type { ConsumeResponse__Output } from "../../shared/generated/samsa/v1/ConsumeResponse.js";
import type { PublishResponse__Output } from "../../shared/generated/samsa/v1/PublishResponse.js";
import { SpecialOffset } from "../../shared/generated/samsa/v1/SpecialOffset.js";
import { fromServiceError } from "../../shared/grpc/errors.js";
import type { GatewayServiceClient } from "../../shared/grpc/proto.js";
import type { TextOut } from "./output.js";
import {
  type LatencySummary,
  PerfReporter,
  PerfStats,
  percentileText,
  rateLine,
  Throttler,
} from "./perf-stats.js";

/** Distinct record values cycled through (Kafka's perf test keeps a payload pool too). */
export const PERF_VALUE_POOL_SIZE = 64;
/** Bytes at the start of a stamped value: its send time (float64, ms since the epoch). */
export const PERF_STAMP_BYTES = 8;
/** How often the consumer checks its idle timeout and deadline, ms. */
export const PERF_CONSUMER_CHECK_INTERVAL_MS = 100;
/** Longest wait for the records still unacknowledged when sending stops, ms. */
export const PERF_DRAIN_TIMEOUT_MS = 60_000;

/** One way of sending records. */
export interface RecordSender {
  /**
   * Sends one record; calls `done` exactly once with its outcome. A returned promise is waited
   * for before the next record (the client's `add` waits for buffer room).
   */
  send(value: Buffer, done: (err: Error | null) => void): Promise<unknown> | undefined;
  /** Pushes out whatever is buffered (resolves when it is acknowledged, or at once). */
  flush(): Promise<void>;
}

/** Settings of {@link runProducerPerf}. */
export interface ProducerRun {
  readonly numRecords: number;
  readonly recordSize: number;
  /** Records/s; -1 = unthrottled. */
  readonly throughput: number;
  /** Records sent and not acknowledged, at most; 0 = no cap of the tool's own. */
  readonly concurrency: number;
  /** Sending stops after this long, ms. */
  readonly maxDurationMs: number;
  readonly reportingIntervalMs: number;
  /** Writes each record's send time into its first {@link PERF_STAMP_BYTES} bytes. */
  readonly stampValues: boolean;
  /** No progress lines (the caller prints the result, e.g. as JSON). */
  readonly quiet: boolean;
}

/** What a producer run measured. */
export interface ProducerResult {
  readonly records: number;
  readonly failed: number;
  readonly firstError?: string;
  readonly bytes: number;
  readonly elapsedMs: number;
  readonly recordsPerSec: number;
  readonly mbPerSec: number;
  /** Send to acknowledgement, ms. */
  readonly latencyMs?: LatencySummary;
  /** Stopped by its time bound or the signal before sending every record. */
  readonly cutShort: boolean;
}

function valuePool(size: number): Buffer[] {
  return Array.from({ length: PERF_VALUE_POOL_SIZE }, (_, b) => {
    const v = Buffer.allocUnsafe(size);
    for (let j = 0; j < size; j++) v[j] = 0x41 + ((b * 31 + j * 7) % 26);
    return v;
  });
}

/** Now as ms since the epoch with sub-millisecond precision (comparable across processes). */
export function epochNowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Sends `run.numRecords` records through `sender` and prints the producer perf test's lines. */
export async function runProducerPerf(
  sender: RecordSender,
  run: ProducerRun,
  out: TextOut,
  signal?: AbortSignal,
): Promise<ProducerResult> {
  const stats = new PerfStats(run.numRecords);
  const reporter = new PerfReporter(out, run.numRecords, run.quiet);
  reporter.start(stats, "sent", run.reportingIntervalMs);
  const values = valuePool(run.recordSize);
  const stamp = run.stampValues && run.recordSize >= PERF_STAMP_BYTES;
  let inflight = 0;
  let failed = 0;
  let firstError: Error | undefined;
  let wake: (() => void) | undefined;
  let lastDoneMs = stats.startMs;
  const cap = run.concurrency;
  const t0 = stats.startMs;
  const deadline = t0 + run.maxDurationMs;
  const throttler = new Throttler(run.throughput, t0);
  let sent = 0;
  try {
    for (; sent < run.numRecords; sent++) {
      if (cap > 0 && inflight >= cap) await new Promise<void>((r) => (wake = r));
      const start = performance.now();
      if (start > deadline || signal?.aborted) break;
      let value = values[sent % PERF_VALUE_POOL_SIZE]!;
      if (stamp) {
        value = Buffer.from(value);
        value.writeDoubleLE(epochNowMs(), 0);
      }
      inflight++;
      const wait = sender.send(value, (err) => {
        inflight--;
        lastDoneMs = performance.now();
        if (err === null) stats.record(run.recordSize, lastDoneMs - start);
        else {
          failed++;
          firstError ??= err;
        }
        if (wake !== undefined && (cap === 0 || inflight < cap)) {
          const w = wake;
          wake = undefined;
          w();
        }
      });
      if (wait !== undefined) await wait;
      if (throttler.shouldThrottle(sent + 1, start)) await throttler.throttle();
    }
    await drain(sender, () => inflight === 0);
  } finally {
    reporter.stop();
  }
  const elapsedMs = Math.max(lastDoneMs - t0, 0.001);
  const latencyMs = stats.latency();
  const result: ProducerResult = {
    records: stats.count,
    failed,
    firstError: firstError?.message,
    bytes: stats.bytes,
    elapsedMs,
    recordsPerSec: (stats.count * 1000) / elapsedMs,
    mbPerSec: stats.bytes / 1e6 / (elapsedMs / 1000),
    latencyMs,
    cutShort: sent < run.numRecords,
  };
  if (!run.quiet) {
    const line = rateLine(result.records, result.bytes, elapsedMs, "sent", latencyMs);
    out.write(`${line}${latencyMs === undefined ? "" : percentileText(latencyMs)}.\n`);
  }
  return result;
}

/** Flushes `sender` and waits (bounded) until `idle()`. */
async function drain(sender: RecordSender, idle: () => boolean): Promise<void> {
  const deadline = performance.now() + PERF_DRAIN_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    sender.flush().catch(() => undefined),
    new Promise<void>((r) => {
      timer = setTimeout(r, PERF_DRAIN_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  while (!idle() && performance.now() < deadline) {
    await new Promise<void>((r) => setTimeout(r, 5));
  }
}

/** The client's batching: `Producer.add` with a delivery callback per record. */
export function clientSender(producer: Producer, topic: string, partition?: number): RecordSender {
  return {
    send: (value, done) => producer.add(topic, { value, partition }, (err) => done(err)),
    flush: () => producer.flush(),
  };
}

/**
 * A gateway's `Publish`, one record per call, from a plain grpc-js client of the .proto (what a
 * user of another language does); a record's error code fails it.
 */
export function gatewaySender(
  client: GatewayServiceClient,
  topic: string,
  acks: Acks,
  requestTimeoutMs: number,
  partition?: number,
): RecordSender {
  const protoAcks = toProtoAcks(acks);
  return {
    send: (value, done) => {
      client.Publish(
        { topic, records: [{ value, partition }], acks: protoAcks },
        { deadline: Date.now() + requestTimeoutMs },
        (err, res) => {
          if (err) return done(fromServiceError(err));
          const r = res?.results[0];
          const code = Number(r?.errorCode ?? ErrorCode.UNKNOWN);
          done(code === 0 ? null : new SamsaError(code, r?.errorMessage || "publish failed"));
        },
      );
      return undefined;
    },
    flush: () => Promise.resolve(),
  };
}

/**
 * A gateway's `PublishStream`, one record per request on one stream, from a plain grpc-js
 * client: the answers come in request order, so each completes the oldest request waiting; a
 * write the stream cannot take yet (its buffer full: the gateway's flow control) waits for
 * `drain`. `flush` ends the stream once every request is answered.
 */
export function gatewayStreamSender(
  client: GatewayServiceClient,
  topic: string,
  acks: Acks,
  partition?: number,
): RecordSender {
  const protoAcks = toProtoAcks(acks);
  const call = client.PublishStream();
  const waiting: ((err: Error | null) => void)[] = [];
  let failure: Error | undefined;
  let next = 0;
  call.on("data", (res: PublishResponse__Output) => {
    const r = res.results[0];
    const code = Number(r?.errorCode ?? ErrorCode.UNKNOWN);
    waiting.shift()?.(
      code === 0 ? null : new SamsaError(code, r?.errorMessage || "publish failed"),
    );
  });
  call.on("error", (err: grpc.ServiceError) => {
    failure = fromServiceError(err);
    for (const done of waiting.splice(0)) done(failure);
  });
  call.on("end", () => {
    for (const done of waiting.splice(0)) done(new Error("the stream ended unanswered"));
  });
  return {
    send: (value, done) => {
      if (failure !== undefined) {
        done(failure);
        return undefined;
      }
      waiting.push(done);
      const ok = call.write({
        topic,
        acks: protoAcks,
        requestId: String(next++),
        records: [{ value, partition }],
      });
      return ok ? undefined : new Promise<void>((resolve) => call.once("drain", resolve));
    },
    flush: async () => {
      call.end();
    },
  };
}

/** A stream of records: calls `onRecord` with each value until it returns false or the end. */
export interface RecordSource {
  run(onRecord: (value: Buffer | null) => boolean, signal: AbortSignal): Promise<void>;
}

/** Settings of {@link runConsumerPerf}. */
export interface ConsumerRun {
  readonly messages: number;
  /** Ends after this long without a record, ms (Kafka's `--timeout`). */
  readonly idleTimeoutMs: number;
  /** Ends after this long in all, ms. */
  readonly maxDurationMs: number;
  readonly reportingIntervalMs: number;
  /** Each value's first bytes are a send time: report send-to-receive latency. */
  readonly endToEnd: boolean;
  readonly quiet: boolean;
}

/** What a consumer run measured. */
export interface ConsumerResult {
  readonly records: number;
  readonly bytes: number;
  /** From the start (metadata and offsets included) to the last record, ms. */
  readonly elapsedMs: number;
  /** From the start to the first record, ms (the column Kafka calls rebalance.time.ms). */
  readonly firstRecordMs: number;
  readonly recordsPerSec: number;
  readonly mbPerSec: number;
  /** Stamp to receipt, ms, with `endToEnd`. */
  readonly latencyMs?: LatencySummary;
  /** Ended by the idle timeout or the time bound before `messages` records. */
  readonly timedOut: boolean;
}

/** Reads `run.messages` records from `source` and prints the consumer perf test's lines. */
export async function runConsumerPerf(
  source: RecordSource,
  run: ConsumerRun,
  out: TextOut,
  signal?: AbortSignal,
): Promise<ConsumerResult> {
  const stats = new PerfStats(run.endToEnd ? run.messages : 0);
  const reporter = new PerfReporter(out, run.messages, run.quiet);
  reporter.start(stats, "consumed", run.reportingIntervalMs);
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  const t0 = stats.startMs;
  let firstMs = Number.NaN;
  let lastSeen = 0;
  let lastProgressMs = t0;
  let timedOut = false;
  const check = setInterval(() => {
    const now = performance.now();
    if (stats.count !== lastSeen) {
      lastSeen = stats.count;
      lastProgressMs = now;
    } else if (now - lastProgressMs > run.idleTimeoutMs || now - t0 > run.maxDurationMs) {
      timedOut = true;
      stop.abort();
    }
  }, PERF_CONSUMER_CHECK_INTERVAL_MS);
  const endToEnd = run.endToEnd;
  const messages = run.messages;
  try {
    await source.run((value) => {
      if (stats.count === 0) firstMs = performance.now();
      const bytes = value === null ? 0 : value.length;
      if (endToEnd && value !== null && bytes >= PERF_STAMP_BYTES) {
        stats.record(bytes, epochNowMs() - value.readDoubleLE(0));
      } else stats.record(bytes);
      return stats.count < messages;
    }, stop.signal);
  } finally {
    clearInterval(check);
    signal?.removeEventListener("abort", onAbort);
    reporter.stop();
  }
  const endMs = stats.count >= messages ? performance.now() : lastProgressMs;
  const elapsedMs = Math.max(endMs - t0, 0.001);
  const result: ConsumerResult = {
    records: stats.count,
    bytes: stats.bytes,
    elapsedMs,
    firstRecordMs: Number.isNaN(firstMs) ? elapsedMs : firstMs - t0,
    recordsPerSec: (stats.count * 1000) / elapsedMs,
    mbPerSec: stats.bytes / 1e6 / (elapsedMs / 1000),
    latencyMs: stats.latency(),
    timedOut: timedOut && stats.count < messages,
  };
  if (!run.quiet) out.write(consumerReport(result, t0));
  return result;
}

/** kafka-consumer-perf-test's header and line, then the end-to-end latency when measured. */
function consumerReport(r: ConsumerResult, t0: number): string {
  const at = (ms: number) => new Date(performance.timeOrigin + ms).toISOString();
  const fetchMs = Math.max(r.elapsedMs - r.firstRecordMs, 0.001);
  const mb = r.bytes / 1e6;
  const lines = [
    "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec",
    [
      at(t0),
      at(t0 + r.elapsedMs),
      mb.toFixed(4),
      r.mbPerSec.toFixed(4),
      r.records,
      r.recordsPerSec.toFixed(4),
      r.firstRecordMs.toFixed(0),
      fetchMs.toFixed(0),
      (mb / (fetchMs / 1000)).toFixed(4),
      ((r.records * 1000) / fetchMs).toFixed(4),
    ].join(", "),
  ];
  if (r.timedOut) {
    lines.unshift(
      `WARNING: Exiting before consuming the expected number of messages: only ${r.records} records within the timeouts.`,
    );
  }
  const l = r.latencyMs;
  if (l !== undefined) {
    lines.push(
      `end-to-end latency: ${l.avg.toFixed(2)} ms avg, ${l.max.toFixed(2)} ms max${percentileText(l)}.`,
    );
  }
  return lines.map((x) => `${x}\n`).join("");
}

/** The client's `Consumer.consume` async iteration. */
export function clientSource(
  consumer: Consumer,
  topic: string,
  from: StartFrom,
  startTimeoutMs: number,
  partition?: number,
): RecordSource {
  return {
    run: async (onRecord, signal) => {
      const records = consumer.consume(topic, {
        from,
        signal,
        startTimeoutMs,
        partitions: partition === undefined ? undefined : [partition],
      });
      for await (const r of records) if (!onRecord(r.value)) break;
    },
  };
}

/**
 * A gateway's `Consume` stream (decoded records as messages), from a plain grpc-js client; with
 * `recordsPerMessage` > 1 it asks for up to that many records per message
 * (`max_records_per_message`).
 */
export function gatewaySource(
  client: GatewayServiceClient,
  topic: string,
  from: StartFrom,
  messages: number,
  partition?: number,
  recordsPerMessage = 1,
): RecordSource {
  const start =
    from === "earliest"
      ? { special: SpecialOffset.SPECIAL_OFFSET_EARLIEST }
      : from === "latest"
        ? { special: SpecialOffset.SPECIAL_OFFSET_LATEST }
        : "offset" in from
          ? { offset: String(from.offset) }
          : { timestamp: String(from.timestamp) };
  return {
    run: (onRecord, signal) =>
      new Promise<void>((resolve, reject) => {
        const call = client.Consume({
          topic,
          partition,
          maxMessages: messages,
          maxRecordsPerMessage: recordsPerMessage,
          ...start,
        });
        let ended = false;
        const end = (err?: unknown): void => {
          if (ended) return;
          ended = true;
          signal.removeEventListener("abort", onAbort);
          call.cancel();
          if (err === undefined) resolve();
          else reject(fromServiceError(err));
        };
        const onAbort = (): void => end();
        signal.addEventListener("abort", onAbort, { once: true });
        call.on("data", (m: ConsumeResponse__Output) => {
          if (ended) return;
          if (recordsPerMessage <= 1) {
            if (!onRecord(m.value ?? null)) end();
            return;
          }
          for (const r of m.records) {
            if (!onRecord(r.value ?? null)) {
              end();
              return;
            }
          }
        });
        call.on("end", () => end());
        call.on("error", (err: grpc.ServiceError) => {
          if (err.code === grpc.status.CANCELLED) end();
          else end(err);
        });
      }),
  };
}

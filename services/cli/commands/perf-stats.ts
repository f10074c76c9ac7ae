/**
 * The measuring half of `samsa perf-test`: Kafka's perf-test `Stats` (a window printed every
 * reporting interval, totals with percentiles at the end), its `ThroughputThrottler`, the
 * progress bar shown on a terminal, and the lines printed, in the shape of
 * `kafka-producer-perf-test` and `kafka-consumer-perf-test`.
 */
import { MultiBar, type SingleBar } from "cli-progress";
import type { TextOut } from "./output.js";

/** Decimal megabyte: every MB/sec figure uses 10^6 bytes, as Kafka's tools do. */
export const PERF_MB_BYTES = 1_000_000;
/** Default interval of the progress lines, ms (Kafka's `--reporting-interval`). */
export const PERF_REPORTING_INTERVAL_MS_DEFAULT = 5_000;
/**
 * Most latencies kept for the percentiles: past it, every k-th record is sampled (Kafka's
 * perf test samples to 500,000 the same way), so memory stays bounded for any record count.
 */
export const PERF_LATENCY_SAMPLES_MAX = 1_000_000;
/** Interval of the progress bar's updates, ms. */
export const PERF_BAR_INTERVAL_MS = 250;
/** Shortest sleep of the throttler, ms (Kafka's `MIN_SLEEP_NS`, 2 ms). */
export const THROTTLE_SLEEP_MS_MIN = 2;

/** Latency figures of a run, ms. */
export interface LatencySummary {
  readonly avg: number;
  readonly max: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly p999: number;
}

/** Counts records, bytes and latencies; keeps a window for the progress lines. */
export class PerfStats {
  count = 0;
  bytes = 0;
  readonly startMs = performance.now();
  private latencySum = 0;
  private latencyMax = 0;
  private latencyCount = 0;
  private readonly samples: Float64Array;
  private readonly sampleEvery: number;
  private sampled = 0;
  private windowStartMs = this.startMs;
  private windowCount = 0;
  private windowBytes = 0;
  private windowLatencySum = 0;
  private windowLatencyMax = 0;
  private windowLatencyCount = 0;

  /** @param expected The records the run expects (sizes the latency sample). */
  constructor(expected: number) {
    this.sampleEvery = Math.max(1, Math.ceil(expected / PERF_LATENCY_SAMPLES_MAX));
    this.samples = new Float64Array(Math.min(PERF_LATENCY_SAMPLES_MAX, Math.max(1, expected)));
  }

  /** One record of `bytes` done, with its latency in ms (undefined: none measured). */
  record(bytes: number, latencyMs?: number): void {
    this.count++;
    this.bytes += bytes;
    this.windowCount++;
    this.windowBytes += bytes;
    if (latencyMs === undefined) return;
    this.latencySum += latencyMs;
    this.windowLatencySum += latencyMs;
    this.latencyCount++;
    this.windowLatencyCount++;
    if (latencyMs > this.latencyMax) this.latencyMax = latencyMs;
    if (latencyMs > this.windowLatencyMax) this.windowLatencyMax = latencyMs;
    if (this.latencyCount % this.sampleEvery === 0 && this.sampled < this.samples.length) {
      this.samples[this.sampled++] = latencyMs;
    }
  }

  /** Whether any latency was recorded. */
  get hasLatency(): boolean {
    return this.latencyCount > 0;
  }

  /** The window since the last call, as a progress line; starts a new window. */
  windowLine(verb: string): string {
    const now = performance.now();
    const line = `${rateLine(
      this.windowCount,
      this.windowBytes,
      now - this.windowStartMs,
      verb,
      this.windowLatencyCount > 0
        ? { avg: this.windowLatencySum / this.windowLatencyCount, max: this.windowLatencyMax }
        : undefined,
    )}.`;
    this.windowStartMs = now;
    this.windowCount = 0;
    this.windowBytes = 0;
    this.windowLatencySum = 0;
    this.windowLatencyMax = 0;
    this.windowLatencyCount = 0;
    return line;
  }

  /** Average, max and percentiles of the recorded latencies; undefined without any. */
  latency(): LatencySummary | undefined {
    if (this.latencyCount === 0) return undefined;
    const sorted = this.samples.slice(0, this.sampled).sort();
    const at = (p: number): number =>
      sorted.length === 0
        ? Number.NaN
        : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
    return {
      avg: this.latencySum / this.latencyCount,
      max: this.latencyMax,
      p50: at(0.5),
      p95: at(0.95),
      p99: at(0.99),
      p999: at(0.999),
    };
  }
}

/** `n records sent, r records/sec (m MB/sec), a ms avg latency, x ms max latency` (no final stop). */
export function rateLine(
  count: number,
  bytes: number,
  ms: number,
  verb: string,
  latency: Pick<LatencySummary, "avg" | "max"> | undefined,
): string {
  const secs = ms / 1000;
  const rps = secs > 0 ? count / secs : 0;
  const mbps = secs > 0 ? bytes / PERF_MB_BYTES / secs : 0;
  const lat =
    latency === undefined
      ? ""
      : `, ${latency.avg.toFixed(2)} ms avg latency, ${latency.max.toFixed(2)} ms max latency`;
  return `${count} records ${verb}, ${rps.toFixed(1)} records/sec (${mbps.toFixed(2)} MB/sec)${lat}`;
}

/** `, p ms 50th, p ms 95th, p ms 99th, p ms 99.9th` (ms with two decimals: sub-ms matters here). */
export function percentileText(l: LatencySummary): string {
  return `, ${l.p50.toFixed(2)} ms 50th, ${l.p95.toFixed(2)} ms 95th, ${l.p99.toFixed(2)} ms 99th, ${l.p999.toFixed(2)} ms 99.9th`;
}

/**
 * Kafka's `ThroughputThrottler`: with a positive target (records/s), `shouldThrottle` says when
 * the rate so far is above it, and `throttle` sleeps the deficit once it reaches
 * {@link THROTTLE_SLEEP_MS_MIN}; a negative target never throttles.
 */
export class Throttler {
  private readonly sleepMsPerRecord: number;
  private deficitMs = 0;

  constructor(
    private readonly targetPerSec: number,
    private readonly startMs: number,
  ) {
    this.sleepMsPerRecord = targetPerSec > 0 ? 1000 / targetPerSec : 0;
  }

  /** Whether `sentSoFar` records by `nowMs` are above the target rate. */
  shouldThrottle(sentSoFar: number, nowMs: number): boolean {
    if (this.targetPerSec <= 0) return false;
    const elapsedSec = (nowMs - this.startMs) / 1000;
    return elapsedSec > 0 && sentSoFar / elapsedSec > this.targetPerSec;
  }

  /** Adds one record's share to the deficit; sleeps it off once it is long enough. */
  async throttle(): Promise<void> {
    this.deficitMs += this.sleepMsPerRecord;
    if (this.deficitMs < THROTTLE_SLEEP_MS_MIN) return;
    const ms = this.deficitMs;
    this.deficitMs = 0;
    await new Promise<void>((resolve) => setTimeout(resolve, ms));
  }
}

/** Where the progress of a run goes: lines, and a bar when the output is a terminal. */
export class PerfReporter {
  private readonly bars: MultiBar | undefined;
  private readonly bar: SingleBar | undefined;
  private timer: NodeJS.Timeout | undefined;
  private barTimer: NodeJS.Timeout | undefined;

  /**
   * @param out Where lines go (nowhere with `quiet`, for `--json`).
   * @param total Records expected (the bar's end).
   */
  constructor(
    private readonly out: TextOut,
    total: number,
    private readonly quiet: boolean,
  ) {
    const tty = out as Partial<NodeJS.WriteStream>;
    if (!quiet && tty.isTTY === true) {
      this.bars = new MultiBar({
        stream: out as NodeJS.WriteStream,
        format: " {bar} {percentage}% | {value}/{total} records | {rate} records/s | ETA {eta}s",
        hideCursor: true,
        clearOnComplete: true,
      });
      this.bar = this.bars.create(total, 0, { rate: "0" });
    }
  }

  /**
   * Prints `stats`' window line every `intervalMs`, and moves the bar every
   * {@link PERF_BAR_INTERVAL_MS} (from a timer: nothing is done per record), until {@link stop}.
   */
  start(stats: PerfStats, verb: string, intervalMs: number): void {
    this.timer = setInterval(() => this.line(stats.windowLine(verb)), intervalMs);
    this.timer.unref();
    if (this.bar === undefined) return;
    const bar = this.bar;
    this.barTimer = setInterval(() => {
      const ms = performance.now() - stats.startMs;
      bar.update(stats.count, { rate: ms > 0 ? ((stats.count * 1000) / ms).toFixed(0) : "0" });
    }, PERF_BAR_INTERVAL_MS);
    this.barTimer.unref();
  }

  /** Prints a line (above the bar when there is one). */
  line(text: string): void {
    if (this.quiet) return;
    if (this.bars !== undefined) this.bars.log(`${text}\n`);
    else this.out.write(`${text}\n`);
  }

  /** Stops the lines and removes the bar. */
  stop(): void {
    clearInterval(this.timer);
    clearInterval(this.barTimer);
    this.bars?.stop();
  }
}

/**
 * Per-partition log configuration, with Kafka's topic-level names and defaults. A broker builds
 * one from its own `log.*` defaults overridden by the topic's configs; it is validated once and
 * frozen, then handed to {@link PartitionLog}.
 */
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { BATCH_BYTES_MAX } from "../../shared/record-batch/layout.js";

/** Milliseconds in a day. */
const DAY_MS = 24 * 60 * 60 * 1000;

/** The smallest segment accepted (Kafka: 14 bytes; we need at least one batch header). */
export const SEGMENT_BYTES_MIN = 1024;
/** Segments are addressed with int32 positions, so a segment never exceeds 2 GiB - 1. */
export const SEGMENT_BYTES_MAX = 2 ** 31 - 1;
/** Default `segment.bytes`: 1 GiB. */
export const SEGMENT_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** Default `segment.ms`: 7 days. */
export const SEGMENT_MS_DEFAULT = 7 * DAY_MS;
/** Default `retention.ms`: 7 days. */
export const RETENTION_MS_DEFAULT = 7 * DAY_MS;
/** Default `index.interval.bytes`: one offset-index entry per 4 KiB of log. */
export const INDEX_INTERVAL_BYTES_DEFAULT = 4096;
/** Default `segment.index.bytes`: 10 MiB per index file. */
export const SEGMENT_INDEX_BYTES_DEFAULT = 10 * 1024 * 1024;
/** Default `max.message.bytes` (largest batch): 1 MiB + Kafka's 12 bytes of log overhead. */
export const MAX_MESSAGE_BYTES_DEFAULT = 1024 * 1024 + 12;
/** Default `file.delete.delay.ms`: deleted segments linger this long for in-flight reads. */
export const FILE_DELETE_DELAY_MS_DEFAULT = 60_000;
/** "No limit" for retention and flush settings (Kafka uses -1 / Long.MAX_VALUE). */
export const UNLIMITED = -1;

/** Validated, frozen configuration of one partition log. */
export interface LogConfig {
  /** `segment.bytes`: roll when the active segment would exceed this size. */
  readonly segmentBytes: number;
  /** `segment.ms`: roll when the active segment's first batch is older than this. */
  readonly segmentMs: number;
  /** `segment.jitter.ms`: random jitter subtracted from `segment.ms` per segment. */
  readonly segmentJitterMs: number;
  /** `index.interval.bytes`: bytes of log between two offset-index entries. */
  readonly indexIntervalBytes: number;
  /** `segment.index.bytes`: size cap of one index file; a full index rolls the segment. */
  readonly segmentIndexBytes: number;
  /** `retention.ms`: delete segments whose newest record is older; -1 keeps forever. */
  readonly retentionMs: number;
  /** `retention.bytes`: delete oldest segments while the log is larger; -1 = no limit. */
  readonly retentionBytes: number;
  /** `flush.messages`: fsync after this many messages; -1 = leave it to `flush.ms`/the OS. */
  readonly flushMessages: number;
  /** `flush.ms`: fsync when the last flush is this old; -1 = never on a timer. */
  readonly flushMs: number;
  /** `flush.strict`: fsync before an append resolves (group commit). */
  readonly flushStrict: boolean;
  /** `max.message.bytes`: largest record batch accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** `file.delete.delay.ms`: delay before a deleted segment's files are closed and removed. */
  readonly fileDeleteDelayMs: number;
}

/** Kafka's defaults. */
export const DEFAULT_LOG_CONFIG: LogConfig = Object.freeze({
  segmentBytes: SEGMENT_BYTES_DEFAULT,
  segmentMs: SEGMENT_MS_DEFAULT,
  segmentJitterMs: 0,
  indexIntervalBytes: INDEX_INTERVAL_BYTES_DEFAULT,
  segmentIndexBytes: SEGMENT_INDEX_BYTES_DEFAULT,
  retentionMs: RETENTION_MS_DEFAULT,
  retentionBytes: UNLIMITED,
  flushMessages: UNLIMITED,
  flushMs: UNLIMITED,
  flushStrict: false,
  maxMessageBytes: MAX_MESSAGE_BYTES_DEFAULT,
  fileDeleteDelayMs: FILE_DELETE_DELAY_MS_DEFAULT,
});

/** Kafka topic-config name → field, for parsing string properties. */
export const LOG_CONFIG_NAMES: Readonly<Record<string, keyof LogConfig>> = Object.freeze({
  "segment.bytes": "segmentBytes",
  "segment.ms": "segmentMs",
  "segment.jitter.ms": "segmentJitterMs",
  "index.interval.bytes": "indexIntervalBytes",
  "segment.index.bytes": "segmentIndexBytes",
  "retention.ms": "retentionMs",
  "retention.bytes": "retentionBytes",
  "flush.messages": "flushMessages",
  "flush.ms": "flushMs",
  "flush.strict": "flushStrict",
  "max.message.bytes": "maxMessageBytes",
  "file.delete.delay.ms": "fileDeleteDelayMs",
});

function invalid(field: string, why: string): SamsaError {
  return new SamsaError(ErrorCode.INVALID_CONFIG, `invalid log config ${field}: ${why}`);
}

function checkRange(field: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(field, `${value} is not an integer in [${min}, ${max}]`);
  }
}

/** Validates and freezes a full config. Throws INVALID_CONFIG naming the first bad field. */
export function validateLogConfig(c: LogConfig): LogConfig {
  checkRange("segment.bytes", c.segmentBytes, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
  checkRange("segment.ms", c.segmentMs, 1, Number.MAX_SAFE_INTEGER);
  checkRange("segment.jitter.ms", c.segmentJitterMs, 0, c.segmentMs - 1);
  checkRange("index.interval.bytes", c.indexIntervalBytes, 0, SEGMENT_BYTES_MAX);
  checkRange("segment.index.bytes", c.segmentIndexBytes, 12 * 4, SEGMENT_BYTES_MAX);
  checkRange("retention.ms", c.retentionMs, UNLIMITED, Number.MAX_SAFE_INTEGER);
  checkRange("retention.bytes", c.retentionBytes, UNLIMITED, Number.MAX_SAFE_INTEGER);
  checkRange("flush.messages", c.flushMessages, UNLIMITED, Number.MAX_SAFE_INTEGER);
  checkRange("flush.ms", c.flushMs, UNLIMITED, Number.MAX_SAFE_INTEGER);
  checkRange("max.message.bytes", c.maxMessageBytes, 61, BATCH_BYTES_MAX);
  checkRange("file.delete.delay.ms", c.fileDeleteDelayMs, 0, Number.MAX_SAFE_INTEGER);
  if (c.flushMessages === 0) throw invalid("flush.messages", "0 is not allowed (use 1 or -1)");
  if (c.retentionMs === 0) throw invalid("retention.ms", "0 is not allowed (use -1 or > 0)");
  if (typeof c.flushStrict !== "boolean") throw invalid("flush.strict", "not a boolean");
  return Object.freeze({ ...c });
}

function parseValue(name: string, field: keyof LogConfig, raw: string): number | boolean {
  const text = raw.trim();
  if (field === "flushStrict") {
    if (text === "true") return true;
    if (text === "false") return false;
    throw invalid(name, `"${raw}" is not true or false`);
  }
  if (!/^-?\d+$/.test(text)) throw invalid(name, `"${raw}" is not an integer`);
  const n = Number(text);
  // Kafka writes "no limit" as Long.MAX_VALUE; accept it as unlimited.
  if (!Number.isSafeInteger(n)) {
    if (n > 0 && field !== "segmentBytes" && field !== "maxMessageBytes") return UNLIMITED;
    throw invalid(name, `"${raw}" is out of range`);
  }
  return n;
}

/**
 * Builds a config from Kafka-named string properties over `base`. Unknown names are rejected,
 * so a typo never silently falls back to a default.
 */
export function logConfigFromProperties(
  props: Readonly<Record<string, string>>,
  base: LogConfig = DEFAULT_LOG_CONFIG,
): LogConfig {
  const out: Record<string, number | boolean> = { ...base };
  for (const [name, raw] of Object.entries(props)) {
    const field = LOG_CONFIG_NAMES[name];
    if (field === undefined) throw invalid(name, "unknown log config");
    out[field] = parseValue(name, field, raw);
  }
  return validateLogConfig(out as unknown as LogConfig);
}

/**
 * The storage settings of one partition log, with Kafka's topic-level names and defaults, and
 * the broker-wide log defaults they come from. A broker builds one {@link LogConfig} from its
 * `log.*` keys (`brokerLogConfig` in `services.ts`) overridden by the topic's configs
 * (`topicLogConfig` in `topic-config.ts`); it is validated once and frozen, then handed to the
 * broker's partition log. Every limit and default here is the one the config schema, the
 * controller's topic validation and the broker's storage use.
 */
import { ErrorCode, SamsaError } from "../errors.js";
import { BATCH_BYTES_MAX, BATCH_HEADER_BYTES } from "../record-batch/layout.js";

/** Milliseconds in an hour and in a day. */
export const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

/** "No limit" for retention and flush settings (Kafka writes -1, or Long.MAX_VALUE). */
export const UNLIMITED = -1;
/** The smallest segment accepted (Kafka: 14 bytes; we need at least one batch header). */
export const SEGMENT_BYTES_MIN = 1024;
/** Segments are addressed with int32 positions, so a segment never exceeds 2 GiB - 1. */
export const SEGMENT_BYTES_MAX = 2 ** 31 - 1;
/** Default `segment.bytes` / `log.segment.bytes`: 1 GiB. */
export const SEGMENT_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** Default `segment.ms` / `log.roll.hours`: 7 days. */
export const SEGMENT_MS_DEFAULT = 7 * DAY_MS;
/** Default `retention.ms` / `log.retention.hours`: 7 days. */
export const RETENTION_MS_DEFAULT = 7 * DAY_MS;
/** Default `index.interval.bytes`: one offset-index entry per 4 KiB of log. */
export const INDEX_INTERVAL_BYTES_DEFAULT = 4096;
/** Smallest `segment.index.bytes`: room for four 12-byte time-index entries. */
export const SEGMENT_INDEX_BYTES_MIN = 4 * 12;
/** Default `segment.index.bytes` / `log.index.size.max.bytes`: 10 MiB per index file. */
export const SEGMENT_INDEX_BYTES_DEFAULT = 10 * 1024 * 1024;
/** Smallest `max.message.bytes`: a batch header with no records. */
export const MAX_MESSAGE_BYTES_MIN = BATCH_HEADER_BYTES;
/** Default `max.message.bytes` / `message.max.bytes`: 1 MiB + Kafka's 12 bytes of log overhead. */
export const MAX_MESSAGE_BYTES_DEFAULT = 1024 * 1024 + 12;
/** Default `file.delete.delay.ms`: deleted segments linger this long for in-flight reads. */
export const FILE_DELETE_DELAY_MS_DEFAULT = 60_000;
/** Default `log.retention.check.interval.ms`: 5 minutes, Kafka's. */
export const RETENTION_CHECK_INTERVAL_MS_DEFAULT = 5 * 60 * 1000;
/** Default `log.flush.scheduler.interval.ms`: how often `flush.ms` is checked. */
export const FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT = 1000;
/** Default `producer.id.expiration.ms`: a producer's state goes a day after its last write. */
export const PRODUCER_ID_EXPIRATION_MS_DEFAULT = 86_400_000;
/** Default `producer.id.expiration.check.interval.ms`: how often expiry runs (Kafka's 10 min). */
export const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT = 600_000;
/** Logs opened at once during start-up (Kafka's `num.recovery.threads.per.data.dir`). */
export const RECOVERY_CONCURRENCY_DEFAULT = 2;

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

/**
 * Validates and freezes a full config. Throws INVALID_CONFIG naming the first bad field by its
 * topic-config name and its value; `what` starts the message ("log config", "topic config").
 */
export function validateLogConfig(c: LogConfig, what = "log config"): LogConfig {
  const invalid = (field: string, why: string) =>
    new SamsaError(ErrorCode.INVALID_CONFIG, `invalid ${what} ${field}: ${why}`);
  const checkRange = (field: string, value: number, min: number, max: number) => {
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw invalid(field, `${value} is not an integer in [${min}, ${max}]`);
    }
  };
  const safeMax = Number.MAX_SAFE_INTEGER;
  checkRange("segment.bytes", c.segmentBytes, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
  checkRange("segment.ms", c.segmentMs, 1, safeMax);
  checkRange("segment.jitter.ms", c.segmentJitterMs, 0, c.segmentMs - 1);
  checkRange("index.interval.bytes", c.indexIntervalBytes, 0, SEGMENT_BYTES_MAX);
  checkRange(
    "segment.index.bytes",
    c.segmentIndexBytes,
    SEGMENT_INDEX_BYTES_MIN,
    SEGMENT_BYTES_MAX,
  );
  checkRange("retention.ms", c.retentionMs, UNLIMITED, safeMax);
  checkRange("retention.bytes", c.retentionBytes, UNLIMITED, safeMax);
  checkRange("flush.messages", c.flushMessages, UNLIMITED, safeMax);
  checkRange("flush.ms", c.flushMs, UNLIMITED, safeMax);
  checkRange("max.message.bytes", c.maxMessageBytes, MAX_MESSAGE_BYTES_MIN, BATCH_BYTES_MAX);
  checkRange("file.delete.delay.ms", c.fileDeleteDelayMs, 0, safeMax);
  if (c.flushMessages === 0) throw invalid("flush.messages", "0 is not allowed (use 1 or -1)");
  if (c.retentionMs === 0) throw invalid("retention.ms", "0 is not allowed (use -1 or > 0)");
  if (typeof c.flushStrict !== "boolean") throw invalid("flush.strict", "not a boolean");
  return Object.freeze({ ...c });
}

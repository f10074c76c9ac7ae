/**
 * All partition logs of one broker across its `log.dirs`: opens them at start-up (recovering
 * each), places new partitions in the directory holding the fewest, and runs the retention and
 * flush schedulers. A partition lives in exactly one directory, `<log.dir>/<topic>-<partition>`.
 */
import { randomUUID } from "node:crypto";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT,
  type LogConfig,
  PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT,
  RECOVERY_CONCURRENCY_DEFAULT,
  RETENTION_CHECK_INTERVAL_MS_DEFAULT,
} from "../../shared/config/log-config.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { FilePartitionLog } from "./file-partition-log.js";
import type { PartitionLog } from "./partition-log.js";

/** Suffix of a partition directory being deleted. */
export const DELETE_DIR_SUFFIX = "-delete";

/** Options of {@link LogManager}. */
export interface LogManagerOptions {
  /** `log.dirs`: one or more directories. */
  logDirs: readonly string[];
  /** Config for a partition whose topic has no overrides. */
  defaultConfig: LogConfig;
  logger: Logger;
  /** `log.retention.check.interval.ms`. Default 300000. */
  retentionCheckIntervalMs?: number;
  /** `log.flush.scheduler.interval.ms`. Default 1000. */
  flushSchedulerIntervalMs?: number;
  /** Logs recovered in parallel at start-up. Default 2. */
  recoveryConcurrency?: number;
  /** `producer.id.expiration.ms`. Default 86400000. */
  producerIdExpirationMs?: number;
  /** `producer.id.expiration.check.interval.ms`. Default 600000. */
  producerIdExpirationCheckIntervalMs?: number;
  /** Config per topic at start-up (topics' overrides); default config otherwise. */
  configFor?: (topic: string) => LogConfig;
}

/** `<topic>-<partition>` → [topic, partition]; undefined for names that are not partitions. */
export function parsePartitionDirName(name: string): [string, number] | undefined {
  const m = /^(.+)-(\d+)$/.exec(name);
  if (!m) return undefined;
  const partition = Number(m[2]);
  return Number.isSafeInteger(partition) ? [m[1]!, partition] : undefined;
}

function key(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

export class LogManager {
  private readonly logs = new Map<string, PartitionLog>();
  private readonly opening = new Map<string, Promise<PartitionLog>>();
  private readonly dirOf = new Map<string, string>();
  private timers: NodeJS.Timeout[] = [];
  private readonly logger: Logger;

  constructor(private readonly options: LogManagerOptions) {
    if (options.logDirs.length === 0) {
      throw new SamsaError(ErrorCode.INVALID_CONFIG, "log.dirs must name at least one directory");
    }
    this.logger = options.logger.child({ component: "log-manager" });
  }

  /** Opens every partition found in the log dirs and starts the schedulers. */
  async start(): Promise<void> {
    const found: Array<[string, number, string]> = [];
    for (const logDir of this.options.logDirs) {
      await mkdir(logDir, { recursive: true });
      for (const name of await readdir(logDir)) {
        if (name.endsWith(DELETE_DIR_SUFFIX)) {
          await rm(join(logDir, name), { recursive: true, force: true });
          continue;
        }
        const parsed = parsePartitionDirName(name);
        if (!parsed) continue;
        const k = key(...parsed);
        const other = this.dirOf.get(k);
        if (other) {
          throw new SamsaError(
            ErrorCode.KAFKA_STORAGE_ERROR,
            `partition ${k} found in both ${other} and ${logDir}`,
          );
        }
        this.dirOf.set(k, logDir);
        found.push([parsed[0], parsed[1], logDir]);
      }
    }
    const concurrency = this.options.recoveryConcurrency ?? RECOVERY_CONCURRENCY_DEFAULT;
    for (let i = 0; i < found.length; i += concurrency) {
      await Promise.all(
        found
          .slice(i, i + concurrency)
          .map(([t, p, d]) => this.openLog(t, p, d, this.configFor(t))),
      );
    }
    this.logger.info("log manager started", {
      logDirs: this.options.logDirs,
      partitions: found.length,
    });
    this.startSchedulers();
  }

  private configFor(topic: string): LogConfig {
    return this.options.configFor?.(topic) ?? this.options.defaultConfig;
  }

  private startSchedulers(): void {
    const retentionMs =
      this.options.retentionCheckIntervalMs ?? RETENTION_CHECK_INTERVAL_MS_DEFAULT;
    const flushMs = this.options.flushSchedulerIntervalMs ?? FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT;
    this.timers.push(setInterval(() => void this.runRetention(), retentionMs).unref());
    this.timers.push(setInterval(() => void this.runFlush(), flushMs).unref());
    const expiryMs =
      this.options.producerIdExpirationCheckIntervalMs ??
      PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT;
    this.timers.push(setInterval(() => void this.runProducerExpiry(), expiryMs).unref());
  }

  /** One pass of `producer.id.expiration.ms` over every log. Returns producers removed. */
  async runProducerExpiry(): Promise<number> {
    let removed = 0;
    for (const log of this.logs.values()) {
      try {
        removed += await log.removeExpiredProducers();
      } catch (err) {
        this.logger.error("producer expiry failed", {
          partition: key(log.topic, log.partition),
          error: (err as Error).message,
        });
      }
    }
    return removed;
  }

  /** One retention pass over every log. Returns segments deleted. */
  async runRetention(): Promise<number> {
    let deleted = 0;
    for (const log of this.logs.values()) {
      try {
        deleted += await log.enforceRetention();
      } catch (err) {
        this.logger.error("retention failed", {
          partition: key(log.topic, log.partition),
          error: (err as Error).message,
        });
      }
    }
    return deleted;
  }

  private async runFlush(): Promise<void> {
    for (const log of this.logs.values()) {
      try {
        await log.maybeFlush();
      } catch (err) {
        this.logger.error("scheduled flush failed", {
          partition: key(log.topic, log.partition),
          error: (err as Error).message,
        });
      }
    }
  }

  private async openLog(
    topic: string,
    partition: number,
    logDir: string,
    config: LogConfig,
  ): Promise<PartitionLog> {
    const k = key(topic, partition);
    const log = await FilePartitionLog.open({
      dir: join(logDir, k),
      topic,
      partition,
      config,
      logger: this.options.logger.child({ component: "partition-log", topic, partition }),
      producerIdExpirationMs: this.options.producerIdExpirationMs,
    });
    this.logs.set(k, log);
    this.dirOf.set(k, logDir);
    return log;
  }

  /** The open log of a partition, if this broker has it. */
  getLog(topic: string, partition: number): PartitionLog | undefined {
    return this.logs.get(key(topic, partition));
  }

  /** All open logs. */
  allLogs(): PartitionLog[] {
    return [...this.logs.values()];
  }

  /** The log of a partition, created in the least-loaded log dir when new. */
  async getOrCreateLog(
    topic: string,
    partition: number,
    config?: LogConfig,
  ): Promise<PartitionLog> {
    const k = key(topic, partition);
    const existing = this.logs.get(k);
    if (existing) return existing;
    let pending = this.opening.get(k);
    if (!pending) {
      const logDir = this.dirOf.get(k) ?? this.leastLoadedDir();
      // Claim the dir now, so partitions created concurrently spread across the dirs.
      this.dirOf.set(k, logDir);
      pending = this.openLog(topic, partition, logDir, config ?? this.configFor(topic)).finally(
        () => this.opening.delete(k),
      );
      this.opening.set(k, pending);
    }
    return pending;
  }

  private leastLoadedDir(): string {
    const counts = new Map<string, number>(this.options.logDirs.map((d) => [d, 0]));
    for (const d of this.dirOf.values()) counts.set(d, (counts.get(d) ?? 0) + 1);
    let best = this.options.logDirs[0]!;
    for (const d of this.options.logDirs) if (counts.get(d)! < counts.get(best)!) best = d;
    return best;
  }

  /** Closes a partition's log and removes its data (topic deletion or reassignment away). */
  async deleteLog(topic: string, partition: number): Promise<void> {
    const k = key(topic, partition);
    const log = this.logs.get(k);
    const logDir = this.dirOf.get(k);
    this.logs.delete(k);
    this.dirOf.delete(k);
    if (log) await log.close();
    if (!logDir) return;
    // Rename first so a crash mid-delete never leaves a half-deleted partition to be reopened.
    const doomed = join(logDir, `${k}.${randomUUID()}${DELETE_DIR_SUFFIX}`);
    await rename(join(logDir, k), doomed).catch(() => undefined);
    await rm(doomed, { recursive: true, force: true });
    this.logger.info("deleted partition log", { topic, partition });
  }

  /** Stops the schedulers and closes every log (flushing it). */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all([...this.logs.values()].map((l) => l.close()));
    this.logs.clear();
  }
}

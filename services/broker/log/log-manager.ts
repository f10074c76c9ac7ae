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

function storageError(logDir: string, err: unknown): SamsaError {
  if (err instanceof SamsaError && err.code === ErrorCode.KAFKA_STORAGE_ERROR) return err;
  return new SamsaError(
    ErrorCode.KAFKA_STORAGE_ERROR,
    `log dir ${logDir} failed: ${(err as Error).message}`,
    { cause: err },
  );
}

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

/** A log dir taken offline by a failed write, and why. */
export interface OfflineLogDir {
  readonly logDir: string;
  readonly error: SamsaError;
  /** `<topic>-<partition>` of every partition of that dir on this broker. */
  readonly partitions: ReadonlyArray<{ topic: string; partition: number }>;
}

/** An error of the file system (an errno code), as opposed to a bug or a bad request. */
function isStorageError(err: unknown): boolean {
  if (err instanceof SamsaError) return err.code === ErrorCode.KAFKA_STORAGE_ERROR;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code);
}

export class LogManager {
  private readonly logs = new Map<string, PartitionLog>();
  private readonly offline = new Map<string, OfflineLogDir>();
  private readonly offlineListeners = new Set<(dir: OfflineLogDir) => void>();
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
      if (log.failure) continue;
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
      if (log.failure) continue;
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
      if (log.failure) continue;
      try {
        await log.maybeFlush();
      } catch (err) {
        this.logger.error("scheduled flush failed", {
          partition: key(log.topic, log.partition),
          error: (err as Error).message,
        });
        // A flush that failed on the file system lost what it was making durable.
        const dir = this.dirOf.get(key(log.topic, log.partition));
        if (dir && isStorageError(err)) this.takeDirOffline(dir, storageError(dir, err));
      }
    }
  }

  /**
   * Kafka's offline log dir: one failed write (disk full, I/O error) takes every partition of
   * its dir offline on this broker (their logs refuse every call with KAFKA_STORAGE_ERROR and
   * close without a clean-shutdown marker), no new partition is placed there, an error line and
   * `samsa_log_dir_offline` say so, and the listeners hear of it (the broker tells the
   * controller, which moves leadership to other in-sync replicas). Until the broker restarts.
   */
  takeDirOffline(logDir: string, error: SamsaError): void {
    if (this.offline.has(logDir)) return;
    const partitions: Array<{ topic: string; partition: number }> = [];
    for (const [k, d] of this.dirOf) {
      if (d !== logDir) continue;
      const log = this.logs.get(k);
      if (log) {
        log.takeOffline(error);
        partitions.push({ topic: log.topic, partition: log.partition });
      }
    }
    const offline: OfflineLogDir = { logDir, error, partitions };
    this.offline.set(logDir, offline);
    this.logger.error("log dir offline", {
      logDir,
      errorCode: ErrorCode[error.code],
      error: error.message,
      partitions: partitions.map((p) => key(p.topic, p.partition)),
    });
    for (const listener of this.offlineListeners) {
      try {
        listener(offline);
      } catch (err) {
        this.logger.error("offline log dir listener threw", { error: (err as Error).message });
      }
    }
  }

  /** Calls `listener` for every log dir taken offline from now on. */
  onDirOffline(listener: (dir: OfflineLogDir) => void): () => void {
    this.offlineListeners.add(listener);
    return () => this.offlineListeners.delete(listener);
  }

  /** The log dirs offline, with their partitions. */
  offlineDirs(): OfflineLogDir[] {
    return [...this.offline.values()];
  }

  /** Every configured log dir, with whether it is offline (for the metric). */
  logDirStates(): Array<{ logDir: string; offline: boolean }> {
    return this.options.logDirs.map((logDir) => ({ logDir, offline: this.offline.has(logDir) }));
  }

  /** Whether the partition's log is in an offline log dir (or is offline itself). */
  isOffline(topic: string, partition: number): boolean {
    const k = key(topic, partition);
    const dir = this.dirOf.get(k);
    return (dir !== undefined && this.offline.has(dir)) || this.logs.get(k)?.failure !== undefined;
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
      onFailure: (error) => this.takeDirOffline(logDir, error),
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
      const offline = this.offline.get(logDir);
      if (offline) {
        throw new SamsaError(
          ErrorCode.KAFKA_STORAGE_ERROR,
          `log dir ${logDir} of ${k} is offline: ${offline.error.message}`,
        );
      }
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
    const online = this.options.logDirs.filter((d) => !this.offline.has(d));
    if (online.length === 0) return this.options.logDirs[0]!; // refused by the caller
    const counts = new Map<string, number>(online.map((d) => [d, 0]));
    for (const d of this.dirOf.values()) if (counts.has(d)) counts.set(d, counts.get(d)! + 1);
    let best = online[0]!;
    for (const d of online) if (counts.get(d)! < counts.get(best)!) best = d;
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

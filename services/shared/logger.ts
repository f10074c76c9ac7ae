/**
 * Structured JSON logging (winston). Every service creates one root logger with its `service`
 * name; components take a child with `component` and their ids. Messages are constant strings;
 * variable parts go in fields, never into the message.
 */
import winston from "winston";

/** The logging surface the code depends on: a subset of winston's Logger. */
export interface Logger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/** Log levels accepted by {@link createLogger}. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** The service name put on every line (`broker`, `controller`, `gateway`, ...). */
  service: string;
  /** Lowest level written. Default `info`. */
  level?: LogLevel;
  /** Extra fields on every line (e.g. `brokerId`). */
  fields?: Record<string, unknown>;
  /** Write to stderr instead of stdout. Default false. */
  stderr?: boolean;
}

/** A JSON logger writing one object per line with a timestamp. */
export function createLogger(options: LoggerOptions): Logger {
  return winston.createLogger({
    level: options.level ?? "info",
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: options.service, ...options.fields },
    transports: [
      new winston.transports.Console({
        stderrLevels: options.stderr ? ["error", "warn", "info", "debug"] : ["error"],
      }),
    ],
  }) as unknown as Logger;
}

/** A logger that drops everything (library use without logging). */
export function silentLogger(): Logger {
  const logger: Logger = {
    error: () => undefined,
    warn: () => undefined,
    info: () => undefined,
    debug: () => undefined,
    child: () => logger,
  };
  return logger;
}

/** One captured log line, as {@link memoryLogger} keeps it. */
export interface CapturedLine {
  level: LogLevel;
  message: string;
  fields: Record<string, unknown>;
}

/** A logger that keeps lines in memory: lets tests assert what a component said. */
export function memoryLogger(
  lines: CapturedLine[] = [],
  base: Record<string, unknown> = {},
): Logger {
  const at =
    (level: LogLevel) =>
    (message: string, fields: Record<string, unknown> = {}) => {
      lines.push({ level, message, fields: { ...base, ...fields } });
    };
  return {
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    child: (fields) => memoryLogger(lines, { ...base, ...fields }),
  };
}

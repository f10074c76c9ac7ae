/**
 * Parsing of the CLI's arguments and input lines. Option parsers throw commander's
 * InvalidArgumentError (commander prints `error: option '...' argument '...' is invalid. <why>`
 * and exits 1); input errors are SamsaErrors (printed as `error: <CODE>: <message>`).
 */
import { InvalidArgumentError } from "commander";
import { parseAddressList } from "../../client/index.js";
import type { Acks } from "../../client/index.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { CompressionType } from "../../shared/record-batch/index.js";
import {
  BOOTSTRAP_ENV,
  CONTROLLER_ENV,
  DEFAULT_BOOTSTRAP_SERVERS,
  DEFAULT_CONTROLLERS,
} from "../defaults.js";

/** Separator of a `--config` pair. */
export const CONFIG_PAIR_SEPARATOR = "=";

/** Environment as `process.env` has it. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Where the CLI connects. */
export interface Endpoints {
  /** Brokers, `host:port` each. */
  readonly bootstrap: readonly string[];
  /** Controllers, `host:port` each. */
  readonly controllers: readonly string[];
}

/**
 * The brokers and controllers to use: the flag, else the environment ({@link BOOTSTRAP_ENV},
 * {@link CONTROLLER_ENV}; blank counts as unset), else the local cluster's defaults. Lists are
 * parsed lazily, so that a command that needs only one of them does not fail on the other.
 * @throws SamsaError INVALID_CONFIG when an address list is malformed.
 */
export function resolveEndpoints(
  flags: { bootstrapServer?: string; controller?: string },
  env: Env,
): Endpoints {
  const pick = (flag: string | undefined, name: string, fallback: readonly string[]) => {
    const fromEnv = env[name]?.trim();
    if (flag !== undefined) return parseAddressList(flag);
    if (fromEnv !== undefined && fromEnv !== "") return parseAddressList(fromEnv);
    return [...fallback];
  };
  let bootstrap: readonly string[] | undefined;
  let controllers: readonly string[] | undefined;
  return {
    get bootstrap() {
      bootstrap ??= pick(flags.bootstrapServer, BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP_SERVERS);
      return bootstrap;
    },
    get controllers() {
      controllers ??= pick(flags.controller, CONTROLLER_ENV, DEFAULT_CONTROLLERS);
      return controllers;
    },
  };
}

/** Commander parser of an integer ≥ `min` (a whole decimal number, nothing else). */
export function intAtLeast(min: number): (value: string) => number {
  return (value: string) => {
    const n = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`expected an integer >= ${min}`);
    }
    return n;
  };
}

/**
 * Commander parser of a repeated `--config key=value`: adds the pair to the map so far (the last
 * value of a key wins). The value may contain `=`; the key may not be empty.
 */
export function collectConfig(
  value: string,
  previous: Readonly<Record<string, string>> = {},
): Record<string, string> {
  const at = value.indexOf(CONFIG_PAIR_SEPARATOR);
  const key = at < 0 ? "" : value.slice(0, at).trim();
  if (key === "") throw new InvalidArgumentError("expected key=value");
  return { ...previous, [key]: value.slice(at + 1) };
}

/** Commander parser of `--acks`: 0, 1, all or -1 (Kafka's values). */
export function parseAcks(value: string): Acks {
  switch (value.trim().toLowerCase()) {
    case "0":
      return 0;
    case "1":
      return 1;
    case "all":
    case "-1":
      return "all";
    default:
      throw new InvalidArgumentError("expected 0, 1 or all");
  }
}

/** Commander parser of `--compression`: none, gzip, lz4 or zstd. */
export function parseCompression(value: string): CompressionType {
  const codecs: Record<string, CompressionType> = {
    none: CompressionType.NONE,
    gzip: CompressionType.GZIP,
    lz4: CompressionType.LZ4,
    zstd: CompressionType.ZSTD,
  };
  const codec = codecs[value.trim().toLowerCase()];
  if (codec === undefined) throw new InvalidArgumentError("expected none, gzip, lz4 or zstd");
  return codec;
}

/** `consume --offset`: a number, or earliest / latest. */
export type OffsetArg = number | "earliest" | "latest";

/** Commander parser of `consume --offset`. */
export function parseOffset(value: string): OffsetArg {
  const v = value.trim().toLowerCase();
  if (v === "earliest" || v === "latest") return v;
  try {
    return intAtLeast(0)(v);
  } catch {
    throw new InvalidArgumentError("expected an offset >= 0, earliest or latest");
  }
}

/** A line of `produce` input split into key and value. */
export interface KeyedLine {
  readonly key: string | null;
  readonly value: string;
}

/**
 * Splits a `produce` input line at the first `separator` into key and value (Kafka's
 * `parse.key=true`); without a separator the whole line is the value and the key is null.
 * @param lineNumber 1-based, for the error message.
 * @throws SamsaError INVALID_REQUEST when a separator is set and the line lacks it.
 */
export function splitKeyedLine(
  line: string,
  separator: string | undefined,
  lineNumber: number,
): KeyedLine {
  if (separator === undefined || separator === "") return { key: null, value: line };
  const at = line.indexOf(separator);
  if (at < 0) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `no key separator "${separator}" on line ${lineNumber}`,
    );
  }
  return { key: line.slice(0, at), value: line.slice(at + separator.length) };
}

/**
 * The generic configuration loader: defaults, then a properties or YAML file, then `SAMSA_*`
 * environment variables, then command-line flags, each value parsed and validated against the
 * schema once. Any bad value, unknown key, key of a feature not built yet
 * ({@link NOT_BUILT_KEYS}) or missing required key stops start-up with a
 * {@link SamsaError} `INVALID_CONFIG` whose message starts with `config <key>:`.
 *
 * This is the only module that reads `process.env` (and only when no `env` is passed).
 */
import { ErrorCode, SamsaError } from "../errors.js";
import { isMap, type RawEntry, readConfigFile } from "./config-file.js";
import { UNLIMITED } from "./log-config.js";
import {
  type ConfigKey,
  type ConfigValue,
  INT_MAX,
  NOT_BUILT_KEYS,
  RENAMED_KEYS,
  type ServiceName,
} from "./schema.js";

/** Prefix of the environment variables read: `SAMSA_BROKER_ID` sets `broker.id`. */
export const ENV_PREFIX = "SAMSA_";
/** Environment variable naming the config file when the command line names none. */
export const CONFIG_FILE_ENV = "SAMSA_CONFIG";

/** Options of {@link loadConfig}. */
export interface LoadOptions {
  /** Load the keys of this service only; keys of other services are rejected on the command
   * line and ignored in files and the environment (which are often shared). Default: all keys. */
  service?: ServiceName;
  /** Command-line arguments without node and the script (`process.argv.slice(2)`). Default []. */
  argv?: readonly string[];
  /** Environment. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Directory a relative config file path is resolved against. Default `process.cwd()`. */
  cwd?: string;
}

/** Loaded values by camelCase key name (`brokerId`); unset keys without default are undefined. */
export type LoadedConfig = Readonly<Record<string, ConfigValue | undefined>>;

/** The three sources, lowest precedence first. */
type SourceKind = "file" | "env" | "flag";

/** `log.retention.ms` → `logRetentionMs`. */
export function camelCase(name: string): string {
  return name.replace(/[.\-_]+([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** `broker.id` → `SAMSA_BROKER_ID`. */
export function envVarName(name: string): string {
  return ENV_PREFIX + name.toUpperCase().replace(/\./g, "_");
}

/** The error every bad configuration raises. */
export function configError(name: string, why: string, origin?: string): SamsaError {
  const from = origin === undefined ? "" : ` (from ${origin})`;
  return new SamsaError(ErrorCode.INVALID_CONFIG, `config ${name}: ${why}${from}`);
}

/**
 * Loads, validates and freezes the configuration described by `schema`. Throws `INVALID_CONFIG`
 * naming the first bad key.
 */
export function loadConfig(schema: readonly ConfigKey[], options: LoadOptions = {}): LoadedConfig {
  const byName = new Map<string, ConfigKey>();
  for (const key of schema) {
    for (const name of [key.name, ...(key.aliases ?? [])]) byName.set(name, key);
  }
  const applies = (key: ConfigKey) =>
    options.service === undefined || key.services.includes(options.service);
  const flags = parseArgv(options.argv ?? [], byName);
  const envSource = envEntries(options.env ?? process.env);
  const file = flags.file ?? envSource.file;
  const sources: Array<[SourceKind, readonly RawEntry[]]> = [
    ["file", file === undefined ? [] : readConfigFile(file, options.cwd ?? process.cwd())],
    ["env", envSource.entries],
    ["flag", flags.entries],
  ];
  const explicit = new Map<string, ConfigValue>();
  for (const [kind, entries] of sources) {
    const values = new Map<string, ConfigValue>();
    for (const entry of entries) {
      const key = byName.get(entry.name);
      if (key === undefined) throw unknownKey(entry, kind, byName);
      if (!applies(key)) {
        if (kind !== "flag") continue;
        throw configError(key.name, `does not apply to the ${options.service}`, entry.origin);
      }
      values.set(key.name, parseValue(key, entry.raw, entry.origin));
    }
    // A source that sets one member of a group replaces the group as lower sources set it.
    const groups = new Set([...values.keys()].map((n) => byName.get(n)!.group));
    for (const name of explicit.keys()) {
      const group = byName.get(name)!.group;
      if (group !== undefined && groups.has(group) && !values.has(name)) explicit.delete(name);
    }
    for (const [name, value] of values) explicit.set(name, value);
  }
  const out: Record<string, ConfigValue | undefined> = {};
  for (const key of schema) {
    if (!applies(key)) continue;
    const fallback =
      options.service === undefined ? undefined : key.serviceDefaults?.[options.service];
    const value = explicit.get(key.name) ?? fallback ?? key.default;
    if (value === undefined && key.required) {
      throw configError(
        key.name,
        `required; set it in the config file, as ${envVarName(key.name)} or --${key.name}`,
      );
    }
    out[camelCase(key.name)] = Array.isArray(value) ? Object.freeze([...value]) : value;
  }
  return Object.freeze(out);
}

/** Splits the command line into the config file and `--key value` entries. */
function parseArgv(
  argv: readonly string[],
  byName: ReadonlyMap<string, ConfigKey>,
): { file?: string; entries: RawEntry[] } {
  const entries: RawEntry[] = [];
  let file: string | undefined;
  const setFile = (path: string | undefined) => {
    if (path === undefined || path === "") throw configError("--config", "missing file name");
    if (file !== undefined) throw configError("--config", `two config files: ${file}, ${path}`);
    file = path;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) {
      setFile(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    if (flag === "config") {
      setFile(inline ?? argv[++i]);
    } else if (flag === "override") {
      const pair = inline ?? argv[++i] ?? "";
      const at = pair.indexOf("=");
      if (at <= 0) throw configError("--override", `"${pair}" is not key=value`);
      entries.push({ name: pair.slice(0, at).trim(), raw: pair.slice(at + 1), origin: arg });
    } else if (inline !== undefined) {
      entries.push({ name: flag, raw: inline, origin: arg });
    } else if (byName.get(flag)?.type === "bool" && !/^(true|false)$/i.test(argv[i + 1] ?? "")) {
      entries.push({ name: flag, raw: "true", origin: arg });
    } else {
      const value = argv[++i];
      if (value === undefined) throw configError(flag, "missing value", arg);
      entries.push({ name: flag, raw: value, origin: arg });
    }
  }
  return file === undefined ? { entries } : { file, entries };
}

/** `SAMSA_*` variables as entries; `SAMSA_CONFIG` names the config file. */
function envEntries(env: Readonly<Record<string, string | undefined>>): {
  file?: string;
  entries: RawEntry[];
} {
  const entries: RawEntry[] = [];
  let file: string | undefined;
  for (const [variable, raw] of Object.entries(env)) {
    if (!variable.startsWith(ENV_PREFIX) || raw === undefined) continue;
    if (variable === CONFIG_FILE_ENV) {
      file = raw;
      continue;
    }
    const name = variable.slice(ENV_PREFIX.length).toLowerCase().replace(/_/g, ".");
    entries.push({ name, raw, origin: variable });
  }
  return file === undefined ? { entries } : { file, entries };
}

/** Parses one raw value (string from text sources; scalar or array from YAML) by key type. */
function parseValue(key: ConfigKey, raw: unknown, origin: string): ConfigValue {
  const fail = (why: string) => configError(key.name, why, origin);
  let value: ConfigValue;
  if (key.type === "list") {
    const items = Array.isArray(raw) ? raw.map(String) : String(raw).split(",");
    value = items.map((s) => s.trim()).filter((s) => s !== "");
  } else if (Array.isArray(raw) || isMap(raw)) {
    throw fail("expected a single value");
  } else {
    value = parseScalar(key, String(raw).trim(), fail);
  }
  const why = key.check?.(value);
  if (why !== undefined) throw fail(why);
  return value;
}

function parseScalar(key: ConfigKey, text: string, fail: (why: string) => SamsaError) {
  switch (key.type) {
    case "bool":
      if (/^(true|false)$/i.test(text)) return text.toLowerCase() === "true";
      throw fail(`"${text}" is not true or false`);
    case "enum": {
      const choice = key.choices?.find((c) => c.toLowerCase() === text.toLowerCase());
      if (choice !== undefined) return choice;
      throw fail(`"${text}" is not one of ${key.choices?.join(", ")}`);
    }
    case "int":
    case "long":
      return parseInteger(key, text, fail);
    default:
      return text;
  }
}

function parseInteger(key: ConfigKey, text: string, fail: (why: string) => SamsaError): number {
  if (!/^[+-]?\d+$/.test(text)) throw fail(`"${text}" is not an integer`);
  const n = Number(text);
  // Kafka spells "no limit" as Long.MAX_VALUE; it is not a safe JS number.
  if (!Number.isSafeInteger(n) && n > 0 && key.maxMeansUnlimited) return UNLIMITED;
  const typeMax = key.type === "int" ? INT_MAX : Number.MAX_SAFE_INTEGER;
  const min = Math.max(key.min ?? -typeMax - 1, -typeMax - 1);
  const max = Math.min(key.max ?? typeMax, typeMax);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw fail(`${text} is out of range [${min}, ${max}]`);
  }
  return n;
}

function unknownKey(
  entry: RawEntry,
  kind: SourceKind,
  byName: ReadonlyMap<string, ConfigKey>,
): SamsaError {
  const notBuilt = NOT_BUILT_KEYS[entry.name];
  if (notBuilt !== undefined) {
    return configError(entry.name, `not supported: ${notBuilt}; remove it`, entry.origin);
  }
  const near = RENAMED_KEYS[entry.name] ?? nearest(entry.name, [...byName.keys()]);
  const spell = (name: string) =>
    kind === "env" ? envVarName(name) : kind === "flag" ? `--${name}` : name;
  const hint = near === undefined ? "" : `; did you mean ${spell(near)}?`;
  return configError(entry.name, `unknown key${hint}`, entry.origin);
}

/** The closest name by edit distance, if close enough to be a likely typo. */
function nearest(name: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 4)) + 1;
  for (const candidate of names) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
    }
    prev = row;
  }
  return prev[b.length]!;
}

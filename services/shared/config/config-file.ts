/**
 * Reading a configuration file: Java `.properties` (Kafka's `server.properties`) or YAML with
 * flat dotted keys or nested maps. Both come out as raw entries the loader parses by key type.
 */
import { readFileSync } from "node:fs";
import { extname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { ErrorCode, SamsaError } from "../errors.js";

/** One value as a source wrote it, before parsing. */
export interface RawEntry {
  /** The dotted key name as written (may be an alias or unknown). */
  readonly name: string;
  /** A string from text sources; a scalar or an array from YAML. */
  readonly raw: unknown;
  /** Where it came from, for error messages: `--broker.id`, `SAMSA_BROKER_ID`, `<file>:3`. */
  readonly origin: string;
}

/** One `key=value` of a properties file. */
export interface PropertyLine {
  readonly name: string;
  readonly value: string;
  /** 1-based line number where the entry starts. */
  readonly line: number;
}

/** Extensions read as YAML (JSON is YAML); every other file is read as properties. */
export const YAML_EXTENSIONS: readonly string[] = [".yaml", ".yml", ".json"];

/** Reads and flattens a config file; a relative `path` is resolved against `cwd`. */
export function readConfigFile(path: string, cwd: string): RawEntry[] {
  const full = resolve(cwd, path);
  const fail = (why: string, cause?: unknown) =>
    new SamsaError(ErrorCode.INVALID_CONFIG, `config file ${full}: ${why}`, { cause });
  let text: string;
  try {
    text = readFileSync(full, "utf8");
  } catch (err) {
    throw fail((err as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : String(err), err);
  }
  if (!YAML_EXTENSIONS.includes(extname(full).toLowerCase())) {
    return parseProperties(text).map((p) => ({
      name: p.name,
      raw: p.value,
      origin: `${full}:${p.line}`,
    }));
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw fail(String(err), err);
  }
  if (doc === null || doc === undefined) return [];
  if (!isMap(doc)) throw fail("not a map of keys");
  const entries: RawEntry[] = [];
  flatten(doc, "", entries, full);
  return entries;
}

/** True for a plain key → value object (not null, not an array). */
export function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Nested YAML maps become dotted names: `{log: {dirs: [a]}}` → `log.dirs`. Null = unset. */
function flatten(value: unknown, prefix: string, out: RawEntry[], origin: string): void {
  if (isMap(value)) {
    for (const [k, v] of Object.entries(value)) {
      flatten(v, prefix === "" ? k : `${prefix}.${k}`, out, origin);
    }
  } else if (value !== null) {
    out.push({ name: prefix, raw: value, origin });
  }
}

/**
 * Parses Java properties text: `key=value`, `key: value` or `key value`; `#` and `!` comment
 * lines; a trailing backslash continues the line; `\t`, `\n`, `\uXXXX` escapes. Values are
 * trimmed (Java keeps trailing blanks; a config value never wants them). Later duplicates win
 * in the loader, as in Java.
 */
export function parseProperties(text: string): PropertyLine[] {
  const lines = text.split(/\r\n|\r|\n/);
  const out: PropertyLine[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    let logical = lines[i]!.trimStart();
    if (logical === "" || logical.startsWith("#") || logical.startsWith("!")) continue;
    while (continues(logical)) {
      logical = logical.slice(0, -1) + (i + 1 < lines.length ? lines[++i]!.trimStart() : "");
    }
    const [key, value] = splitKeyValue(logical);
    out.push({ name: unescapeJava(key), value: unescapeJava(value).trim(), line });
  }
  return out;
}

/** An odd number of trailing backslashes continues the line. */
function continues(s: string): boolean {
  let n = 0;
  for (let k = s.length - 1; k >= 0 && s[k] === "\\"; k--) n++;
  return n % 2 === 1;
}

const SEPARATORS = "=: \t\f";

function splitKeyValue(s: string): [string, string] {
  let k = 0;
  while (k < s.length && !SEPARATORS.includes(s[k]!)) k += s[k] === "\\" ? 2 : 1;
  let rest = s.slice(k).replace(/^[ \t\f]*/, "");
  if (rest.startsWith("=") || rest.startsWith(":")) rest = rest.slice(1);
  return [s.slice(0, k), rest];
}

const ESCAPES: Readonly<Record<string, string>> = { t: "\t", n: "\n", r: "\r", f: "\f" };

function unescapeJava(s: string): string {
  return s.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_, c: string) =>
    c.length === 5 ? String.fromCharCode(Number.parseInt(c.slice(1), 16)) : (ESCAPES[c] ?? c),
  );
}

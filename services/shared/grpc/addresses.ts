/**
 * Server address lists as users write them: `host:port[,host:port...]` (Kafka's
 * `bootstrap.servers`), validated once at the edge into `host:port` strings gRPC can dial.
 * (The services' `listeners` parser lives in the config schema, which also accepts wildcard
 * hosts and port 0; a client can dial neither, and should not load the services' config code.)
 */
import { ErrorCode, SamsaError } from "../errors.js";

/** Separator of addresses in a list. */
export const ADDRESS_LIST_SEPARATOR = ",";
/** Largest TCP port. */
const PORT_MAX = 65_535;
/** `host:port`, `[v6]:port`; the host has no blanks, brackets, slashes or (unbracketed) colons. */
const ADDRESS_RE = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s/]+):(\d{1,5})$/;

/**
 * Parses `host:port[,host:port...]` (IPv6 as `[::1]:9092`; blanks around entries and empty
 * entries are ignored; duplicates are dropped, the first one's position kept). An array is taken
 * as already split, each element possibly a list itself.
 * @throws SamsaError INVALID_CONFIG for an empty list or an entry that is not `host:port` with a
 *   port in 1..65535.
 */
export function parseAddressList(input: string | readonly string[]): string[] {
  const parts = (typeof input === "string" ? [input] : input).flatMap((s) =>
    s.split(ADDRESS_LIST_SEPARATOR),
  );
  const addresses: string[] = [];
  for (const part of parts) {
    const trimmed = part.trim();
    if (trimmed === "") continue;
    const address = parseAddress(trimmed);
    if (!addresses.includes(address)) addresses.push(address);
  }
  if (addresses.length === 0) throw invalid("no server address given (expected host:port)");
  return addresses;
}

/**
 * Validates one `host:port` (or `[v6]:port`) and returns it as gRPC dials it.
 * @throws SamsaError INVALID_CONFIG when it is not one.
 */
export function parseAddress(text: string): string {
  const m = ADDRESS_RE.exec(text.trim());
  if (!m) throw invalid(`"${text}" is not host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > PORT_MAX) throw invalid(`"${text}": port must be in 1..${PORT_MAX}`);
  return `${m[1]}:${port}`;
}

/**
 * Host (IPv6 without brackets) and port of a `host:port`, or undefined when it is not one — for
 * addresses that arrive from outside, such as the HTTP/2 `:authority` a client dialled.
 */
export function splitAddress(text: string): { host: string; port: number } | undefined {
  const m = ADDRESS_RE.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > PORT_MAX) return undefined;
  const host = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port };
}

/** `host:port` of a broker as Metadata describes it (brackets around IPv6 hosts). */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function invalid(message: string): SamsaError {
  return new SamsaError(ErrorCode.INVALID_CONFIG, message);
}

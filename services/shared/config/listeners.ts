/**
 * Named listeners, as Kafka has them: `listeners` says where a service binds, one entry per
 * listener (`INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9192`); `advertised.listeners` says what
 * others dial for each (`INTERNAL://broker-1:9092,EXTERNAL://127.0.0.1:9192`);
 * `inter.broker.listener.name` says which one the cluster itself uses. A plain `host:port` is the
 * single listener named {@link DEFAULT_LISTENER_NAME}, as before names existed.
 *
 * Rules (checked once, at config load; each violation names its key):
 * - names are letters, digits and `_`, not starting with a digit, compared case-insensitively and
 *   kept upper-case (Kafka's normalisation); each name and each non-zero port appears once;
 * - an unnamed entry is allowed only as the one entry of its key (`listeners=0.0.0.0:9092`;
 *   `advertised.listeners=b1:9092` with a single listener);
 * - every advertised name is a listener's; a listener left out of `advertised.listeners`
 *   advertises its bind address, a wildcard host (`0.0.0.0`, `::`, empty) as 127.0.0.1 (Kafka
 *   would not advertise it at all: here every listener is reachable somewhere by default);
 * - an advertised host is never a wildcard; an advertised port 0 means "the port bound";
 * - `inter.broker.listener.name` (empty = the first listener) names a listener.
 *
 * This module is the leaf of the config folder: the schema imports its parsers for the keys'
 * checks, so it imports nothing from there.
 */

/** A gRPC endpoint: what one `listeners` or `advertised.listeners` entry gives. */
export interface HostPort {
  /** Host name or address, IPv6 without brackets. */
  readonly host: string;
  /** TCP port; 0 in `listeners` = ephemeral (the service advertises the port it bound). */
  readonly port: number;
}

/** One listener of a service, resolved: its name, where it binds, what others dial. */
export interface Listener {
  /** Upper-case name, e.g. `PLAINTEXT`, `INTERNAL`. */
  readonly name: string;
  /** `listeners` entry: the address the gRPC server binds. */
  readonly bind: HostPort;
  /** `advertised.listeners` entry (or the bind address); port 0 = the port actually bound. */
  readonly advertised: HostPort;
}

/** The listeners of a service with the one the cluster uses among them. */
export interface ResolvedListeners {
  /** In `listeners` order; never empty. */
  readonly listeners: readonly Listener[];
  /** Name of the listener brokers, controllers and gateways dial (a name in `listeners`). */
  readonly interBrokerListenerName: string;
}

/** Name of a listener written without one (`host:port`), Kafka's default. */
export const DEFAULT_LISTENER_NAME = "PLAINTEXT";
/** Largest TCP port. */
export const PORT_MAX = 65_535;
/** Most listeners one service may have (each is a gRPC server of its own). */
export const LISTENERS_MAX = 16;
/** Hosts meaning "every interface"; advertised as loopback unless said otherwise. */
export const WILDCARD_HOSTS: ReadonlySet<string> = new Set(["", "0.0.0.0", "::"]);
/** The host advertised in place of a wildcard host. */
export const LOOPBACK_HOST = "127.0.0.1";
/** Separator of the entries of `listeners` and `advertised.listeners`. */
const ENTRY_SEPARATOR = ",";

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENTRY_RE = /^(?:([^:/\s]*):\/\/)?(\[[0-9A-Fa-f:.]+\]|[^:[\]\s/]*):(\d{1,5})$/;

/** One entry of a listener list: its name (upper-case) if it had one, and its address. */
export interface ListenerEntry {
  readonly name: string | undefined;
  readonly address: HostPort;
}

/** Parses one `host:port`, `[v6]:port` or `NAME://host:port` entry; a string says why not. */
export function parseListenerEntry(text: string): ListenerEntry | string {
  const trimmed = text.trim();
  const m = ENTRY_RE.exec(trimmed);
  if (!m) return `"${trimmed}" is not host:port or NAME://host:port`;
  const name = m[1];
  if (name !== undefined && !NAME_RE.test(name)) {
    return `listener name "${name}" must be letters, digits and '_', not starting with a digit`;
  }
  const port = Number(m[3]);
  if (port > PORT_MAX) return `port ${port} is above ${PORT_MAX}`;
  const host = m[2]!.startsWith("[") ? m[2]!.slice(1, -1) : m[2]!;
  return {
    name: name?.toUpperCase(),
    address: Object.freeze({ host: host === "" ? "0.0.0.0" : host, port }),
  };
}

/**
 * Parses one `host:port`, `[v6]:port` or `NAME://host:port` into its address (the name dropped);
 * a string says why not (a list of several is refused).
 */
export function parseHostPort(text: string): HostPort | string {
  if (text.includes(ENTRY_SEPARATOR)) return "one host:port expected, not a list";
  const entry = parseListenerEntry(text);
  return typeof entry === "string" ? entry : entry.address;
}

/**
 * Parses a comma-separated listener list (`listeners` or `advertised.listeners`): at least one
 * entry, names unique, an unnamed entry only alone. A string says why not.
 */
export function parseListenerList(text: string): ListenerEntry[] | string {
  const parts = text.split(ENTRY_SEPARATOR).map((s) => s.trim());
  if (parts.some((s) => s === "")) return "empty entry in the list";
  if (parts.length > LISTENERS_MAX) return `more than ${LISTENERS_MAX} listeners`;
  const entries: ListenerEntry[] = [];
  for (const part of parts) {
    const entry = parseListenerEntry(part);
    if (typeof entry === "string") return entry;
    if (entry.name === undefined && parts.length > 1) {
      return `"${part}" needs a name (NAME://host:port) in a list of several`;
    }
    if (entry.name !== undefined && entries.some((e) => e.name === entry.name)) {
      return `listener name ${entry.name} appears twice`;
    }
    entries.push(entry);
  }
  return entries;
}

/** What {@link resolveListeners} reads: the three keys' raw values. */
export interface ListenerKeys {
  /** `listeners`. */
  readonly listeners: string;
  /** `advertised.listeners`; "" = every listener advertises its bind address. */
  readonly advertisedListeners: string;
  /** `inter.broker.listener.name`; "" = the first listener. */
  readonly interBrokerListenerName: string;
}

/** A listener configuration error: the key at fault and why. */
export class ListenerConfigError extends Error {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`${key}: ${reason}`);
    this.name = "ListenerConfigError";
  }
}

/**
 * Resolves the three keys into frozen {@link ResolvedListeners} by the rules of the module
 * comment. @throws ListenerConfigError naming the key at fault.
 */
export function resolveListeners(keys: ListenerKeys): ResolvedListeners {
  const bound = parseListenerList(keys.listeners);
  if (typeof bound === "string") throw new ListenerConfigError("listeners", bound);
  const named = bound.map((e) => ({ name: e.name ?? DEFAULT_LISTENER_NAME, bind: e.address }));
  const ports = named.map((l) => l.bind.port).filter((p) => p !== 0);
  const clash = ports.find((p, i) => ports.indexOf(p) !== i);
  if (clash !== undefined) throw new ListenerConfigError("listeners", `port ${clash} used twice`);

  const advertisedByName = new Map<string, HostPort>();
  if (keys.advertisedListeners.trim() !== "") {
    const advertised = parseListenerList(keys.advertisedListeners);
    if (typeof advertised === "string") {
      throw new ListenerConfigError("advertised.listeners", advertised);
    }
    for (const entry of advertised) {
      const name = entry.name ?? singleName(named);
      if (!named.some((l) => l.name === name)) {
        throw new ListenerConfigError("advertised.listeners", `${name} is not in listeners`);
      }
      if (WILDCARD_HOSTS.has(entry.address.host)) {
        throw new ListenerConfigError(
          "advertised.listeners",
          `${entry.address.host} cannot be dialled`,
        );
      }
      advertisedByName.set(name, entry.address);
    }
  }

  const listeners = named.map(({ name, bind }) =>
    Object.freeze({
      name,
      bind,
      advertised: advertisedByName.get(name) ?? defaultAdvertised(bind),
    }),
  );
  const wanted = keys.interBrokerListenerName.trim().toUpperCase();
  const interBrokerListenerName = wanted === "" ? listeners[0]!.name : wanted;
  if (!listeners.some((l) => l.name === interBrokerListenerName)) {
    throw new ListenerConfigError(
      "inter.broker.listener.name",
      `${interBrokerListenerName} is not in listeners (${listeners.map((l) => l.name).join(", ")})`,
    );
  }
  return Object.freeze({ listeners: Object.freeze(listeners), interBrokerListenerName });
}

/** The listener named `name` of `resolved`; asserts that there is one. */
export function listenerNamed(resolved: ResolvedListeners, name: string): Listener {
  const found = resolved.listeners.find((l) => l.name === name);
  if (!found) throw new Error(`no listener named ${name}`);
  return found;
}

/** `host:port` again, with brackets around IPv6 hosts (what gRPC's bind and dial take). */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** The bind address as others dial it: a wildcard host becomes loopback. */
function defaultAdvertised(bind: HostPort): HostPort {
  return WILDCARD_HOSTS.has(bind.host)
    ? Object.freeze({ host: LOOPBACK_HOST, port: bind.port })
    : bind;
}

/** The name an unnamed advertised entry refers to: the only listener's. */
function singleName(listeners: ReadonlyArray<{ name: string }>): string {
  if (listeners.length !== 1) {
    throw new ListenerConfigError(
      "advertised.listeners",
      "name each entry (NAME://host:port) when there are several listeners",
    );
  }
  return listeners[0]!.name;
}

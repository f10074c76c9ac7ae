/**
 * The broker's gRPC servers, one per listener (`listeners`, named: see
 * services/shared/config/listeners.ts). A gRPC handler cannot see the local port a call came in
 * on, so each listener gets a server of its own whose handlers know the listener's name; Metadata
 * then answers with every broker's address on that listener (Kafka's rule), which is how a client
 * on the host is told host-reachable addresses and a container the container ones.
 */
import type { HostPort, Listener } from "../shared/config/index.js";
import type { GrpcServer } from "../shared/grpc/server.js";

/** The listeners' servers, bound. */
export interface ListenerServers {
  /** In `listeners` order. */
  readonly servers: readonly GrpcServer[];
  /** Port each listener bound, by name. */
  readonly boundPorts: ReadonlyMap<string, number>;
  /** What each listener advertises, by name, port 0 replaced by the port bound. */
  readonly advertised: Readonly<Record<string, HostPort>>;
}

/**
 * Creates a server per listener with `create(name)` (services added), binds each, and returns
 * them. When a bind fails, the servers created so far are stopped and the error is rethrown.
 */
export async function listenOnEvery(
  listeners: readonly Listener[],
  create: (listenerName: string) => GrpcServer,
): Promise<ListenerServers> {
  const servers: GrpcServer[] = [];
  const boundPorts = new Map<string, number>();
  const advertised: Record<string, HostPort> = {};
  try {
    for (const listener of listeners) {
      const server = create(listener.name);
      servers.push(server);
      const port = await server.listen(listener.bind.host, listener.bind.port);
      boundPorts.set(listener.name, port);
      const { host, port: advertisedPort } = listener.advertised;
      advertised[listener.name] = Object.freeze({
        host,
        port: advertisedPort === 0 ? port : advertisedPort,
      });
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  return { servers, boundPorts, advertised: Object.freeze(advertised) };
}

/** `NAME://bound as advertised` per listener, for the start-up log line. */
export function describeListeners(
  listeners: readonly Listener[],
  bound: ListenerServers,
  format: (hp: HostPort) => string,
): string[] {
  return listeners.map((l) => {
    const port = bound.boundPorts.get(l.name) ?? l.bind.port;
    const advertised = bound.advertised[l.name] ?? l.advertised;
    return `${l.name}://${format({ host: l.bind.host, port })} as ${format(advertised)}`;
  });
}

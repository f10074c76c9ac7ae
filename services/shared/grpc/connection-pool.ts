/**
 * One gRPC client (one channel) per server address, shared by everything that talks to that
 * server: metadata, produce and fetch calls to broker 3 all use broker 3's channel. gRPC
 * multiplexes concurrent calls over it, so one is enough.
 */
import type * as grpc from "@grpc/grpc-js";
import { assert } from "../errors.js";
import { type ClientOptions, createClient } from "./client.js";
import type { ServiceClientConstructor } from "./proto.js";

/**
 * Most channels a pool keeps open. Addresses of brokers that left the cluster are never reused,
 * so past this bound the least recently used channel is closed (a later call re-opens it).
 */
export const CONNECTION_POOL_SIZE_MAX = 256;

/** A pool of clients of one service, keyed by `host:port`. */
export class ConnectionPool<C extends grpc.Client> {
  /** Insertion order is use order: a hit moves its entry to the end. */
  private readonly clients = new Map<string, C>();
  private closed = false;

  /**
   * @param Ctor The generated client class, e.g. `brokerService.Client`.
   * @param options Channel options for every client.
   * @param sizeMax Most open channels. Default {@link CONNECTION_POOL_SIZE_MAX}.
   */
  constructor(
    private readonly Ctor: ServiceClientConstructor<C>,
    private readonly options: ClientOptions = {},
    private readonly sizeMax: number = CONNECTION_POOL_SIZE_MAX,
  ) {
    assert(Number.isSafeInteger(sizeMax) && sizeMax > 0, "sizeMax > 0");
  }

  /** The client of `address` (`host:port`), created on first use. */
  get(address: string): C {
    assert(!this.closed, "connection pool used after close()");
    const existing = this.clients.get(address);
    if (existing !== undefined) {
      this.clients.delete(address);
      this.clients.set(address, existing);
      return existing;
    }
    if (this.clients.size >= this.sizeMax) {
      const [oldest, client] = this.clients.entries().next().value as [string, C];
      this.clients.delete(oldest);
      client.close();
    }
    const client = createClient(this.Ctor, address, this.options);
    this.clients.set(address, client);
    return client;
  }

  /** Number of open channels. */
  get size(): number {
    return this.clients.size;
  }

  /** Closes every channel; in-flight calls fail. Idempotent. */
  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

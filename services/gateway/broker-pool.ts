/**
 * The gateway's connections to brokers: one gRPC channel per live broker, keyed by broker id and
 * tied to the broker's registration. When a broker registers again (a restart: a new broker
 * epoch) or moves to another address, its old channel is closed and a new one dialled, so a
 * restarted broker is reached at once instead of after the old channel's reconnect backoff. A
 * broker that leaves the cluster has its channel closed, so the pool never holds more channels
 * than there are live brokers.
 */
import { formatHostPort } from "../shared/config/index.js";
import { assert } from "../shared/errors.js";
import type { BrokerServiceClient } from "../shared/generated/samsa/v1/BrokerService.js";
import { type ClientOptions, createClient } from "../shared/grpc/client.js";
import { brokerService } from "../shared/grpc/proto.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";

/** A live broker and the client to call it with. */
export interface BrokerTarget {
  readonly brokerId: number;
  /** `host:port` as the broker registered it. */
  readonly address: string;
  readonly client: BrokerServiceClient;
}

interface Entry extends BrokerTarget {
  readonly brokerEpoch: number;
}

export class BrokerPool {
  private readonly entries = new Map<number, Entry>();
  private readonly unsubscribe: () => void;
  private closed = false;

  /**
   * @param metadata The etcd mirror whose broker registrations the pool follows.
   * @param options Channel options of every broker client.
   */
  constructor(
    private readonly metadata: ClusterMetadata,
    private readonly options: ClientOptions = {},
  ) {
    this.unsubscribe = metadata.onChange((change) => {
      if (change.kind !== "broker" || change.event.type !== "delete") return;
      for (const [id, entry] of this.entries) {
        if (this.metadata.broker(id) === undefined) {
          this.entries.delete(id);
          entry.client.close();
        }
      }
    });
  }

  /** The target of live broker `id`; undefined when the broker is not registered. */
  get(id: number): BrokerTarget | undefined {
    assert(!this.closed, "broker pool used after close()");
    const registration = this.metadata.broker(id);
    if (registration === undefined) return undefined;
    const address = formatHostPort(registration);
    const existing = this.entries.get(id);
    if (existing?.address === address && existing.brokerEpoch === registration.brokerEpoch)
      return existing;
    existing?.client.close();
    const entry: Entry = {
      brokerId: id,
      address,
      brokerEpoch: registration.brokerEpoch,
      client: createClient(brokerService.Client, address, this.options),
    };
    this.entries.set(id, entry);
    return entry;
  }

  /** Open channels (one per live broker called so far). */
  get size(): number {
    return this.entries.size;
  }

  /** Closes every channel; in-flight calls fail. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    for (const entry of this.entries.values()) entry.client.close();
    this.entries.clear();
  }
}

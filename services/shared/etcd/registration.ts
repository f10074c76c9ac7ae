/**
 * Broker registration (docs/architecture.md#etcd-keys): `brokers/<id>` is put with a lease that
 * is kept alive; the key vanishing is how the cluster learns the broker is dead.
 *
 * **brokerEpoch = the revision of the registration put**, which is the create revision of the
 * key (the put is a create-only txn, so the two are equal). Every (re-)registration creates the
 * key anew, so the epoch strictly grows, like Kafka's czxid-based broker epoch.
 *
 *     start ──create-only txn──▶ registered ──lease lost──▶ revoke old lease, retry ──▶ registered
 *       │ key held by another lease                                    (new lease, new epoch)
 *       └─ wait ≤ that lease's TTL for it to expire, else INVALID_CONFIG
 *
 * The lease is lost when etcd says it expired or was revoked, or when etcd3 could not renew it
 * for 2 × TTL. `stop()` revokes the lease: the broker disappears at once.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3, ITxnResponse, Lease } from "etcd3";
import { BROKER_SESSION_TIMEOUT_MS_DEFAULT } from "../config/schema.js";
import { ErrorCode, SamsaError } from "../errors.js";
import { type Logger, silentLogger } from "../logger.js";
import {
  type BrokerEndpoint,
  type BrokerRegistration,
  type EtcdKeys,
  encodeBrokerEndpoint,
  type OfflinePartition,
  revisionNumber,
} from "./keys.js";

/** Default TTL of the registration lease, seconds (`broker.session.timeout.ms`'s default). */
export const brokerLeaseTtlSecondsDefault = BROKER_SESSION_TIMEOUT_MS_DEFAULT / 1000;
/** Added to a holder's lease TTL when waiting for a stale registration to expire, ms. */
export const registrationConflictGraceMs = 1_000;
/** Poll interval while waiting for a stale registration to expire, ms. */
const conflictPollMs = 200;
/** First pause between re-registration attempts, ms. */
export const reregistrationBackoffMsMin = 200;
/** Largest pause between re-registration attempts, ms. */
export const reregistrationBackoffMsMax = 2_000;

/** Options of {@link BrokerRegistrar}. */
export interface BrokerRegistrarOptions {
  client: Etcd3;
  keys: EtcdKeys;
  /** What is advertised at `brokers/<id>`. */
  endpoint: BrokerEndpoint;
  /** Lease TTL. Default {@link brokerLeaseTtlSecondsDefault} (s); etcd rounds small TTLs up. */
  ttlSeconds?: number;
  /**
   * How long `start()` waits for a key held by another lease to vanish before refusing. Default:
   * the holder's granted TTL + {@link registrationConflictGraceMs} (a crashed predecessor's key
   * expires by then; a live broker's does not).
   */
  conflictWaitMs?: number;
  logger?: Logger;
}

type Attempt =
  | { kind: "registered"; registration: BrokerRegistration }
  | { kind: "conflict"; holderLease: string | undefined };

/** Registers one broker and keeps it registered until `stop()`. */
export class BrokerRegistrar {
  private readonly client: Etcd3;
  private readonly key: string;
  private endpoint: BrokerEndpoint;
  private readonly ttlSeconds: number;
  private readonly conflictWaitMs: number | undefined;
  private readonly log: Logger;
  private readonly registeredListeners = new Set<(r: BrokerRegistration) => void>();
  private readonly lostListeners = new Set<(r: BrokerRegistration) => void>();
  private lease: Lease | undefined;
  private registration: BrokerRegistration | undefined;
  private stopped = false;
  private reregistering: Promise<void> | undefined;
  private interrupt = new AbortController();

  constructor(options: BrokerRegistrarOptions) {
    this.client = options.client;
    this.key = options.keys.broker(options.endpoint.id);
    this.endpoint = options.endpoint;
    this.ttlSeconds = options.ttlSeconds ?? brokerLeaseTtlSecondsDefault;
    this.conflictWaitMs = options.conflictWaitMs;
    this.log = (options.logger ?? silentLogger()).child({
      component: "broker-registration",
      brokerId: options.endpoint.id,
    });
  }

  /**
   * Registers the broker. Throws SamsaError(INVALID_CONFIG) when another live broker holds the
   * id, and etcd3's error when etcd cannot be reached within the call deadlines.
   */
  async start(): Promise<BrokerRegistration> {
    let deadline: number | undefined;
    for (;;) {
      const attempt = await this.tryRegister();
      if (attempt.kind === "registered") return attempt.registration;
      if (this.stopped) throw new Error(`broker ${this.endpoint.id} registration stopped`);
      deadline ??= Date.now() + (this.conflictWaitMs ?? (await this.holderWaitMs(attempt)));
      if (Date.now() >= deadline) {
        throw new SamsaError(
          ErrorCode.INVALID_CONFIG,
          `broker.id ${this.endpoint.id} is already registered`,
        );
      }
      this.log.info("broker.id held by another lease, waiting for it to expire", {
        holderLease: attempt.holderLease,
        waitMs: deadline - Date.now(),
      });
      await this.waitForKeyGone(deadline);
    }
  }

  /** The current registration; undefined while (re-)registering or after stop. */
  get current(): BrokerRegistration | undefined {
    return this.registration;
  }

  /** Calls `listener` after every successful (re-)registration; returns an unsubscribe. */
  onRegistered(listener: (registration: BrokerRegistration) => void): () => void {
    this.registeredListeners.add(listener);
    return () => this.registeredListeners.delete(listener);
  }

  /** Calls `listener` with the lost registration when its lease is lost. */
  onLost(listener: (registration: BrokerRegistration) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /**
   * Replaces the registration's `offlinePartitions` (a log dir went offline): rewritten in place
   * under the same lease, so the broker epoch (the key's create revision) stays; a later
   * re-registration carries it too. The put is guarded by that create revision: a registration
   * lost meanwhile is left to the re-registration. Throws etcd3's error when etcd cannot be
   * reached (the caller retries).
   */
  async setOfflinePartitions(partitions: ReadonlyArray<OfflinePartition>): Promise<void> {
    this.endpoint = { ...this.endpoint, offlinePartitions: [...partitions] };
    const registration = this.registration;
    const lease = this.lease;
    if (!registration || !lease || this.stopped) return;
    const leaseId = await lease.grant();
    const put = this.client.put(this.key).value(encodeBrokerEndpoint(this.endpoint)).lease(leaseId);
    await this.client.if(this.key, "Create", "==", registration.brokerEpoch).then(put).commit();
    this.registration = { ...this.endpoint, brokerEpoch: registration.brokerEpoch };
    this.log.warn("broker registration updated: partitions offline", {
      offlinePartitions: partitions.length,
    });
  }

  /** Stops re-registering and revokes the lease: the key disappears at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.interrupt.abort();
    await this.reregistering;
    const lease = this.lease;
    this.lease = undefined;
    this.registration = undefined;
    try {
      await lease?.revoke();
    } catch (err) {
      this.log.warn("cannot revoke broker lease; it expires by its TTL", { err: String(err) });
    }
  }

  private async tryRegister(): Promise<Attempt> {
    const lease = this.client.lease(this.ttlSeconds);
    lease.on("lost", (err) => this.onLeaseLost(lease, err));
    const leaseId = await lease.grant();
    const put = this.client.put(this.key).value(encodeBrokerEndpoint(this.endpoint)).lease(leaseId);
    let res: ITxnResponse;
    try {
      res = await this.client
        .if(this.key, "Create", "==", 0)
        .then(put)
        .else(this.client.get(this.key))
        .commit();
    } catch (err) {
      await lease.revoke().catch(() => undefined);
      throw err;
    }
    if (!res.succeeded || this.stopped) {
      await lease.revoke().catch(() => undefined);
      const holder = res.responses[0]?.response_range?.kvs[0];
      return { kind: "conflict", holderLease: holder?.lease };
    }
    const registration = { ...this.endpoint, brokerEpoch: revisionNumber(res.header.revision) };
    this.lease = lease;
    this.registration = registration;
    this.log.info("broker registered", { brokerEpoch: registration.brokerEpoch, leaseId });
    for (const listener of this.registeredListeners) this.safely(() => listener(registration));
    // Lost between the grant and now: its "lost" event was ignored (not ours yet), act on it.
    if (lease.revoked()) this.onLeaseLost(lease, new Error("lease lost while registering"));
    return { kind: "registered", registration };
  }

  private onLeaseLost(lease: Lease, err: Error): void {
    if (this.stopped || lease !== this.lease) return;
    const lost = this.registration;
    this.lease = undefined;
    this.registration = undefined;
    this.log.warn("broker lease lost, re-registering", {
      brokerEpoch: lost?.brokerEpoch,
      err: String(err),
    });
    if (lost) for (const listener of this.lostListeners) this.safely(() => listener(lost));
    this.reregistering = this.reregister(lease, lost?.brokerEpoch);
  }

  private async reregister(oldLease: Lease, oldEpoch: number | undefined): Promise<void> {
    let backoffMs = reregistrationBackoffMsMin;
    let oldRevoked = false;
    while (!this.stopped) {
      try {
        // Our old key may outlive our view of the lease (etcd3 gives up after 2 × TTL without
        // an answer): revoke it so the create-only put below can succeed.
        if (!oldRevoked) await oldLease.revoke();
        oldRevoked = true;
        const attempt = await this.tryRegister();
        if (attempt.kind === "registered") {
          const brokerEpoch = attempt.registration.brokerEpoch;
          this.log.warn("broker re-registered", { brokerEpoch, previousEpoch: oldEpoch });
          return;
        }
        if (this.stopped) return;
        this.log.error("broker.id taken by another lease while re-registering", {
          holderLease: attempt.holderLease,
        });
      } catch (err) {
        this.log.warn("broker re-registration failed, retrying", { err: String(err), backoffMs });
      }
      await sleep(backoffMs, undefined, { signal: this.interrupt.signal }).catch(() => undefined);
      backoffMs = Math.min(backoffMs * 2, reregistrationBackoffMsMax);
    }
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error("broker registration listener threw", { err: String(err) });
    }
  }

  /** The holder lease's granted TTL + grace, or our own TTL when etcd cannot tell. */
  private async holderWaitMs(attempt: Attempt & { kind: "conflict" }): Promise<number> {
    let ttlSeconds = this.ttlSeconds;
    if (attempt.holderLease !== undefined && attempt.holderLease !== "0") {
      try {
        const info = await this.client.leaseClient.leaseTimeToLive({ ID: attempt.holderLease });
        ttlSeconds = Math.max(Number(info.grantedTTL), 0);
      } catch (err) {
        this.log.debug("cannot read the holder's lease TTL", { err: String(err) });
      }
    }
    return ttlSeconds * 1000 + registrationConflictGraceMs;
  }

  private async waitForKeyGone(deadline: number): Promise<void> {
    while (Date.now() < deadline && !this.stopped) {
      const res = await this.client.get(this.key).exec();
      if (res.kvs.length === 0) return;
      const pauseMs = Math.min(conflictPollMs, Math.max(0, deadline - Date.now()));
      await sleep(pauseMs, undefined, { signal: this.interrupt.signal }).catch(() => undefined);
    }
  }
}

/**
 * Which vanished brokers the controller still counts as alive for a while (docs/operations.md,
 * "etcd loss"). A broker is alive while its registration key (under its etcd lease) exists. But
 * when etcd stops for longer than the leases and comes back, it expires every lease at once:
 * all brokers' keys vanish together, and the brokers, which never stopped, register again a
 * few seconds later. A controller that acted on those deletions at once would move leaders and
 * shrink ISRs for an outage of etcd alone. So a vanished broker keeps counting as alive for
 * {@link BROKER_REREGISTRATION_GRACE_MS} when its vanishing looks like etcd's and not like the
 * broker's:
 *
 * - another broker vanished within {@link BROKER_MASS_EXPIRY_WINDOW_MS} of it (leases expiring
 *   together: a single crashed broker does not wait, its lease already did), or
 * - it vanished at most the grace before this controller became active (or within the window
 *   after, while it loads its view): a controller elected right after an outage, whose own
 *   lease expired with the brokers', gives them the time to re-register, like Kafka's
 *   controller gives brokers a fresh session when it takes over. A broker that dies later, while
 *   this controller watches, is failed over after its session as usual (the replication
 *   benchmark's SIGKILL figure depends on it).
 *
 * A broker that registers again ends its grace; one that does not is dead when the grace ends
 * (`onGraceEnd` fires then, so that the elector sweeps again). Pure bookkeeping over
 * timestamps, unit-tested alone.
 */
import { assert } from "../shared/errors.js";

/**
 * How long a vanished broker counts as alive when its vanishing looks like an etcd outage, ms:
 * above the default broker session (6 s, the lease TTL: a live broker's keepalive notices the
 * lost lease within it) plus its registrar's retry.
 */
export const BROKER_REREGISTRATION_GRACE_MS = 10_000;
/** Brokers vanishing this close together count as a mass expiry (an etcd outage), ms. */
export const BROKER_MASS_EXPIRY_WINDOW_MS = 2_000;

/** Options of {@link BrokerLiveness}. */
export interface BrokerLivenessOptions {
  /** Grace of a vanished broker, ms. Default {@link BROKER_REREGISTRATION_GRACE_MS}. */
  graceMs?: number;
  /** Mass expiry window, ms. Default {@link BROKER_MASS_EXPIRY_WINDOW_MS}. */
  massWindowMs?: number;
  /** Called when a grace ends without the broker back (sweep again). */
  onGraceEnd?: () => void;
  /** Clock, ms. Default `Date.now`. */
  now?: () => number;
}

export class BrokerLiveness {
  private registered = new Set<number>();
  /** Brokers not registered now, by when their key vanished (kept for the grace only). */
  private readonly vanishedAt = new Map<number, number>();
  /** Every vanishing of the last grace and window, re-registered brokers' too (for company). */
  private history: { id: number; at: number }[] = [];
  private activeSinceMs: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly graceMs: number;
  private readonly massWindowMs: number;
  private readonly now: () => number;

  constructor(private readonly options: BrokerLivenessOptions = {}) {
    this.graceMs = options.graceMs ?? BROKER_REREGISTRATION_GRACE_MS;
    this.massWindowMs = options.massWindowMs ?? BROKER_MASS_EXPIRY_WINDOW_MS;
    this.now = options.now ?? Date.now;
    assert(this.graceMs >= 0 && this.massWindowMs >= 0, "grace and window ≥ 0");
  }

  /** The registered brokers now (call on every broker change and resync). */
  observe(registered: Iterable<number>): void {
    const now = this.now();
    const next = new Set(registered);
    for (const id of this.registered) {
      if (next.has(id)) continue;
      this.vanishedAt.set(id, now);
      this.history.push({ id, at: now });
    }
    for (const id of next) this.vanishedAt.delete(id);
    this.registered = next;
    this.forgetExpired(now);
    this.schedule();
  }

  /** This controller became active now. */
  becameActive(): void {
    this.activeSinceMs = this.now();
    this.schedule();
  }

  /** This controller is no longer active. */
  deposed(): void {
    this.activeSinceMs = undefined;
  }

  /** Vanished brokers still counted as alive now (not the registered ones). */
  graced(): ReadonlySet<number> {
    const now = this.now();
    const out = new Set<number>();
    for (const [id, at] of this.vanishedAt) {
      if (now - at < this.graceMs && this.looksLikeEtcd(id, at)) out.add(id);
    }
    return out;
  }

  /** Stops the grace timer. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private looksLikeEtcd(id: number, at: number): boolean {
    for (const v of this.history) {
      if (v.id !== id && Math.abs(v.at - at) <= this.massWindowMs) return true;
    }
    // Vanished before this controller became active (or while it was still loading its view,
    // within the window): it never saw the broker go. A broker that dies later while this
    // controller watches is a dead broker like any other, failed over after its session.
    const since = this.activeSinceMs;
    return since !== undefined && at - since <= this.massWindowMs && since - at < this.graceMs;
  }

  private forgetExpired(now: number): void {
    for (const [id, at] of this.vanishedAt) {
      // Kept a window longer than the grace, so a later vanishing still sees it as company.
      if (now - at >= this.graceMs + this.massWindowMs) this.vanishedAt.delete(id);
    }
    this.history = this.history.filter((v) => now - v.at < this.graceMs + this.massWindowMs);
  }

  /** Arms a timer for the earliest end of a grace now in force. */
  private schedule(): void {
    this.close();
    const now = this.now();
    let earliest: number | undefined;
    for (const id of this.graced()) {
      const end = this.vanishedAt.get(id)! + this.graceMs;
      earliest = earliest === undefined ? end : Math.min(earliest, end);
    }
    if (earliest === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.forgetExpired(this.now());
        this.options.onGraceEnd?.();
        this.schedule();
      },
      Math.max(0, earliest - now) + 1,
    );
    this.timer.unref();
  }
}

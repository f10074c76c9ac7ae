/**
 * A local, decoded copy of everything under one etcd prefix, kept current by a watch
 * (docs/architecture.md#metadata-flow): list the prefix (remember the revision), watch from
 * revision + 1, apply events in order. It never misses an event:
 *
 * - on a disconnect it re-watches from the last revision it applied (its own bookkeeping: etcd3's
 *   auto-resume restarts from the *header* revision of a watch response, which can be ahead of
 *   events not delivered yet, so it is not used);
 * - on a watch error, a compacted revision included, it re-lists and diffs the list against the
 *   map, emitting the puts and deletes that it missed, then watches again.
 *
 * The map holds exactly the keys under the prefix whose value decodes; a value that does not
 * decode is logged and treated as absent (a `delete` if it replaced a good value).
 *
 *     list ──▶ watch(rev+1) ──disconnected──▶ watch(rev+1)
 *      ▲          │
 *      └─ error ──┘   (compaction, cancel, bad response; with backoff)
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type Etcd3, type IWatchResponse, Range } from "etcd3";
import { type Logger, silentLogger } from "../logger.js";
import { type EtcdKeyValue, revisionNumber, toEtcdKeyValue } from "./keys.js";

/** First pause before re-listing or re-watching after a failure, ms. */
export const prefixCacheRetryBackoffMsMin = 100;
/** Largest pause before re-listing or re-watching after failures, ms. */
export const prefixCacheRetryBackoffMsMax = 2_000;
/** Keys fetched per range request when listing (bounds every response). */
export const prefixCacheListPageKeys = 1_000;
/** Longest wait for etcd3 to confirm a watcher's cancellation, ms. */
const watchCancelTimeoutMs = 1_000;

/** A change applied to the cache; `revision` is the etcd revision of the change. */
export type CacheEvent<T> =
  | { type: "put"; key: string; value: T; prev: T | undefined; revision: number }
  | { type: "delete"; key: string; prev: T; revision: number };

/** Options of {@link PrefixCache}. */
export interface PrefixCacheOptions<T> {
  client: Etcd3;
  /** Full key prefix to mirror, e.g. `keys.brokersPrefix()`. */
  prefix: string;
  /** Decodes one key-value; throwing (e.g. MetadataDecodeError) marks the key absent. */
  decode: (kv: EtcdKeyValue) => T;
  logger?: Logger;
}

type WatchOutcome = "disconnected" | "error" | "closed";

interface Entry<T> {
  value: T;
  modRevision: number;
}

/** A watched, decoded mirror of an etcd prefix. See the module comment. */
export class PrefixCache<T> {
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly decode: (kv: EtcdKeyValue) => T;
  private readonly log: Logger;
  private readonly map = new Map<string, Entry<T>>();
  private readonly changeListeners = new Set<(event: CacheEvent<T>) => void>();
  private readonly resyncListeners = new Set<(revision: number) => void>();
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (err: Error) => void;
  private running: Promise<void> | undefined;
  private closed = false;
  private interrupt: (() => void) | undefined;
  private appliedRevision = 0;
  private resyncCount = 0;

  constructor(options: PrefixCacheOptions<T>) {
    this.client = options.client;
    this.prefix = options.prefix;
    this.decode = options.decode;
    this.log = (options.logger ?? silentLogger()).child({
      component: "prefix-cache",
      prefix: options.prefix,
    });
    this.readyPromise = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.readyPromise.catch(() => undefined); // rejected only by close(); callers see it
  }

  /** Starts listing and watching (idempotent); resolves like {@link ready}. */
  start(): Promise<void> {
    this.running ??= this.run();
    return this.readyPromise;
  }

  /** Resolves once the first list is applied; rejects if closed before that. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** The decoded value at a full key, if present. */
  get(key: string): T | undefined {
    return this.map.get(key)?.value;
  }

  /** `[full key, value]` pairs, in no particular order. */
  *entries(): IterableIterator<[string, T]> {
    for (const [key, entry] of this.map) yield [key, entry.value];
  }

  /** Number of keys held. */
  get size(): number {
    return this.map.size;
  }

  /** The etcd revision the cache reflects (0 before the first list). */
  get revision(): number {
    return this.appliedRevision;
  }

  /** How many times the cache re-listed after its first list. */
  get resyncs(): number {
    return this.resyncCount;
  }

  /** Calls `listener` for every change, in revision order; returns an unsubscribe function. */
  onChange(listener: (event: CacheEvent<T>) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Calls `listener` after every re-list with the revision listed at. */
  onResync(listener: (revision: number) => void): () => void {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  /** Stops watching. The map keeps its last content; no further events. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rejectReady(new Error(`prefix cache ${this.prefix} closed`));
    this.interrupt?.();
    await this.running;
  }

  private async run(): Promise<void> {
    let listed = false;
    let backoffMs = prefixCacheRetryBackoffMsMin;
    while (!this.closed) {
      try {
        if (!listed) {
          await this.list();
          listed = true;
          this.resolveReady();
          backoffMs = prefixCacheRetryBackoffMsMin;
        }
        const { outcome, connected } = await this.watch();
        if (outcome === "closed") return;
        if (outcome === "error") listed = false;
        if (connected) backoffMs = prefixCacheRetryBackoffMsMin;
      } catch (err) {
        this.log.warn("etcd list failed, retrying", { err: String(err), backoffMs });
      }
      await this.pause(backoffMs);
      backoffMs = Math.min(backoffMs * 2, prefixCacheRetryBackoffMsMax);
    }
  }

  private async pause(ms: number): Promise<void> {
    if (this.closed) return;
    const ac = new AbortController();
    this.interrupt = () => ac.abort();
    await sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined);
    this.interrupt = undefined;
  }

  /** Lists the prefix page by page at one revision, then diffs it into the map. */
  private async list(): Promise<void> {
    const all = Range.prefix(this.prefix);
    let start = all.start;
    let revision: number | undefined;
    const seen = new Set<string>();
    const changed: EtcdKeyValue[] = [];
    for (;;) {
      const query = this.client.getAll().inRange({ start, end: all.end });
      if (revision !== undefined) query.revision(revision);
      const page = await query.limit(prefixCacheListPageKeys).exec();
      revision ??= revisionNumber(page.header.revision);
      for (const raw of page.kvs) {
        const kv = toEtcdKeyValue(raw);
        seen.add(kv.key);
        if (this.map.get(kv.key)?.modRevision !== kv.modRevision) changed.push(kv);
      }
      if (!page.more || page.kvs.length === 0) break;
      start = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.from([0])]);
    }
    // Only now, with the whole list in hand, touch the map: a failed page leaves it as it was.
    changed.sort((a, b) => a.modRevision - b.modRevision);
    for (const kv of changed) this.applyPut(kv);
    for (const key of [...this.map.keys()]) {
      if (!seen.has(key)) this.applyDelete(key, revision);
    }
    const first = this.appliedRevision === 0;
    this.appliedRevision = revision;
    if (!first) {
      this.resyncCount++;
      this.log.info("etcd prefix re-listed", { revision, keys: this.map.size });
      for (const listener of this.resyncListeners) this.safely(() => listener(revision));
    }
  }

  /** Watches from the applied revision + 1 until the watch breaks or the cache closes. */
  private async watch(): Promise<{ outcome: WatchOutcome; connected: boolean }> {
    const from = this.appliedRevision + 1;
    const watcher = this.client.watch().prefix(this.prefix).startRevision(String(from)).watcher();
    let connected = false;
    let done = false;
    let droppedByEtcd3 = false;
    const outcome = await new Promise<WatchOutcome>((settle) => {
      const resolve = (o: WatchOutcome) => {
        done = true;
        settle(o);
      };
      // Listeners are attached synchronously: with `await builder.create()`, events arriving in
      // the same tick as the creation could be emitted before anyone listens.
      watcher.on("connected", () => {
        connected = true;
      });
      watcher.on("data", (res) => {
        if (done) return;
        // etcd3 rethrows listener errors asynchronously (a crash): never throw from here.
        try {
          this.applyResponse(res, from);
        } catch (err) {
          this.log.error("cannot apply etcd watch response", { err: String(err) });
          resolve("error");
        }
      });
      // Listeners stay attached after the outcome (a late "error" must not go unheard), so
      // they only log the first time.
      watcher.on("disconnected", (err) => {
        if (done) return;
        this.log.warn("etcd watch disconnected", { err: String(err), revision: this.revision });
        resolve("disconnected");
      });
      watcher.on("error", (err) => {
        droppedByEtcd3 = true;
        if (done) return;
        this.log.warn("etcd watch failed, re-listing", {
          err: String(err),
          revision: this.revision,
        });
        resolve("error");
      });
      watcher.on("end", () => resolve("disconnected"));
      this.interrupt = () => resolve("closed");
      if (this.closed) resolve("closed");
    });
    this.interrupt = undefined;
    // After its "error" etcd3 has already dropped the watcher; cancelling would wait for an
    // answer that never comes. Otherwise cancel, bounded (the stream may be half dead).
    if (!droppedByEtcd3) {
      await Promise.race([watcher.cancel().catch(() => undefined), sleep(watchCancelTimeoutMs)]);
    }
    return { outcome, connected };
  }

  private applyResponse(res: IWatchResponse, from: number): void {
    if (res.events.length === 0) {
      // A progress notification: etcd sends them only to watchers that are caught up.
      this.appliedRevision = Math.max(this.appliedRevision, revisionNumber(res.header.revision));
      return;
    }
    let revision = this.appliedRevision;
    for (const event of res.events) {
      const kv = toEtcdKeyValue(event.kv);
      if (kv.modRevision < from) continue;
      if (event.type === "Put") this.applyPut(kv);
      else this.applyDelete(kv.key, kv.modRevision);
      revision = Math.max(revision, kv.modRevision);
    }
    // Updated after the whole response: one txn's events share a revision.
    this.appliedRevision = revision;
  }

  private applyPut(kv: EtcdKeyValue): void {
    let value: T;
    try {
      value = this.decode(kv);
    } catch (err) {
      this.log.error("undecodable etcd value, treated as absent", {
        key: kv.key,
        err: String(err),
      });
      this.applyDelete(kv.key, kv.modRevision);
      return;
    }
    const prev = this.map.get(kv.key)?.value;
    this.map.set(kv.key, { value, modRevision: kv.modRevision });
    this.emit({ type: "put", key: kv.key, value, prev, revision: kv.modRevision });
  }

  private applyDelete(key: string, revision: number): void {
    const prev = this.map.get(key);
    if (!prev) return;
    this.map.delete(key);
    this.emit({ type: "delete", key, prev: prev.value, revision });
  }

  private emit(event: CacheEvent<T>): void {
    for (const listener of this.changeListeners) this.safely(() => listener(event));
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error("prefix cache listener threw", { err: String(err) });
    }
  }
}

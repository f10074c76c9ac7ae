/**
 * Controller election and fencing (docs/architecture.md#metadata-flow).
 *
 * Each candidate holds one key `controller/<lease-id>` under its own lease (etcd3's `Campaign`,
 * the port of Go's `concurrency.Election`); the candidate with the oldest key leads. The
 * **controller epoch is the create revision of the leader's key**: a later leader's key was
 * created later, so epochs strictly grow.
 *
 * etcd3's `client.election(name)` always nests keys under `election/<name>/`; to keep the
 * agreed layout (`controller/`) a `Campaign` is built directly on the `controller/` namespace.
 * The current leader is observed through a {@link PrefixCache} of that namespace, which survives
 * compaction and reconnects (etcd3's `ElectionObserver` stops at its first watch error).
 *
 *     campaign ──elected──▶ leader ──lease lost / key deleted / resign()──▶ deposed
 *        ▲                                                         │
 *        └───────────── backoff, new lease (unless resigned) ◀─────┘
 *
 * A controller writes only through {@link fencedTxn}: the txn also compares its campaign key's
 * create revision, so a deposed controller's write fails with NOT_CONTROLLER.
 */
import {
  Campaign,
  type ComparatorBuilder,
  type Etcd3,
  type IOperation,
  type IRequestOp,
  type IResponseOp,
} from "etcd3";
import { ErrorCode, SamsaError } from "../errors.js";
import { type Logger, silentLogger } from "../logger.js";
import {
  type ControllerCandidate,
  type ControllerInfo,
  decodeControllerInfo,
  type EtcdKeys,
  encodeControllerCandidate,
  revisionNumber,
} from "./keys.js";
import { PrefixCache } from "./prefix-cache.js";

/** Default TTL of a candidate's lease, seconds: how long a dead controller stays leader. */
export const controllerSessionTtlSecondsDefault = 6;
/** First pause before campaigning again after a campaign ended, ms. */
export const recampaignBackoffMsMin = 200;
/** Largest pause before campaigning again after repeated failures, ms. */
export const recampaignBackoffMsMax = 2_000;

/** Our leadership while elected: what {@link fencedTxn} fences on. */
export type ControllerLeadership = ControllerInfo;

/** Options of {@link ControllerElection}. */
export interface ControllerElectionOptions {
  client: Etcd3;
  keys: EtcdKeys;
  /** What this candidate announces. */
  candidate: ControllerCandidate;
  /** Candidate lease TTL. Default {@link controllerSessionTtlSecondsDefault} (s). */
  ttlSeconds?: number;
  logger?: Logger;
}

/** Campaigns for the controller role and observes who holds it. See the module comment. */
export class ControllerElection {
  private readonly client: Etcd3;
  private readonly keys: EtcdKeys;
  private readonly candidate: ControllerCandidate;
  private readonly ttlSeconds: number;
  private readonly log: Logger;
  private readonly cache: PrefixCache<ControllerInfo>;
  private readonly electedListeners = new Set<(l: ControllerLeadership) => void>();
  private readonly deposedListeners = new Set<(l: ControllerLeadership, why: string) => void>();
  private readonly leaderListeners = new Set<(l: ControllerInfo | undefined) => void>();
  private campaign: Campaign | undefined;
  private campaignKey: string | undefined;
  private campaignStartedAt = 0;
  private elected: ControllerLeadership | undefined;
  private lastLeader: ControllerInfo | undefined;
  private backoffMs = recampaignBackoffMsMin;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: ControllerElectionOptions) {
    this.client = options.client;
    this.keys = options.keys;
    this.candidate = options.candidate;
    this.ttlSeconds = options.ttlSeconds ?? controllerSessionTtlSecondsDefault;
    this.log = (options.logger ?? silentLogger()).child({
      component: "controller-election",
      controllerId: options.candidate.id,
    });
    this.cache = new PrefixCache({
      client: options.client,
      prefix: options.keys.controllerPrefix(),
      decode: decodeControllerInfo,
      logger: options.logger,
    });
    this.cache.onChange((event) => {
      if (event.type === "delete" && event.key === this.campaignKey && this.campaign) {
        void this.restart(this.campaign, "campaign key deleted");
      }
      this.checkLeaderChange();
    });
  }

  /** Starts observing (resolves once the current leader is known) and campaigning. */
  async start(): Promise<void> {
    await this.cache.start();
    this.checkLeaderChange();
    if (!this.stopped && !this.campaign) this.startCampaign();
  }

  /** The current leader as observed (the oldest candidate key), if any. */
  leader(): ControllerInfo | undefined {
    let oldest: ControllerInfo | undefined;
    for (const [, info] of this.cache.entries()) {
      if (!oldest || info.epoch < oldest.epoch) oldest = info;
    }
    return oldest;
  }

  /** Our leadership while we are the elected controller, else undefined. */
  get leadership(): ControllerLeadership | undefined {
    return this.elected;
  }

  /** Calls `listener` each time this candidate is elected; returns an unsubscribe. */
  onElected(listener: (leadership: ControllerLeadership) => void): () => void {
    this.electedListeners.add(listener);
    return () => this.electedListeners.delete(listener);
  }

  /** Calls `listener` when this candidate stops being the controller (any reason). */
  onDeposed(listener: (leadership: ControllerLeadership, reason: string) => void): () => void {
    this.deposedListeners.add(listener);
    return () => this.deposedListeners.delete(listener);
  }

  /** Calls `listener` when the observed leader changes (another candidate included). */
  onLeaderChange(listener: (leader: ControllerInfo | undefined) => void): () => void {
    this.leaderListeners.add(listener);
    return () => this.leaderListeners.delete(listener);
  }

  /** Gives up leadership (or candidacy) for good: revokes the lease, stops campaigning. */
  async resign(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const campaign = this.campaign;
    if (campaign) await this.restart(campaign, "resigned");
  }

  /** {@link resign}, then stops observing. */
  async close(): Promise<void> {
    await this.resign();
    await this.cache.close();
  }

  private startCampaign(): void {
    const namespace = this.client.namespace(this.keys.controllerPrefix());
    const campaign = new Campaign(
      namespace,
      encodeControllerCandidate(this.candidate),
      this.ttlSeconds,
    );
    this.campaign = campaign;
    this.campaignKey = undefined;
    this.campaignStartedAt = Date.now();
    campaign.on("elected", () => void this.handleElected(campaign));
    campaign.on("error", (err) => void this.restart(campaign, `campaign failed: ${err}`));
    campaign.getCampaignKey().then(
      (key) => {
        if (this.campaign === campaign) this.campaignKey = key;
      },
      () => undefined, // the campaign's "error" reports it
    );
  }

  private async handleElected(campaign: Campaign): Promise<void> {
    try {
      const key = await campaign.getCampaignKey();
      const res = await this.client.get(key).exec();
      const kv = res.kvs[0];
      if (!kv) throw new Error("campaign key vanished");
      if (campaign !== this.campaign || this.stopped) return;
      const leadership = { ...this.candidate, epoch: revisionNumber(kv.create_revision), key };
      this.elected = leadership;
      this.backoffMs = recampaignBackoffMsMin;
      this.log.info("elected controller", { epoch: leadership.epoch });
      for (const listener of this.electedListeners) this.safely(() => listener(leadership));
    } catch (err) {
      await this.restart(campaign, `cannot confirm election: ${err}`);
    }
  }

  /** Drops `campaign` (deposing us if elected) and, unless stopped, campaigns again later. */
  private async restart(campaign: Campaign, reason: string): Promise<void> {
    if (campaign !== this.campaign) return;
    this.campaign = undefined;
    this.campaignKey = undefined;
    const was = this.elected;
    this.elected = undefined;
    if (was) {
      this.log.warn("controller deposed", { epoch: was.epoch, reason });
      for (const listener of this.deposedListeners) this.safely(() => listener(was, reason));
    } else if (!this.stopped) {
      this.log.warn("controller campaign restarted", { reason });
    }
    if (!this.stopped) {
      if (Date.now() - this.campaignStartedAt > recampaignBackoffMsMax * 5) {
        this.backoffMs = recampaignBackoffMsMin; // a long-lived campaign: not a failure loop
      }
      this.retryTimer = setTimeout(() => {
        if (!this.stopped && !this.campaign) this.startCampaign();
      }, this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, recampaignBackoffMsMax);
    }
    await campaign.resign().catch((err) => {
      this.log.debug("cannot revoke campaign lease; it expires by its TTL", { err: String(err) });
    });
  }

  private checkLeaderChange(): void {
    const leader = this.leader();
    if (leader?.key === this.lastLeader?.key && leader?.epoch === this.lastLeader?.epoch) return;
    this.lastLeader = leader;
    for (const listener of this.leaderListeners) this.safely(() => listener(leader));
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error("controller election listener threw", { err: String(err) });
    }
  }
}

type CompareColumn = Parameters<ComparatorBuilder["and"]>[1];
type CompareOp = Parameters<ComparatorBuilder["and"]>[2];
type TxnOp = IRequestOp | IOperation;

/** Outcome of a {@link FencedTxn} whose fence held. */
export interface FencedTxnResult {
  /** Whether the caller's own compares held (and the `do` ops ran). */
  readonly succeeded: boolean;
  /** Revision of the txn. */
  readonly revision: number;
  /** Responses of the `do` ops (succeeded) or of the caller's `orElse` ops. */
  readonly responses: IResponseOp[];
}

/**
 * An etcd txn that commits only while `leadership` is current: its first compare is "the
 * campaign key's create revision equals our epoch" (a deleted key has 0). Add compares with
 * `and`, ops with `do`/`orElse`, then `commit()` (no `then` method: the object must not be a
 * thenable, or `await` would swallow it):
 *
 * ```ts
 * await fencedTxn(client, election.leadership!)
 *   .and(keys.topic(name), "Create", "==", 0)
 *   .do(client.put(keys.topic(name)).value(json))
 *   .commit();
 * ```
 *
 * Pass builders (`client.put(...)`) without awaiting them: awaiting a builder runs it.
 */
export class FencedTxn {
  private readonly compares: [string, CompareColumn, CompareOp, string | number][] = [];
  private readonly thenOps: TxnOp[] = [];
  private readonly elseOps: TxnOp[] = [];

  constructor(
    private readonly client: Etcd3,
    private readonly leadership: ControllerLeadership,
  ) {}

  /** Adds a compare of the caller's (ANDed with the fence). */
  and(key: string, column: CompareColumn, cmp: CompareOp, value: string | number): this {
    this.compares.push([key, column, cmp, value]);
    return this;
  }

  /** Ops run when the fence and every compare hold. */
  do(...ops: TxnOp[]): this {
    this.thenOps.push(...ops);
    return this;
  }

  /** Ops run when the fence holds but a compare of the caller's does not. */
  orElse(...ops: TxnOp[]): this {
    this.elseOps.push(...ops);
    return this;
  }

  /**
   * Commits. Throws SamsaError(NOT_CONTROLLER) when the leadership is no longer current; returns
   * `succeeded: false` when only the caller's compares failed.
   */
  async commit(): Promise<FencedTxnResult> {
    const { key, epoch } = this.leadership;
    let txn = this.client.if(key, "Create", "==", epoch);
    for (const [k, column, cmp, value] of this.compares) txn = txn.and(k, column, cmp, value);
    const res = await txn
      .then(...this.thenOps)
      .else(...this.elseOps, this.client.get(key))
      .commit();
    const revision = revisionNumber(res.header.revision);
    if (res.succeeded) return { succeeded: true, revision, responses: res.responses };
    const fence = res.responses[res.responses.length - 1]?.response_range?.kvs[0];
    if (!fence || revisionNumber(fence.create_revision) !== epoch) {
      throw new SamsaError(
        ErrorCode.NOT_CONTROLLER,
        `controller epoch ${epoch} is no longer current`,
      );
    }
    return { succeeded: false, revision, responses: res.responses.slice(0, -1) };
  }
}

/** Starts a {@link FencedTxn}: every controller write goes through one. */
export function fencedTxn(client: Etcd3, leadership: ControllerLeadership): FencedTxn {
  return new FencedTxn(client, leadership);
}

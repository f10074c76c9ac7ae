/**
 * InitProducerId on a broker (Kafka's `RPCProducerIdManager`, KIP-730): ids are handed out from
 * a block the active controller allocated (AllocateProducerIds; the counter lives in etcd, so
 * blocks never overlap across brokers, restarts and controller failovers). The next block is
 * fetched when the current one runs low, one request at a time; callers wait for it only when
 * the block is used up. An id unused when the broker stops is lost, never handed out twice.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { unary } from "../shared/grpc/client.js";
import { ConnectionPool } from "../shared/grpc/connection-pool.js";
import type { AllocateProducerIdsResponse__Output } from "../shared/generated/samsa/internal/v1/AllocateProducerIdsResponse.js";
import { type BrokerLifecycleServiceClient, brokerLifecycleService } from "../shared/grpc/proto.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";

/** Deadline of one AllocateProducerIds call, ms. */
export const ALLOCATE_PRODUCER_IDS_CALL_MS = 5_000;
/** The next block is fetched ahead once fewer ids than this are left in the current one. */
export const PRODUCER_ID_PREFETCH_LEFT = 100;

/** A block: ids [start, start + count). */
export interface IdBlock {
  readonly start: number;
  readonly count: number;
}

/** Hands out producer ids from controller-allocated blocks. */
export class ProducerIdManager {
  private next = 0;
  private end = 0;
  /** A block fetched ahead, used once the current one is used up. */
  private ahead: IdBlock | undefined;
  private fetching: Promise<void> | undefined;

  constructor(
    private readonly allocate: () => Promise<IdBlock>,
    private readonly logger: Logger,
  ) {}

  /**
   * The next unused id.
   * @throws SamsaError (retriable) when no block could be allocated
   */
  async nextId(): Promise<number> {
    while (this.next >= this.end) {
      if (this.ahead !== undefined) {
        this.next = this.ahead.start;
        this.end = this.ahead.start + this.ahead.count;
        this.ahead = undefined;
      } else await this.fetchBlock();
    }
    const id = this.next++;
    const left = this.end - this.next;
    if (this.ahead === undefined && left < PRODUCER_ID_PREFETCH_LEFT) {
      // Ahead of need; a failure here shows again when the block is used up.
      this.fetchBlock().catch(() => undefined);
    }
    return id;
  }

  private fetchBlock(): Promise<void> {
    this.fetching ??= this.allocate()
      .then((block) => {
        this.ahead = block;
        this.logger.info("got a producer id block", { start: block.start, count: block.count });
      })
      .finally(() => {
        this.fetching = undefined;
      });
    return this.fetching;
  }
}

/** What {@link controllerAllocator} needs of the broker. */
export interface AllocatorDeps {
  readonly brokerId: number;
  readonly brokerEpoch: () => number;
  readonly metadata: ClusterMetadata;
}

/**
 * AllocateProducerIds on the active controller (as etcd names it), through `pool`.
 * @throws LEADER_NOT_AVAILABLE no active controller known, or the call failed retriably
 */
export function controllerAllocator(
  deps: AllocatorDeps,
  pool: ConnectionPool<BrokerLifecycleServiceClient>,
): () => Promise<IdBlock> {
  return async () => {
    const active = deps.metadata.activeController();
    if (active === undefined) {
      throw new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "no active controller for producer ids");
    }
    const request = { brokerId: deps.brokerId, brokerEpoch: String(deps.brokerEpoch()) };
    let res: AllocateProducerIdsResponse__Output;
    try {
      res = await unary(pool.get(active.address), "AllocateProducerIds", request, {
        deadlineMs: ALLOCATE_PRODUCER_IDS_CALL_MS,
      });
    } catch (err) {
      if (err instanceof SamsaError && !err.retriable) throw err;
      throw new SamsaError(
        ErrorCode.LEADER_NOT_AVAILABLE,
        `producer id block from controller ${active.address}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const start = Number(res.producerIdStart);
    if (!Number.isSafeInteger(start) || start < 0 || res.producerIdCount <= 0) {
      throw new SamsaError(ErrorCode.UNKNOWN, `bad producer id block ${res.producerIdStart}`);
    }
    return { start, count: res.producerIdCount };
  };
}

/** A pool of channels to controllers for {@link controllerAllocator}. */
export function controllerPool(): ConnectionPool<BrokerLifecycleServiceClient> {
  return new ConnectionPool(brokerLifecycleService.Client);
}

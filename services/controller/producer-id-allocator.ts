/**
 * Producer id blocks (Kafka's KIP-730 `ProducerIdManager` on the controller): a broker asks the
 * active controller for a block of {@link PRODUCER_ID_BLOCK_SIZE} ids and hands them out through
 * InitProducerId. The next free id lives in etcd (`producer-ids/next`); the controller advances
 * it with a compare-and-swap on the key's `mod_revision`, fenced by its controller epoch, so
 * two blocks never overlap, whichever controller allocates them and across failovers.
 */
import type { Etcd3 } from "etcd3";
import { type ControllerLeadership, fencedTxn } from "../shared/etcd/election.js";
import type { EtcdKeys } from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";

/** Ids per block (Kafka's 1000). */
export const PRODUCER_ID_BLOCK_SIZE = 1000;
/** CAS attempts of one allocation before it fails retriably. */
export const PRODUCER_ID_CAS_ATTEMPTS_MAX = 10;
/** Largest producer id (int64 in Kafka; kept to JS-safe integers here). */
export const PRODUCER_ID_MAX = Number.MAX_SAFE_INTEGER;

/** A block of producer ids: [start, start + count). */
export interface ProducerIdBlock {
  readonly start: number;
  readonly count: number;
}

/** Reads the counter; undefined when it was never written. */
async function readNext(
  client: Etcd3,
  key: string,
): Promise<{ next: number; modRevision: string } | undefined> {
  const res = await client.get(key).exec();
  const kv = res.kvs[0];
  if (kv === undefined) return undefined;
  const next = Number(kv.value.toString());
  if (!Number.isSafeInteger(next) || next < 0) {
    throw new SamsaError(ErrorCode.UNKNOWN, `${key} holds ${kv.value.toString()}, not an id`);
  }
  return { next, modRevision: kv.mod_revision };
}

/**
 * Allocates the next block under `leadership`.
 * @throws NOT_CONTROLLER the leadership is no longer current (from the fence)
 * @throws REQUEST_TIMED_OUT every CAS attempt lost a race (retriable)
 */
export async function allocateProducerIdBlock(
  client: Etcd3,
  keys: EtcdKeys,
  leadership: ControllerLeadership,
  size = PRODUCER_ID_BLOCK_SIZE,
): Promise<ProducerIdBlock> {
  const key = keys.producerIdsNext();
  for (let attempt = 0; attempt < PRODUCER_ID_CAS_ATTEMPTS_MAX; attempt++) {
    const current = await readNext(client, key);
    const start = current?.next ?? 0;
    if (start + size > PRODUCER_ID_MAX) {
      throw new SamsaError(ErrorCode.UNKNOWN, "producer ids are exhausted");
    }
    const txn = fencedTxn(client, leadership);
    if (current === undefined) txn.and(key, "Create", "==", 0);
    else txn.and(key, "Mod", "==", current.modRevision);
    const res = await txn.do(client.put(key).value(String(start + size))).commit();
    if (res.succeeded) return { start, count: size };
  }
  throw new SamsaError(
    ErrorCode.REQUEST_TIMED_OUT,
    `producer id block: ${PRODUCER_ID_CAS_ATTEMPTS_MAX} compare-and-swap attempts lost`,
  );
}

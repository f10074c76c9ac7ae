/**
 * Choosing a partition for a record, as Kafka's clients do: a keyed record goes to
 * `toPositive(murmur2(key)) % numPartitions` (Kafka's `Utils.murmur2`, so the same key lands on
 * the same partition as with a Java, librdkafka-with-murmur2 or kafkajs producer), a record
 * without a key goes round robin over the topic's partitions.
 */
import { assert } from "./errors.js";

/** Seed of Kafka's murmur2 (`Utils.murmur2`). */
export const MURMUR2_SEED = 0x9747b28c;
/** Multiplier of murmur2. */
const MURMUR2_M = 0x5bd1e995;
/** Shift of murmur2's mixing step. */
const MURMUR2_R = 24;
/** Mask that clears the sign bit (Kafka's `Utils.toPositive`). */
const POSITIVE_MASK = 0x7fffffff;

/**
 * Kafka's `Utils.murmur2`: the 32-bit MurmurHash2 of `data` with seed {@link MURMUR2_SEED},
 * returned as a signed 32-bit integer exactly like Java's `int` result (e.g. `"21"` →
 * -973932308).
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = MURMUR2_SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, MURMUR2_M);
    k ^= k >>> MURMUR2_R;
    k = Math.imul(k, MURMUR2_M);
    h = Math.imul(h, MURMUR2_M);
    h ^= k;
  }
  // Kafka's switch falls through from 3 to 1; the ifs below do the same in order.
  const tail = length & ~3;
  const rest = length % 4;
  if (rest >= 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) {
    h ^= data[tail]!;
    h = Math.imul(h, MURMUR2_M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, MURMUR2_M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not `Math.abs`, which fails on INT_MIN). */
export function toPositive(n: number): number {
  return n & POSITIVE_MASK;
}

/** The bytes Kafka's StringSerializer would send for a key: UTF-8 for strings. */
export function keyBytes(key: Uint8Array | string): Uint8Array {
  return typeof key === "string" ? Buffer.from(key, "utf8") : key;
}

/**
 * Kafka's `BuiltInPartitioner.partitionForKey`: `toPositive(murmur2(key)) % numPartitions`.
 * A string key is hashed as its UTF-8 bytes.
 */
export function partitionForKey(key: Uint8Array | string, numPartitions: number): number {
  assert(Number.isSafeInteger(numPartitions) && numPartitions > 0, "numPartitions > 0");
  return toPositive(murmur2(keyBytes(key))) % numPartitions;
}

/**
 * Chooses partitions for records: keyed records by {@link partitionForKey}, records without a key
 * round robin, with one counter per topic (so topics do not skew each other). Each counter starts
 * at a random value, like the counter of Kafka's old DefaultPartitioner, so that many short-lived
 * producers (one CLI call per record) do not all start on partition 0. The counters are bounded
 * by the number of topics the producer writes to.
 */
export class Partitioner {
  private readonly counters = new Map<string, number>();

  /** @param random Source of each topic's first counter value, in [0, 1). Default Math.random. */
  constructor(private readonly random: () => number = Math.random) {}

  /**
   * The partition for a record of `topic` with `key` (null/undefined = no key) among
   * `numPartitions` partitions.
   */
  partition(
    topic: string,
    key: Uint8Array | string | null | undefined,
    numPartitions: number,
  ): number {
    if (key !== null && key !== undefined) return partitionForKey(key, numPartitions);
    assert(Number.isSafeInteger(numPartitions) && numPartitions > 0, "numPartitions > 0");
    const next = this.counters.get(topic) ?? Math.floor(this.random() * POSITIVE_MASK);
    // Wrapping at 2^31 keeps the counter a small integer however long the producer runs.
    this.counters.set(topic, (next + 1) & POSITIVE_MASK);
    return next % numPartitions;
  }
}

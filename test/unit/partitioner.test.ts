import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  keyBytes,
  MURMUR2_SEED,
  murmur2,
  Partitioner,
  partitionForKey,
  toPositive,
} from "../../services/shared/partitioner.js";

/**
 * Kafka's own vectors: `UtilsTest.testMurmur2` in
 * clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (signed Java ints).
 */
const KAFKA_VECTORS: ReadonlyArray<[string, number]> = [
  ["21", -973932308],
  ["foobar", -790332482],
  ["a-little-bit-long-string", -985981536],
  ["a-little-bit-longer-string", -1486304829],
  ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
  ["abc", 479470107],
];

const U32 = 0xffff_ffffn;

/**
 * An independent murmur2, written from the algorithm's definition with BigInt arithmetic modulo
 * 2^32 (no Math.imul, no 32-bit tricks), to cross-check the production one on any input.
 */
function referenceMurmur2(data: Uint8Array): number {
  const m = 0x5bd1e995n;
  const mul = (a: bigint, b: bigint): bigint => (a * b) & U32;
  let h = (BigInt(MURMUR2_SEED) ^ BigInt(data.length)) & U32;
  let i = 0;
  for (; i + 4 <= data.length; i += 4) {
    let k =
      BigInt(data[i]!) |
      (BigInt(data[i + 1]!) << 8n) |
      (BigInt(data[i + 2]!) << 16n) |
      (BigInt(data[i + 3]!) << 24n);
    k = mul(k, m);
    k ^= k >> 24n;
    k = mul(k, m);
    h = mul(h, m) ^ k;
  }
  const rest = data.length - i;
  if (rest === 3) h ^= BigInt(data[i + 2]!) << 16n;
  if (rest >= 2) h ^= BigInt(data[i + 1]!) << 8n;
  if (rest >= 1) h = mul(h ^ BigInt(data[i]!), m);
  h ^= h >> 13n;
  h = mul(h, m);
  h ^= h >> 15n;
  return Number(BigInt.asIntN(32, h));
}

describe("murmur2 (Kafka's Utils.murmur2)", () => {
  for (const [input, expected] of KAFKA_VECTORS) {
    it(`hashes "${input}" to ${expected}`, () => {
      assert.equal(murmur2(Buffer.from(input)), expected);
    });
  }

  it("matches the reference on the Kafka vectors too (the reference itself is right)", () => {
    for (const [input, expected] of KAFKA_VECTORS) {
      assert.equal(referenceMurmur2(Buffer.from(input)), expected);
    }
  });

  it("agrees with an independent implementation on any bytes (every tail length)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        assert.equal(murmur2(bytes), referenceMurmur2(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it("hashes the empty input and always gives a signed 32-bit integer", () => {
    assert.equal(murmur2(new Uint8Array(0)), referenceMurmur2(new Uint8Array(0)));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 32 }), (bytes) => {
        const h = murmur2(bytes);
        assert.ok(Number.isInteger(h) && h >= -(2 ** 31) && h < 2 ** 31);
      }),
    );
  });

  it("hashes a string key as its UTF-8 bytes", () => {
    assert.deepEqual(keyBytes("é"), Buffer.from([0xc3, 0xa9]));
    assert.equal(partitionForKey("é", 7), partitionForKey(Buffer.from("é", "utf8"), 7));
  });
});

describe("toPositive / partitionForKey", () => {
  it("clears the sign bit like Kafka (not Math.abs)", () => {
    assert.equal(toPositive(-1), 0x7fffffff);
    assert.equal(toPositive(-(2 ** 31)), 0);
    assert.equal(toPositive(5), 5);
  });

  it("is toPositive(murmur2(key)) % n, e.g. the Kafka vectors over 3 and 16 partitions", () => {
    for (const [input, hash] of KAFKA_VECTORS) {
      for (const n of [1, 3, 16]) {
        assert.equal(partitionForKey(input, n), (hash & 0x7fffffff) % n);
      }
    }
    // Spelled out, so a change in the formula cannot hide behind the loop above.
    assert.equal(partitionForKey("21", 16), 12);
    assert.equal(partitionForKey("foobar", 3), 0);
  });

  it("is stable: the same key always lands on the same partition, in range", () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 1000 }), (key, n) => {
        const p = partitionForKey(key, n);
        assert.ok(p >= 0 && p < n);
        assert.equal(partitionForKey(key, n), p);
        assert.equal(new Partitioner().partition("t", key, n), p);
      }),
    );
  });

  it("spreads keys evenly (10k keys over 8 partitions within 10% of the mean)", () => {
    const n = 8;
    const counts = new Array<number>(n).fill(0);
    for (let i = 0; i < 10_000; i++) counts[partitionForKey(`key-${i}`, n)]!++;
    const mean = 10_000 / n;
    for (const c of counts) assert.ok(Math.abs(c - mean) < mean * 0.1, `counts ${counts}`);
  });

  it("rejects a partition count below 1", () => {
    assert.throws(() => partitionForKey("k", 0), /numPartitions > 0/);
  });
});

describe("Partitioner", () => {
  it("goes round robin for records without a key, per topic, from a random start", () => {
    const p = new Partitioner(() => 0.5);
    const a = Array.from({ length: 6 }, () => p.partition("a", null, 3));
    const start = a[0]!;
    assert.deepEqual(
      a,
      [0, 1, 2, 0, 1, 2].map((i) => (start + i) % 3),
    );
    // Another topic has its own counter.
    const b = Array.from({ length: 3 }, () => p.partition("b", undefined, 3));
    assert.deepEqual(new Set(b), new Set([0, 1, 2]));
  });

  it("spreads null keys exactly evenly", () => {
    const p = new Partitioner();
    const counts = new Array<number>(5).fill(0);
    for (let i = 0; i < 5_000; i++) counts[p.partition("t", null, 5)]!++;
    assert.deepEqual(counts, [1000, 1000, 1000, 1000, 1000]);
  });

  it("uses murmur2 for keyed records whatever the counter", () => {
    const p = new Partitioner();
    p.partition("t", null, 4);
    assert.equal(p.partition("t", "21", 16), partitionForKey("21", 16));
    assert.equal(p.partition("t", Buffer.from("foobar"), 3), partitionForKey("foobar", 3));
  });
});

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type EpochEntry,
  LeaderEpochCache,
  UNDEFINED_EPOCH,
  UNDEFINED_EPOCH_OFFSET,
} from "../../services/broker/log/leader-epoch-cache.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";

let dir: string;
let fileSeq = 0;
const freshPath = () => join(dir, `p${fileSeq++}`, "leader-epoch-checkpoint");

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "samsa-leader-epoch-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A cache (backed by a not-yet-existing file in the temp dir) holding `entries`. */
async function cacheWith(...entries: Array<[number, number]>): Promise<LeaderEpochCache> {
  const cache = await LeaderEpochCache.load(join(dir, `missing-${fileSeq++}`));
  for (const [epoch, startOffset] of entries) cache.assign(epoch, startOffset);
  return cache;
}

const pairs = (entries: readonly EpochEntry[]) => entries.map((e) => [e.epoch, e.startOffset]);

describe("LeaderEpochCache in memory", () => {
  it("is empty when the checkpoint file is missing", async () => {
    const cache = await cacheWith();
    assert.deepEqual(cache.entries(), []);
    assert.equal(cache.latestEpoch(), UNDEFINED_EPOCH);
    assert.equal(cache.latestEntry(), undefined);
    assert.equal(cache.epochForOffset(0), UNDEFINED_EPOCH);
  });

  it("assign appends new epochs and ignores the latest epoch at a later offset", async () => {
    const cache = await cacheWith([0, 0], [1, 100]);
    cache.assign(1, 150);
    assert.deepEqual(pairs(cache.entries()), [
      [0, 0],
      [1, 100],
    ]);
    assert.equal(cache.latestEpoch(), 1);
    assert.deepEqual(cache.latestEntry(), { epoch: 1, startOffset: 100 });
    // Kafka: the latest epoch at a smaller start offset replaces it.
    cache.assign(1, 90);
    assert.deepEqual(pairs(cache.entries()), [
      [0, 0],
      [1, 90],
    ]);
  });

  it("assign removes conflicting entries from the end like Kafka", async () => {
    const cache = await cacheWith([0, 0], [1, 100], [2, 200]);
    cache.assign(1, 150); // epoch 1 and 2 are ≥ the new epoch
    assert.deepEqual(pairs(cache.entries()), [
      [0, 0],
      [1, 150],
    ]);
    cache.assign(3, 50); // epoch 1's start offset 150 ≥ 50
    assert.deepEqual(pairs(cache.entries()), [
      [0, 0],
      [3, 50],
    ]);
    cache.assign(4, 0); // every start offset ≥ 0
    assert.deepEqual(pairs(cache.entries()), [[4, 0]]);
    assert.throws(() => cache.assign(-1, 5), /assertion failed/);
    assert.throws(() => cache.assign(5, -1), /assertion failed/);
  });

  it("entries() is a snapshot that cannot change the cache", async () => {
    const cache = await cacheWith([0, 0]);
    const snapshot = cache.entries() as EpochEntry[];
    snapshot.push({ epoch: 9, startOffset: 9 });
    assert.throws(() => {
      (snapshot[0] as { epoch: number }).epoch = 7;
    }, TypeError);
    assert.deepEqual(pairs(cache.entries()), [[0, 0]]);
  });

  it("endOffsetFor answers exactly as Kafka's LeaderEpochFileCache", async () => {
    const logEndOffset = 40;
    const cache = await cacheWith([1, 10], [3, 20], [5, 30]);
    const empty = await cacheWith();
    const cases: Array<[string, LeaderEpochCache, number, number, number]> = [
      ["undefined epoch", cache, UNDEFINED_EPOCH, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET],
      ["latest epoch → log end offset", cache, 5, 5, logEndOffset],
      ["below the first epoch → requested epoch, first start", cache, 0, 0, 10],
      ["first epoch → start of the next", cache, 1, 1, 20],
      ["gap between epochs → previous epoch", cache, 2, 1, 20],
      ["middle epoch", cache, 3, 3, 30],
      ["gap before the latest", cache, 4, 3, 30],
      ["above the latest", cache, 6, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET],
      ["empty cache", empty, 0, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET],
      ["empty cache, undefined epoch", empty, -1, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET],
    ];
    for (const [name, c, requested, epoch, endOffset] of cases) {
      assert.deepEqual(c.endOffsetFor(requested, logEndOffset), { epoch, endOffset }, name);
    }
  });

  it("epochForOffset finds the entry covering an offset", async () => {
    const cache = await cacheWith([1, 10], [3, 20], [5, 30]);
    const cases: Array<[number, number]> = [
      [0, UNDEFINED_EPOCH],
      [9, UNDEFINED_EPOCH],
      [10, 1],
      [19, 1],
      [20, 3],
      [29, 3],
      [30, 5],
      [1_000_000, 5],
    ];
    for (const [offset, epoch] of cases)
      assert.equal(cache.epochForOffset(offset), epoch, `${offset}`);
  });

  it("truncateFromEnd removes entries starting at or after the end offset", async () => {
    const cases: Array<[number, Array<[number, number]>]> = [
      [
        100,
        [
          [1, 10],
          [3, 20],
          [5, 30],
        ],
      ],
      [
        31,
        [
          [1, 10],
          [3, 20],
          [5, 30],
        ],
      ],
      [
        30,
        [
          [1, 10],
          [3, 20],
        ],
      ],
      [
        21,
        [
          [1, 10],
          [3, 20],
        ],
      ],
      [20, [[1, 10]]],
      [10, []],
      [0, []],
      [
        -1,
        [
          [1, 10],
          [3, 20],
          [5, 30],
        ],
      ],
    ];
    for (const [endOffset, expected] of cases) {
      const cache = await cacheWith([1, 10], [3, 20], [5, 30]);
      cache.truncateFromEnd(endOffset);
      assert.deepEqual(pairs(cache.entries()), expected, `truncateFromEnd(${endOffset})`);
    }
  });

  it("truncateFromStart keeps the epoch covering the new start offset", async () => {
    const cases: Array<[number, Array<[number, number]>]> = [
      [
        5,
        [
          [1, 10],
          [3, 20],
          [5, 30],
        ],
      ],
      [
        10,
        [
          [1, 10],
          [3, 20],
          [5, 30],
        ],
      ],
      [
        15,
        [
          [1, 15],
          [3, 20],
          [5, 30],
        ],
      ],
      [
        20,
        [
          [3, 20],
          [5, 30],
        ],
      ],
      [
        25,
        [
          [3, 25],
          [5, 30],
        ],
      ],
      [100, [[5, 100]]],
    ];
    for (const [startOffset, expected] of cases) {
      const cache = await cacheWith([1, 10], [3, 20], [5, 30]);
      cache.truncateFromStart(startOffset);
      assert.deepEqual(pairs(cache.entries()), expected, `truncateFromStart(${startOffset})`);
    }
  });

  it("clear empties the cache", async () => {
    const cache = await cacheWith([1, 10], [3, 20]);
    cache.clear();
    assert.deepEqual(cache.entries(), []);
    assert.equal(cache.latestEpoch(), UNDEFINED_EPOCH);
  });
});

describe("LeaderEpochCache checkpoint file", () => {
  async function loadFrom(text: string): Promise<[LeaderEpochCache, string]> {
    const path = freshPath();
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
    return [await LeaderEpochCache.load(path), path];
  }

  it("writes Kafka's exact text format and loads it back", async () => {
    const [cache, path] = await loadFrom("");
    cache.assign(0, 0);
    cache.assign(3, 100);
    await cache.flush();
    assert.equal(await readFile(path, "utf8"), "0\n2\n0 0\n3 100\n");
    const loaded = await LeaderEpochCache.load(path);
    assert.deepEqual(pairs(loaded.entries()), [
      [0, 0],
      [3, 100],
    ]);
  });

  it("an emptied cache is written as version and zero count", async () => {
    const [cache, path] = await loadFrom("0\n1\n2 5\n");
    cache.clear();
    await cache.flush();
    assert.equal(await readFile(path, "utf8"), "0\n0\n");
  });

  it("flush does not rewrite the file when nothing changed", async () => {
    const [cache, path] = await loadFrom("0\n1\n2 5\n");
    await unlink(path);
    await cache.flush(); // loaded, untouched: not dirty
    await assert.rejects(stat(path), { code: "ENOENT" });
    cache.assign(3, 9);
    await cache.flush();
    assert.equal(await readFile(path, "utf8"), "0\n2\n2 5\n3 9\n");
    await unlink(path);
    cache.assign(3, 20); // no-op: latest epoch at a later offset
    await cache.flush();
    await assert.rejects(stat(path), { code: "ENOENT" });
  });

  it("accepts Kafka's lenient forms: empty file, version only, tabs and CRLF", async () => {
    for (const text of ["", "0\n", "0\r\n1\r\n4\t40\r\n", "0\n1\n4   40"]) {
      const [cache] = await loadFrom(text);
      const expected = text.includes("4") ? [[4, 40]] : [];
      assert.deepEqual(pairs(cache.entries()), expected, JSON.stringify(text));
    }
  });

  it("normalizes non-monotonic entries on load, as Kafka's assign does, and rewrites them", async () => {
    const [cache, path] = await loadFrom("0\n3\n1 0\n3 100\n2 200\n");
    assert.deepEqual(pairs(cache.entries()), [
      [1, 0],
      [2, 200],
    ]);
    await cache.flush();
    assert.equal(await readFile(path, "utf8"), "0\n2\n1 0\n2 200\n");
  });

  it("rejects malformed checkpoints with KAFKA_STORAGE_ERROR naming file and line", async () => {
    const cases: Array<[string, string, number]> = [
      ["unknown version", "1\n0\n", 1],
      ["garbage version", "x\n", 1],
      ["bad count", "0\nmany\n", 2],
      ["negative count", "0\n-1\n", 2],
      ["one field", "0\n1\n5\n", 3],
      ["three fields", "0\n1\n5 6 7\n", 3],
      ["not a number", "0\n2\n1 0\n2 x\n", 4],
      ["negative epoch", "0\n1\n-1 0\n", 3],
      ["negative offset", "0\n1\n1 -5\n", 3],
      ["blank line", "0\n2\n1 0\n\n2 5\n", 4],
      ["fewer entries than counted", "0\n2\n1 0\n", 3],
      ["more entries than counted", "0\n1\n1 0\n2 5\n", 4],
    ];
    for (const [name, text, line] of cases) {
      const path = freshPath();
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text);
      await assert.rejects(
        LeaderEpochCache.load(path),
        (err: unknown) => {
          assert.ok(isSamsaError(err, ErrorCode.KAFKA_STORAGE_ERROR), `${name}: ${err}`);
          assert.ok(err.message.includes(path), `${name}: names the file: ${err.message}`);
          assert.ok(
            err.message.includes(`line ${line}`),
            `${name}: names line ${line}: ${err.message}`,
          );
          return true;
        },
        name,
      );
    }
  });

  it("a failed write reports KAFKA_STORAGE_ERROR and stays dirty", async () => {
    const path = join(dir, "no-such-dir", "leader-epoch-checkpoint");
    const cache = await LeaderEpochCache.load(path);
    cache.assign(1, 0);
    await assert.rejects(cache.flush(), (err: unknown) =>
      isSamsaError(err, ErrorCode.KAFKA_STORAGE_ERROR),
    );
    await mkdir(dirname(path), { recursive: true });
    await cache.flush();
    assert.equal(await readFile(path, "utf8"), "0\n1\n1 0\n");
  });
});

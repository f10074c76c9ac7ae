import assert from "node:assert/strict";
import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { IndexCorruptError } from "../../services/broker/log/offset-index.js";
import {
  NO_TIMESTAMP,
  TIME_INDEX_ENTRY_BYTES,
  TimeIndex,
} from "../../services/broker/log/time-index.js";

const MAX_ENTRIES = 1000;
const T0_MS = 1_700_000_000_000;

let dir: string;
let fileSeq = 0;
const freshPath = () => join(dir, `${String(fileSeq++).padStart(20, "0")}.timeindex`);

/** The big-endian bytes of `[timestamp, relativeOffset]` pairs. */
function entryBytes(...entries: Array<[number, number]>): Buffer {
  const out = Buffer.alloc(entries.length * TIME_INDEX_ENTRY_BYTES);
  entries.forEach(([ts, rel], i) => {
    out.writeBigInt64BE(BigInt(ts), i * TIME_INDEX_ENTRY_BYTES);
    out.writeInt32BE(rel, i * TIME_INDEX_ENTRY_BYTES + 8);
  });
  return out;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "samsa-time-index-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("TimeIndex in memory", () => {
  it("an empty index answers NO_TIMESTAMP / baseOffset", () => {
    const index = TimeIndex.create(freshPath(), 50, MAX_ENTRIES);
    assert.equal(index.entryCount, 0);
    assert.equal(index.lastTimestamp, NO_TIMESTAMP);
    assert.equal(NO_TIMESTAMP, -1);
    assert.deepEqual(index.lastEntry, { timestamp: -1, offset: 50 });
    assert.deepEqual(index.lookup(T0_MS), { timestamp: -1, offset: 50 });
  });

  it("appends only rising timestamps and looks up the floor entry", () => {
    const index = TimeIndex.create(freshPath(), 50, MAX_ENTRIES);
    index.append(T0_MS, 50);
    index.append(T0_MS, 55); // not above the last timestamp: no-op
    index.append(T0_MS - 10, 56); // older: no-op
    assert.equal(index.entryCount, 1);
    index.append(T0_MS + 1000, 60);
    index.append(T0_MS + 2000, 60); // same offset, later timestamp: allowed
    assert.equal(index.entryCount, 3);
    assert.equal(index.lastTimestamp, T0_MS + 2000);
    assert.deepEqual(index.lastEntry, { timestamp: T0_MS + 2000, offset: 60 });

    assert.deepEqual(index.lookup(T0_MS - 1), { timestamp: -1, offset: 50 });
    assert.deepEqual(index.lookup(T0_MS), { timestamp: T0_MS, offset: 50 });
    assert.deepEqual(index.lookup(T0_MS + 999), { timestamp: T0_MS, offset: 50 });
    assert.deepEqual(index.lookup(T0_MS + 1000), { timestamp: T0_MS + 1000, offset: 60 });
    assert.deepEqual(index.lookup(T0_MS + 1500), { timestamp: T0_MS + 1000, offset: 60 });
    assert.deepEqual(index.lookup(Number.MAX_SAFE_INTEGER), {
      timestamp: T0_MS + 2000,
      offset: 60,
    });
  });

  it("asserts offsets never go back, even for a no-op timestamp", () => {
    const index = TimeIndex.create(freshPath(), 50, MAX_ENTRIES);
    assert.throws(() => index.append(T0_MS, 49), /assertion failed/);
    index.append(T0_MS, 60);
    assert.throws(() => index.append(T0_MS + 1, 59), /assertion failed/);
    assert.throws(() => index.append(T0_MS - 1, 59), /assertion failed/);
    assert.equal(index.entryCount, 1);
  });

  it("grows to maxEntries and refuses real appends when full", () => {
    const index = TimeIndex.create(freshPath(), 0, MAX_ENTRIES);
    for (let i = 0; i < MAX_ENTRIES; i++) index.append(T0_MS + i, i);
    assert.equal(index.isFull, true);
    index.append(T0_MS, MAX_ENTRIES); // no-op: allowed even when full
    assert.throws(() => index.append(T0_MS + MAX_ENTRIES, MAX_ENTRIES), /assertion failed/);
    for (let i = 0; i < MAX_ENTRIES; i += 37) {
      assert.deepEqual(index.lookup(T0_MS + i), { timestamp: T0_MS + i, offset: i });
    }
  });

  it("truncateTo drops entries with offset ≥ the given offset", () => {
    const index = TimeIndex.create(freshPath(), 0, MAX_ENTRIES);
    index.append(T0_MS, 0);
    index.append(T0_MS + 1, 10);
    index.append(T0_MS + 2, 10);
    index.append(T0_MS + 3, 20);
    index.truncateTo(11);
    assert.equal(index.entryCount, 3);
    index.truncateTo(10);
    assert.equal(index.entryCount, 1);
    assert.deepEqual(index.lastEntry, { timestamp: T0_MS, offset: 0 });
    // Timestamps may rise again from the kept entry.
    index.append(T0_MS + 1, 5);
    assert.equal(index.lastTimestamp, T0_MS + 1);
  });
});

describe("TimeIndex on disk", () => {
  it("writes int64 timestamp + int32 relative offset big-endian, byte for byte", async () => {
    const path = freshPath();
    const index = TimeIndex.create(path, 100, MAX_ENTRIES);
    index.append(1_700_000_000_123, 100);
    index.append(Number.MAX_SAFE_INTEGER, 107);
    await index.flush();
    assert.deepEqual(
      await readFile(path),
      Buffer.from("0000018bcfe5687b" + "00000000" + "001fffffffffffff" + "00000007", "hex"),
    );
    await index.close();
    const reopened = await TimeIndex.open(path, 100, MAX_ENTRIES);
    assert.deepEqual(reopened.lastEntry, { timestamp: Number.MAX_SAFE_INTEGER, offset: 107 });
    assert.deepEqual(reopened.lookup(1_700_000_000_124), {
      timestamp: 1_700_000_000_123,
      offset: 100,
    });
  });

  it("truncate, flush and reopen give exactly the kept entries", async () => {
    const path = freshPath();
    const index = TimeIndex.create(path, 0, MAX_ENTRIES);
    for (let i = 0; i < 5; i++) index.append(T0_MS + i * 100, i * 10);
    await index.flush();
    index.truncateTo(20);
    await index.flush();
    assert.deepEqual(await readFile(path), entryBytes([T0_MS, 0], [T0_MS + 100, 10]));
    await index.close();
    const reopened = await TimeIndex.open(path, 0, MAX_ENTRIES);
    assert.equal(reopened.entryCount, 2);
    assert.deepEqual(reopened.lastEntry, { timestamp: T0_MS + 100, offset: 10 });
  });

  it("after reopen, a flush writes only the new tail at its position", async () => {
    const path = freshPath();
    const first = TimeIndex.create(path, 0, MAX_ENTRIES);
    first.append(T0_MS, 0);
    await first.close();
    const index = await TimeIndex.open(path, 0, MAX_ENTRIES);
    // Scribble over entry 0 on disk: an incremental flush must leave it alone.
    const fh = await open(path, "r+");
    await fh.write(entryBytes([T0_MS - 1, 0]), 0, TIME_INDEX_ENTRY_BYTES, 0);
    await fh.close();
    index.append(T0_MS + 5, 3);
    await index.flush();
    assert.deepEqual(await readFile(path), entryBytes([T0_MS - 1, 0], [T0_MS + 5, 3]));
    await index.close();
  });

  it("open rejects damaged files with IndexCorruptError; a missing file is empty", async () => {
    const cases: Array<[string, Buffer, number]> = [
      ["odd size", Buffer.alloc(TIME_INDEX_ENTRY_BYTES + 1), MAX_ENTRIES],
      ["repeated timestamp", entryBytes([T0_MS, 0], [T0_MS, 1]), MAX_ENTRIES],
      ["decreasing timestamp", entryBytes([T0_MS, 0], [T0_MS - 1, 1]), MAX_ENTRIES],
      ["negative timestamp", entryBytes([-5, 0]), MAX_ENTRIES],
      ["decreasing offsets", entryBytes([T0_MS, 5], [T0_MS + 1, 4]), MAX_ENTRIES],
      ["negative offset", entryBytes([T0_MS, -1]), MAX_ENTRIES],
      ["unsafe timestamp", entryBytes([2 ** 60, 0]), MAX_ENTRIES],
      ["more than maxEntries", entryBytes([T0_MS, 0], [T0_MS + 1, 1]), 1],
    ];
    for (const [name, bytes, maxEntries] of cases) {
      const path = freshPath();
      await writeFile(path, bytes);
      await assert.rejects(TimeIndex.open(path, 0, maxEntries), IndexCorruptError, name);
    }
    const missing = await TimeIndex.open(freshPath(), 7, MAX_ENTRIES);
    assert.equal(missing.entryCount, 0);
    assert.equal(missing.lastEntry.offset, 7);
  });

  it("renameTo and deleteFile", async () => {
    const path = freshPath();
    const index = TimeIndex.create(path, 0, MAX_ENTRIES);
    index.append(T0_MS, 0);
    await index.flush();
    await index.renameTo(`${path}.deleted`);
    await assert.rejects(stat(path), { code: "ENOENT" });
    assert.equal((await stat(`${path}.deleted`)).size, TIME_INDEX_ENTRY_BYTES);
    await index.deleteFile();
    await assert.rejects(stat(`${path}.deleted`), { code: "ENOENT" });
  });
});

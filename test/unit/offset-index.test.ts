import assert from "node:assert/strict";
import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  IndexCorruptError,
  OFFSET_INDEX_ENTRY_BYTES,
  OffsetIndex,
} from "../../services/broker/log/offset-index.js";

const MAX_ENTRIES = 1000;

let dir: string;
let fileSeq = 0;
const freshPath = () => join(dir, `${String(fileSeq++).padStart(20, "0")}.index`);

/** The big-endian bytes of `[relativeOffset, position]` pairs. */
function entryBytes(...entries: Array<[number, number]>): Buffer {
  const out = Buffer.alloc(entries.length * OFFSET_INDEX_ENTRY_BYTES);
  entries.forEach(([rel, pos], i) => {
    out.writeInt32BE(rel, i * OFFSET_INDEX_ENTRY_BYTES);
    out.writeInt32BE(pos, i * OFFSET_INDEX_ENTRY_BYTES + 4);
  });
  return out;
}

function entriesOf(index: OffsetIndex): Array<[number, number]> {
  // Walk the index through its public lookup: each entry is its own exact hit.
  const out: Array<[number, number]> = [];
  let target = index.lastOffset;
  while (out.length < index.entryCount) {
    const hit = index.lookup(target);
    out.unshift([hit.offset, hit.position]);
    target = hit.offset - 1;
  }
  return out;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "samsa-offset-index-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("OffsetIndex in memory", () => {
  it("an empty index answers baseOffset / 0", () => {
    const index = OffsetIndex.create(freshPath(), 100, MAX_ENTRIES);
    assert.equal(index.entryCount, 0);
    assert.equal(index.isFull, false);
    assert.equal(index.lastOffset, 100);
    assert.equal(index.lastPosition, 0);
    assert.deepEqual(index.lookup(100), { offset: 100, position: 0 });
    assert.deepEqual(index.lookup(5_000), { offset: 100, position: 0 });
  });

  it("looks up before the first entry, exact hits and between entries", () => {
    const index = OffsetIndex.create(freshPath(), 100, MAX_ENTRIES);
    index.append(105, 50);
    index.append(110, 4096);
    index.append(125, 8192);
    assert.equal(index.entryCount, 3);
    assert.equal(index.lastOffset, 125);
    assert.equal(index.lastPosition, 8192);
    assert.deepEqual(index.lookup(0), { offset: 100, position: 0 });
    assert.deepEqual(index.lookup(104), { offset: 100, position: 0 });
    assert.deepEqual(index.lookup(105), { offset: 105, position: 50 });
    assert.deepEqual(index.lookup(109), { offset: 105, position: 50 });
    assert.deepEqual(index.lookup(110), { offset: 110, position: 4096 });
    assert.deepEqual(index.lookup(124), { offset: 110, position: 4096 });
    assert.deepEqual(index.lookup(125), { offset: 125, position: 8192 });
    assert.deepEqual(index.lookup(2 ** 40), { offset: 125, position: 8192 });
  });

  it("grows past its initial capacity and still finds every entry", () => {
    const index = OffsetIndex.create(freshPath(), 2 ** 40, MAX_ENTRIES);
    for (let i = 0; i < MAX_ENTRIES; i++) index.append(2 ** 40 + i * 10, i * 100);
    assert.equal(index.isFull, true);
    for (let i = 0; i < MAX_ENTRIES; i++) {
      assert.deepEqual(index.lookup(2 ** 40 + i * 10 + 9), {
        offset: 2 ** 40 + i * 10,
        position: i * 100,
      });
    }
  });

  it("asserts append invariants", () => {
    const index = OffsetIndex.create(freshPath(), 100, MAX_ENTRIES);
    assert.throws(() => index.append(99, 0), /assertion failed/);
    assert.throws(() => index.append(100 + 2 ** 31, 0), /assertion failed/);
    index.append(100, 0);
    assert.throws(() => index.append(100, 10), /assertion failed/, "same offset again");
    index.append(101, 10);
    assert.throws(() => index.append(102, 9), /assertion failed/, "position going back");
    assert.throws(() => index.append(102, 2 ** 31), /assertion failed/, "position beyond int32");
    index.append(102, 10);
    assert.equal(index.entryCount, 3);
  });

  it("refuses appends when full", () => {
    const index = OffsetIndex.create(freshPath(), 0, 3);
    index.append(0, 0);
    index.append(1, 10);
    assert.equal(index.isFull, false);
    index.append(2, 20);
    assert.equal(index.isFull, true);
    assert.throws(() => index.append(3, 30), /assertion failed/);
    index.truncateTo(2);
    assert.equal(index.isFull, false);
    index.append(3, 30);
  });

  it("truncateTo drops entries with offset ≥ the given offset", () => {
    const index = OffsetIndex.create(freshPath(), 0, MAX_ENTRIES);
    for (const [o, p] of [
      [0, 0],
      [10, 100],
      [20, 200],
    ] as const) {
      index.append(o, p);
    }
    index.truncateTo(25);
    assert.equal(index.entryCount, 3);
    index.truncateTo(20);
    assert.deepEqual(entriesOf(index), [
      [0, 0],
      [10, 100],
    ]);
    index.truncateTo(11);
    assert.equal(index.entryCount, 2);
    index.truncateTo(10);
    assert.equal(index.lastOffset, 0);
    index.truncateTo(0);
    assert.equal(index.entryCount, 0);
    assert.equal(index.lastOffset, 0);
  });

  it("sanityCheck flags an index pointing past its log", () => {
    const index = OffsetIndex.create(freshPath(), 0, MAX_ENTRIES);
    assert.equal(index.sanityCheck(0), true);
    index.append(0, 0);
    index.append(5, 4000);
    assert.equal(index.sanityCheck(4001), true);
    assert.equal(index.sanityCheck(4000), false);
  });
});

describe("OffsetIndex on disk", () => {
  it("writes big-endian entries byte for byte", async () => {
    const path = freshPath();
    const index = OffsetIndex.create(path, 100, MAX_ENTRIES);
    index.append(100, 0);
    index.append(105, 300);
    await index.flush();
    assert.deepEqual(
      await readFile(path),
      Buffer.from("00000000" + "00000000" + "00000005" + "0000012c", "hex"),
    );
    await index.close();
  });

  it("a missing file opens as an empty index; the first flush creates it", async () => {
    const path = freshPath();
    const index = await OffsetIndex.open(path, 0, MAX_ENTRIES);
    assert.equal(index.entryCount, 0);
    await index.flush();
    assert.equal((await stat(path)).size, 0);
    await index.close();
  });

  it("truncate, flush and reopen give exactly the kept entries", async () => {
    const path = freshPath();
    const index = OffsetIndex.create(path, 1000, MAX_ENTRIES);
    for (let i = 0; i < 5; i++) index.append(1000 + i * 10, i * 4096);
    await index.flush();
    assert.equal((await stat(path)).size, 5 * OFFSET_INDEX_ENTRY_BYTES);
    index.truncateTo(1020);
    await index.flush();
    assert.deepEqual(await readFile(path), entryBytes([0, 0], [10, 4096]));
    await index.close();

    const reopened = await OffsetIndex.open(path, 1000, MAX_ENTRIES);
    assert.deepEqual(entriesOf(reopened), [
      [1000, 0],
      [1010, 4096],
    ]);
    // Truncate again and append different entries before one flush.
    reopened.truncateTo(1010);
    reopened.append(1011, 100);
    reopened.append(1012, 200);
    await reopened.flush();
    assert.deepEqual(await readFile(path), entryBytes([0, 0], [11, 100], [12, 200]));
    await reopened.close();
  });

  it("after reopen, a flush writes only the new tail at its position", async () => {
    const path = freshPath();
    const first = OffsetIndex.create(path, 0, MAX_ENTRIES);
    first.append(0, 0);
    first.append(10, 500);
    await first.close();

    const index = await OffsetIndex.open(path, 0, MAX_ENTRIES);
    assert.equal(index.entryCount, 2);
    // Scribble over entry 0 on disk: an incremental flush must leave it alone.
    const fh = await open(path, "r+");
    await fh.write(entryBytes([0, 7]), 0, OFFSET_INDEX_ENTRY_BYTES, 0);
    await fh.close();
    index.append(20, 900);
    await index.flush();
    assert.deepEqual(await readFile(path), entryBytes([0, 7], [10, 500], [20, 900]));
    index.append(30, 1000);
    await index.flush();
    assert.deepEqual(await readFile(path), entryBytes([0, 7], [10, 500], [20, 900], [30, 1000]));
    await index.close();
  });

  it("create() over an existing file rewrites it from scratch on flush", async () => {
    const path = freshPath();
    await writeFile(path, entryBytes([0, 0], [1, 1], [2, 2]));
    const index = OffsetIndex.create(path, 0, MAX_ENTRIES);
    index.append(0, 64);
    await index.flush();
    assert.deepEqual(await readFile(path), entryBytes([0, 64]));
    await index.close();
  });

  it("concurrent flushes and close leave a consistent file", async () => {
    const path = freshPath();
    const index = OffsetIndex.create(path, 0, MAX_ENTRIES);
    const flushes: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      index.append(i, i * 10);
      if (i === 10) index.truncateTo(5); // drops offsets 5..10 while flushes are in flight
      flushes.push(index.flush());
      if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    flushes.push(index.close());
    await Promise.all(flushes);
    const reopened = await OffsetIndex.open(path, 0, MAX_ENTRIES);
    assert.deepEqual(entriesOf(reopened), entriesOf(index));
    assert.equal(reopened.entryCount, 14);
  });

  it("open rejects damaged files with IndexCorruptError", async () => {
    const cases: Array<[string, Buffer, number]> = [
      ["odd size", Buffer.alloc(OFFSET_INDEX_ENTRY_BYTES + 1), MAX_ENTRIES],
      ["decreasing offsets", entryBytes([0, 0], [5, 10], [4, 20]), MAX_ENTRIES],
      ["repeated offset", entryBytes([0, 0], [5, 10], [5, 20]), MAX_ENTRIES],
      ["negative offset", entryBytes([-1, 0]), MAX_ENTRIES],
      ["decreasing positions", entryBytes([0, 100], [5, 99]), MAX_ENTRIES],
      ["negative position", entryBytes([0, -4]), MAX_ENTRIES],
      ["more than maxEntries", entryBytes([0, 0], [1, 1], [2, 2]), 2],
    ];
    for (const [name, bytes, maxEntries] of cases) {
      const path = freshPath();
      await writeFile(path, bytes);
      await assert.rejects(OffsetIndex.open(path, 0, maxEntries), IndexCorruptError, name);
    }
  });

  it("renameTo moves the file and later flushes follow it; deleteFile removes it", async () => {
    const path = freshPath();
    const index = OffsetIndex.create(path, 0, MAX_ENTRIES);
    index.append(0, 0);
    await index.flush();
    const deleted = `${path}.deleted`;
    await index.renameTo(deleted);
    assert.equal(index.path, deleted);
    index.append(1, 8);
    await index.flush();
    await assert.rejects(stat(path), { code: "ENOENT" });
    assert.deepEqual(await readFile(deleted), entryBytes([0, 0], [1, 8]));
    await index.deleteFile();
    await assert.rejects(stat(deleted), { code: "ENOENT" });
    await index.deleteFile();
  });
});

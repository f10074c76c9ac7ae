/**
 * The in-memory log tail (services/broker/log/recent-appends.ts): what it answers must be what a
 * segment read answers over the same bytes (whole batches from the one holding the offset, none
 * at or past maxOffset, up to maxBytes but at least one), whatever chunks the appends came in;
 * below the oldest chunk kept it answers nothing, and it stays within its limits.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import type { ReadResult } from "../../services/broker/log/partition-log.js";
import { RecentAppends } from "../../services/broker/log/recent-appends.js";
import type { AppendedBatch } from "../../services/broker/log/segment.js";
import { DEFAULT_LOG_CONFIG } from "../../services/shared/config/log-config.js";
import { silentLogger } from "../../services/shared/logger.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { stampBatch } from "../../services/shared/record-batch/header.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface Batch {
  bytes: Buffer;
  info: AppendedBatch;
}

/** `counts[i]` records in batch i, offsets from `base` on, stamped. */
function batches(counts: readonly number[], base = 0, valueBytes = 10): Batch[] {
  let next = base;
  return counts.map((n) => {
    const bytes = buildBatch(
      Array.from({ length: n }, (_, i) => ({ value: Buffer.alloc(valueBytes, i) })),
    );
    stampBatch(bytes, 0, next, 0);
    const info = {
      baseOffset: next,
      lastOffset: next + n - 1,
      maxTimestamp: 0,
      size: bytes.length,
    };
    next += n;
    return { bytes, info };
  });
}

/** A copy in a Buffer of its own (not a slice of Node's shared pool). */
function unpooled(b: Buffer): Buffer {
  const out = Buffer.alloc(b.length);
  b.copy(out);
  return out;
}

/** Appends `all` to `tail` as chunks of the given batch counts (the rest as one last chunk). */
function addInChunks(tail: RecentAppends, all: readonly Batch[], chunkSizes: readonly number[]) {
  let i = 0;
  for (const size of [...chunkSizes, all.length]) {
    if (i >= all.length) break;
    const part = all.slice(i, i + Math.max(1, size));
    i += part.length;
    // Each chunk in a Buffer of its own, as a request's bytes are.
    tail.add(
      [Buffer.concat(part.map((b) => b.bytes))],
      part.map((b) => b.info),
    );
  }
}

/** What a segment read answers over the same batches (the reference). */
function reference(all: readonly Batch[], offset: number, maxBytes: number, maxOffset: number) {
  if (offset >= maxOffset) return { bytes: Buffer.alloc(0), nextOffset: offset };
  const first = all.findIndex((b) => b.info.lastOffset >= offset);
  if (first < 0) return { bytes: Buffer.alloc(0), nextOffset: offset };
  const out: Buffer[] = [];
  let total = 0;
  let nextOffset = offset;
  for (let i = first; i < all.length; i++) {
    const b = all[i]!;
    if (b.info.baseOffset >= maxOffset) break;
    if (total > 0 && total + b.bytes.length > maxBytes) break;
    out.push(b.bytes);
    total += b.bytes.length;
    nextOffset = b.info.lastOffset + 1;
  }
  return { bytes: Buffer.concat(out), nextOffset };
}

describe("RecentAppends", () => {
  it("answers like a segment read whatever the chunks (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 10 }),
        fc.nat(200),
        fc.integer({ min: 0, max: 600 }),
        fc.nat(200),
        (counts, chunkSizes, offsetPick, maxBytes, maxPick) => {
          const all = batches(counts, 100);
          const tail = new RecentAppends();
          addInChunks(tail, all, chunkSizes);
          const end = all.at(-1)!.info.lastOffset + 1;
          const offset = 100 + (offsetPick % (end - 100 + 1));
          const maxOffset = Math.min(end, offset + (maxPick % (end - offset + 2)));
          const got = tail.read(offset, maxBytes, maxOffset);
          assert.ok(got !== undefined, "everything is kept");
          const want = reference(all, offset, maxBytes, maxOffset);
          assert.equal(got.nextOffset, want.nextOffset);
          assert.ok(got.bytes.equals(want.bytes), "the same bytes as a segment read");
        },
      ),
      { numRuns: 300 },
    );
  });

  it("serves one chunk without a copy", () => {
    const all = batches([3, 3]);
    const chunk = Buffer.concat(all.map((b) => b.bytes));
    const tail = new RecentAppends();
    tail.add(
      [chunk],
      all.map((b) => b.info),
    );
    const r = tail.read(0, 1 << 20, 6)!;
    assert.equal(r.bytes.buffer, chunk.buffer, "a view of the appended Buffer");
    assert.equal(r.nextOffset, 6);
  });

  it("answers nothing below its oldest batch, and drops the oldest past its limits", () => {
    const all = batches([2, 2, 2, 2]);
    const size = all[0]!.bytes.length;
    // Room for two one-batch chunks (a chunk is counted by the Buffer behind it).
    const tail = new RecentAppends(2 * size, 10);
    for (const b of all) tail.add([unpooled(b.bytes)], [b.info]);
    assert.equal(tail.size, 2);
    assert.equal(tail.read(0, 1 << 20, 8), undefined);
    assert.equal(tail.read(3, 1 << 20, 8), undefined, "offset 3 is in a dropped batch");
    assert.equal(tail.read(4, 1 << 20, 8)!.nextOffset, 8);
    const byCount = new RecentAppends(1 << 20, 3);
    for (const b of all) byCount.add([unpooled(b.bytes)], [b.info]);
    assert.equal(byCount.size, 3);
    assert.equal(byCount.read(1, 1 << 20, 8), undefined);
    assert.equal(byCount.read(2, 1 << 20, 8)!.nextOffset, 8);
  });

  it("keeps nothing after clear, or after a chunk that does not line up with its batches", () => {
    const all = batches([1, 1]);
    const tail = new RecentAppends();
    tail.add([all[0]!.bytes], [all[0]!.info]);
    tail.clear();
    assert.equal(tail.read(0, 100, 1), undefined);
    tail.add([all[0]!.bytes], [all[0]!.info]);
    tail.add([Buffer.concat([all[1]!.bytes, Buffer.alloc(3)])], [all[1]!.info]);
    assert.equal(tail.size, 0);
    assert.equal(tail.read(0, 100, 2), undefined);
  });

  it("reads of a real log at its end match the same reads from its files after a reopen", async () => {
    const dir = await mkdtemp(join(tmpdir(), "samsa-recent-"));
    const open = () =>
      FilePartitionLog.open({
        dir,
        topic: "t",
        partition: 0,
        config: { ...DEFAULT_LOG_CONFIG, segmentBytes: 4096 },
        logger: silentLogger(),
      });
    try {
      let log = await open();
      for (let i = 0; i < 40; i++) {
        const n = 1 + (i % 4);
        await log.append(
          buildBatch(Array.from({ length: n }, (_, j) => ({ value: Buffer.alloc(30 + j, i) }))),
          { leaderEpoch: 0 },
        );
      }
      const end = log.logEndOffset;
      log.setHighWatermark(end);
      const reads: Array<[number, number]> = [];
      for (let offset = 0; offset < end; offset += 3)
        for (const max of [0, 200, 5000]) reads.push([offset, max]);
      const fromTail: ReadResult[] = [];
      for (const [o, m] of reads) fromTail.push(await log.read(o, m));
      await log.close();
      log = await open();
      for (let i = 0; i < reads.length; i++) {
        const [o, m] = reads[i]!;
        const tail = fromTail[i]!;
        // A segment read stops at its segment's end; the tail may go on into the next one.
        const parts: Buffer[] = [];
        let next = o;
        let collected = 0;
        while (next < tail.nextOffset) {
          const r = await log.read(next, tail.bytes.length - collected);
          collected += r.bytes.length;
          assert.ok(r.bytes.length > 0, `the files hold offset ${next}`);
          parts.push(r.bytes);
          next = r.nextOffset;
        }
        assert.equal(next, tail.nextOffset, `read at ${o} max ${m} ends on a batch boundary`);
        assert.ok(Buffer.concat(parts).equals(tail.bytes), `bytes of the read at ${o} max ${m}`);
        const first = await log.read(o, 0);
        assert.ok(tail.bytes.length <= Math.max(m, first.bytes.length), "within maxBytes");
      }
      await log.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

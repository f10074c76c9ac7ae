/**
 * Issue 12 against a real local cluster (etcd, 1 controller, 1 broker as processes):
 *
 * - nothing unreadable is stored: the issue's exact Produce (a CRC-correct batch whose one
 *   record's length varint says -64) is refused with CORRUPT_MESSAGE, the log end does not move,
 *   and the next good record is read by every consumer (raw Fetch, the client's Consumer, the
 *   CLI);
 * - readers move past damage on disk on purpose: with the broker stopped, one batch gets a bit
 *   flip (its CRC fails: the broker refuses to serve it) and another is replaced by a
 *   CRC-correct batch that does not decode (what an older broker could store); after a restart
 *   the Fetch error names the offset and where the next batch starts, the CLI fails naming the
 *   partition and offset, `--skip-corrupt` delivers every other record and reports each skip,
 *   and the Consumer's `onCorruptBatch` does the same.
 */
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Consumer, type SkippedBatch } from "../../services/client/index.js";
import type { ConsumerRecord } from "../../services/client/records.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { unary } from "../../services/shared/grpc/client.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { computeBatchCrc, readBatchHeader } from "../../services/shared/record-batch/header.js";
import {
  BATCH_HEADER_BYTES,
  CRC_OFFSET,
  LOG_OVERHEAD_BYTES,
} from "../../services/shared/record-batch/layout.js";
import { type CliRun, runCli } from "../support/cli.js";
import { waitFor } from "../support/wait-for.js";
import {
  CALL_DEADLINE_MS,
  Clients,
  createTopic,
  fetchAll,
  listOffset,
  produce,
  produceRaw,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

/** Longest one CLI run may take, ms. */
const CLI_RUN_TIMEOUT_MS = 20_000;
/** `consume --timeout-ms` of runs that read to the end, ms. */
const IDLE_TIMEOUT_MS = 3_000;
/** How long the client's Consumer may take to read what a test expects, ms. */
const CONSUME_TIMEOUT_MS = 15_000;

/** The issue's batch: CRC-correct, one record whose length varint is 0x7f (zigzag -64). */
function issueBatch(): Buffer {
  const batch = buildBatch([{ key: Buffer.from("poison"), value: Buffer.from("unreadable") }]);
  batch[BATCH_HEADER_BYTES] = 0x7f;
  batch.writeUInt32BE(computeBatchCrc(batch), CRC_OFFSET);
  return batch;
}

describe("corrupt batches: refused on produce, skippable on read", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const broker = () => clients.broker(cluster.brokerProcesses[0]!.address);
  const samsa = (args: readonly string[]): Promise<CliRun> =>
    runCli(args, {
      bootstrap: cluster.bootstrap.join(","),
      controller: cluster.controllers.join(","),
      timeoutMs: CLI_RUN_TIMEOUT_MS,
    });
  const admin = () => clients.admin(cluster.controllers[0]!);

  /** Reads `topic` from the earliest offset with the client's Consumer until `count` records. */
  const consumeAll = async (
    topic: string,
    count: number,
    onCorruptBatch?: (b: SkippedBatch) => void,
  ): Promise<ConsumerRecord[]> => {
    const consumer = new Consumer({ bootstrapServers: cluster.bootstrap });
    const got: ConsumerRecord[] = [];
    try {
      const signal = AbortSignal.timeout(CONSUME_TIMEOUT_MS);
      for await (const r of consumer.consume(topic, { from: "earliest", signal, onCorruptBatch })) {
        got.push(r);
        if (got.length >= count) break;
      }
    } finally {
      consumer.close();
    }
    return got;
  };

  before(async () => {
    cluster = await startTestCluster({
      controllers: 1,
      brokers: 1,
      // An offset-index entry per batch: a segment whose index is empty is rebuilt on open by
      // recovery, which would cut the log at the damaged batch instead of keeping it to serve.
      brokerArgs: ["--log.index.interval.bytes=1"],
    });
  });
  after(async () => {
    clients.close();
    await cluster?.stop();
  });

  test("the issue's batch (record length -64) is CORRUPT_MESSAGE, nothing is stored, the next record reaches every consumer", async () => {
    const topic = uniqueTopic("poison");
    await createTopic(admin(), topic, 1);
    await waitForLeaders(cluster, clients, topic, 1);
    assert.equal(await produce(broker(), topic, 0, [{ value: Buffer.from("first") }]), 0);

    const refused = await produceRaw(broker(), topic, 0, issueBatch());
    assert.equal(refused.errorCode, ErrorCode.CORRUPT_MESSAGE, refused.errorMessage);
    assert.match(refused.errorMessage, /record 0: length -64 invalid/);
    assert.equal(Number((await listOffset(broker(), topic, 0, -1)).offset), 1, "log end unchanged");

    assert.equal(await produce(broker(), topic, 0, [{ value: Buffer.from("second") }]), 1);
    const raw = await fetchAll(broker(), topic, 0);
    assert.deepEqual(
      raw.map((r) => [r.offset, r.value]),
      [
        [0, "first"],
        [1, "second"],
      ],
    );
    const consumed = await consumeAll(topic, 2);
    assert.deepEqual(
      consumed.map((r) => [r.offset, r.value?.toString()]),
      [
        [0, "first"],
        [1, "second"],
      ],
    );
    const cli = await samsa(["consume", "--topic", topic, "--from-beginning", "--max-messages=2"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, "first\nsecond\n");
  });

  test("damage on disk: a typed error naming the offset, and --skip-corrupt / onCorruptBatch move past it", async () => {
    const topic = uniqueTopic("damaged");
    await createTopic(admin(), topic, 1);
    await waitForLeaders(cluster, clients, topic, 1);
    for (let i = 0; i < 5; i++) {
      assert.equal(await produce(broker(), topic, 0, [{ value: Buffer.from(`r${i}`) }]), i);
    }
    const victim = cluster.brokerProcesses[0]!;
    await victim.stop(); // graceful: the restart does not re-validate (no recovery) the segment
    const segment = join(
      cluster.dataDir,
      `broker-${victim.id}`,
      `${topic}-0`,
      "00000000000000000000.log",
    );
    const files = await readdir(join(segment, ".."));
    assert.ok(files.includes(".clean-shutdown"), `a clean shutdown: ${files.join(", ")}`);
    const bytes = await readFile(segment);
    const positions: number[] = [];
    for (let pos = 0; pos < bytes.length; ) {
      positions.push(pos);
      pos += readBatchHeader(bytes, pos).batchLength + LOG_OVERHEAD_BYTES;
    }
    assert.equal(positions.length, 5, "one batch per record");
    // Batch 1: a bit flip in its value, which its CRC catches.
    bytes[positions[1]! + BATCH_HEADER_BYTES + 6]! ^= 0x10;
    // Batch 3: the issue's record length, CRC recomputed (stored by a broker that did not walk).
    const third = bytes.subarray(positions[3]!, positions[4]!);
    third[BATCH_HEADER_BYTES] = 0x7f;
    third.writeUInt32BE(computeBatchCrc(third), CRC_OFFSET);
    await writeFile(segment, bytes);
    await victim.restart();
    await waitForLeaders(cluster, clients, topic, 1);

    // The broker's answer at the damaged batch: CORRUPT_MESSAGE, its offset, the next batch's.
    // (Right after the restart the high watermark may not be back yet: asked until it is.)
    const fetchAt1 = async () => {
      const res = await unary(
        broker(),
        "Fetch",
        {
          partitions: [{ topic, partition: 0, fetchOffset: "1", currentLeaderEpoch: -1 }],
          maxWaitMs: 0,
          minBytes: 0,
          maxBytes: 1 << 20,
        },
        { deadlineMs: CALL_DEADLINE_MS },
      );
      return res.partitions[0]!;
    };
    let last = "";
    const p = await waitFor(
      async () => {
        const r = await fetchAt1();
        last = `code ${r.errorCode}, hw ${r.highWatermark}, end ${r.logEndOffset}`;
        return r.errorCode !== 0 || r.records.length > 0 ? r : undefined;
      },
      { message: "a Fetch at offset 1 answered" },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last answer: ${last}`);
    });
    assert.equal(p.errorCode, ErrorCode.CORRUPT_MESSAGE, p.errorMessage);
    assert.match(
      p.errorMessage,
      /corrupt batch at offset 1 .*CRC mismatch.*next batch starts at offset 2/,
    );
    assert.equal(Number(p.nextOffset), 2);

    // The CLI without --skip-corrupt: the good record before, then an error naming the place.
    const failed = await samsa(["consume", "--topic", topic, "--from-beginning"]);
    assert.notEqual(failed.code, 0, "consume fails at the damaged batch");
    assert.equal(failed.stdout, "r0\n");
    assert.match(failed.stderr, new RegExp(`${topic}-0 at offset 1: corrupt batch at offset 1`));

    // With --skip-corrupt: every other record, and a loud line for each skipped batch.
    const skipped = await samsa([
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--skip-corrupt",
      `--timeout-ms=${IDLE_TIMEOUT_MS}`,
    ]);
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.equal(skipped.stdout, "r0\nr2\nr4\n");
    const warnings = skipped.stderr.split("\n").filter((l) => l.startsWith("WARNING: skipped"));
    assert.equal(warnings.length, 2, skipped.stderr);
    assert.match(warnings[0]!, new RegExp(`${topic}-0 \\(offset 1 not delivered\\).*CRC mismatch`));
    assert.match(warnings[1]!, new RegExp(`${topic}-0 \\(offset 3 not delivered\\).*length -64`));

    // The client's Consumer: throws naming the partition and offset, or skips with the callback.
    await assert.rejects(consumeAll(topic, 3), (err: unknown) => {
      assert.match(String(err), new RegExp(`CORRUPT_MESSAGE|${topic}-0 at offset 1`));
      return true;
    });
    const seen: SkippedBatch[] = [];
    const read = await consumeAll(topic, 3, (b) => seen.push(b));
    assert.deepEqual(
      read.map((r) => [r.offset, r.value?.toString()]),
      [
        [0, "r0"],
        [2, "r2"],
        [4, "r4"],
      ],
    );
    assert.deepEqual(
      seen.map((b) => [b.partition, b.offset, b.nextOffset]),
      [
        [0, 1, 2],
        [0, 3, 4],
      ],
    );
  });
});

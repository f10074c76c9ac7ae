/**
 * Disk full (issue 12): one broker's log dir is a tiny tmpfs, filled while acks=all producers
 * run on a topic of replication factor 3 (min ISR 2). Expected, as Kafka's offline log dir:
 *
 * - the failing append answers KAFKA_STORAGE_ERROR (or, once the partition stepped down,
 *   NOT_LEADER) and is not acknowledged; nothing torn is left in the log;
 * - the partitions of that dir go offline on that broker: it publishes them in its
 *   registration, the controller moves their leadership to other ISR members and drops the
 *   broker from every ISR, and producers go on with the other two replicas;
 * - `samsa_log_dir_offline{dir=...}` is 1 and the log says `log dir offline`;
 * - after space is freed and the broker restarts, it rejoins every ISR, and the oracle holds:
 *   every acknowledged record is read back once, in order, at its offset, from the leaders over
 *   gRPC and, after the cluster stops, from the log files of every replica (all identical).
 *
 * The test mounts the tmpfs itself (it must run as root); when it cannot, it fails with the
 * reason rather than pass without testing anything.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, open, readFile, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { DEFAULT_LOG_CONFIG } from "../../services/shared/config/log-config.js";
import { silentLogger } from "../../services/shared/logger.js";
import { decodeBatches } from "../../services/shared/record-batch/builder.js";
import { waitFor } from "../support/wait-for.js";
import { Clients, createTopics, startTestCluster, uniqueTopic } from "./cluster-helpers.js";
import {
  checkOracle,
  OracleProducer,
  type PartitionInfo,
  waitForIsr,
} from "./replication-helpers.js";

const run = promisify(execFile);

const PARTITIONS = 3;
const REPLICAS = 3;
const MIN_ISR = 2;
/** The broker whose log dir is the tmpfs. */
const VICTIM = 3;
/** Size of the tmpfs: room for the partitions' first records, then filled by a filler file. */
const TMPFS_BYTES = 8 * 1024 * 1024;
const SESSION_MS = 2_000;
const LAG_MS = 3_000;
const SETTLE_MS = 30_000;
const ACKS_BEFORE = 200;
const ACKS_AFTER = 200;
/** Bytes per write while filling the tmpfs. */
const FILL_CHUNK_BYTES = 64 * 1024;

const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

/** Writes zeros to `path` until the file system says ENOSPC; returns the bytes written. */
async function fillUp(path: string): Promise<number> {
  const fh = await open(path, "w");
  const chunk = Buffer.alloc(FILL_CHUNK_BYTES);
  let written = 0;
  try {
    for (;;) {
      const { bytesWritten } = await fh.write(chunk, 0, chunk.length, written);
      written += bytesWritten;
      if (bytesWritten < chunk.length) break;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    await fh.close();
  }
  return written;
}

/** Scrapes the broker's `samsa_log_dir_offline` for `dir`: 1, 0, or undefined when absent. */
async function logDirOffline(metricsPort: number, dir: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (line.startsWith("samsa_log_dir_offline{") && line.includes(`dir="${dir}"`)) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return undefined;
}

/** Every record of a partition log on disk, as `offset → value`, read with the storage engine. */
async function recordsOnDisk(dir: string, topic: string, partition: number) {
  const log = await FilePartitionLog.open({
    dir,
    topic,
    partition,
    config: DEFAULT_LOG_CONFIG,
    logger: silentLogger(),
  });
  const out: Array<[number, string]> = [];
  try {
    let offset = log.logStartOffset;
    while (offset < log.logEndOffset) {
      const r = await log.read(offset, 1024 * 1024, { maxOffset: log.logEndOffset });
      for (const b of decodeBatches(r.bytes)) {
        for (const rec of b.records) out.push([rec.offset, rec.value?.toString() ?? ""]);
      }
      assert.ok(r.nextOffset > offset, `${dir}: reads progress`);
      offset = r.nextOffset;
    }
  } finally {
    await log.close();
  }
  return out;
}

describe("disk full: a log dir that runs out of space goes offline", { timeout: 300_000 }, () => {
  let cluster: LocalCluster | undefined;
  let dataDir: string;
  let victimDir: string;
  let mounted = false;
  const clients = new Clients();
  const fresh = new Clients();

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "samsa-disk-full-"));
    victimDir = join(dataDir, `broker-${VICTIM}`);
    await mkdir(victimDir, { recursive: true });
    try {
      await run("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_BYTES}`, "tmpfs", victimDir]);
      mounted = true;
    } catch (err) {
      throw new Error(
        `this test needs a tmpfs for broker ${VICTIM}'s log dir and could not mount one ` +
          `(run it as root, with mount(8) allowed): ${(err as Error).message}`,
      );
    }
    cluster = await startTestCluster({
      dataDir,
      controllers: 1,
      brokers: 3,
      brokerArgs: [
        `--broker.session.timeout.ms=${SESSION_MS}`,
        `--replica.lag.time.max.ms=${LAG_MS}`,
        "--replica.fetch.backoff.ms=100",
        "--replica.fetch.wait.max.ms=200",
      ],
    });
  });

  after(async () => {
    clients.close();
    fresh.close();
    await cluster?.stop();
    if (mounted) await run("umount", [victimDir]).catch(() => run("umount", ["-l", victimDir]));
    await rm(dataDir, { recursive: true, force: true });
  });

  test("acks=all goes on without the full broker; it rejoins after space is freed", async () => {
    const c = cluster!;
    const topic = uniqueTopic("disk-full");
    const admin = clients.admin((await c.activeController()).address);
    const [r] = await createTopics(admin, [
      {
        name: topic,
        numPartitions: PARTITIONS,
        replicationFactor: REPLICAS,
        configs: { "min.insync.replicas": String(MIN_ISR) },
      },
    ]);
    assert.equal(r!.errorCode, 0, `create ${topic}: ${r!.errorMessage}`);
    const before = await waitForIsr(c, clients, topic, PARTITIONS, full, SETTLE_MS, "full ISRs");
    const victimLed = [...before.values()].filter((p) => p.leader === VICTIM).length;
    const victim = c.broker(VICTIM);
    assert.equal(await logDirOffline(victim.metricsPort, victimDir), 0, "online at first");

    const producer = new OracleProducer(c, clients, topic, PARTITIONS);
    producer.start();
    try {
      await producer.waitForMoreAcks(ACKS_BEFORE, SETTLE_MS, "acks=all sends before the fill");
      const filler = join(victimDir, "filler");
      const filled = await fillUp(filler);
      assert.ok(filled > 0, "the filler took the free space");

      await waitFor(async () => (await logDirOffline(victim.metricsPort, victimDir)) === 1, {
        timeoutMs: SETTLE_MS,
        message: `samsa_log_dir_offline{dir="${victimDir}"} becomes 1`,
      });
      const moved = await waitForIsr(
        c,
        clients,
        topic,
        PARTITIONS,
        (p) => p.leader !== VICTIM && !p.isr.includes(VICTIM),
        SETTLE_MS,
        `leadership and ISR membership leave broker ${VICTIM}`,
      );
      for (const [p, info] of moved) {
        assert.ok(info.leader >= 0, `partition ${p} has a leader`);
        assert.ok(info.isr.length >= MIN_ISR, `partition ${p} keeps min ISR`);
      }
      await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends after the fill");
      const log = await readFile(victim.logFile, "utf8");
      assert.match(log, /"log dir offline"/, "the error line says so");
      assert.match(log, /"errorCode":"KAFKA_STORAGE_ERROR"/);
      assert.match(log, /short write|ENOSPC|no space/i);
      if (victimLed > 0) {
        // The produce that met the full disk was refused, never acknowledged.
        const refused =
          (producer.failures.get("KAFKA_STORAGE_ERROR") ?? 0) +
          (producer.failures.get("NOT_LEADER") ?? 0);
        assert.ok(refused > 0, JSON.stringify([...producer.failures]));
      }

      // Space freed, broker restarted: it recovers its logs and rejoins every ISR.
      await unlink(filler);
      await victim.restart();
      await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends after the restart");
    } finally {
      await producer.stop();
    }
    await waitForIsr(c, clients, topic, PARTITIONS, full, SETTLE_MS, "ISR full again");
    assert.equal(await logDirOffline(victim.metricsPort, victimDir), 0, "online again");
    await checkOracle(c, clients, fresh, topic, producer);
    const ends = new Map<number, number>();
    for (const [p, acked] of producer.acked) ends.set(p, (acked.at(-1)?.offset ?? -1) + 1);

    // Every replica's files, read by the storage engine after a clean stop: the same records at
    // the same offsets on all three, every acknowledged one among them.
    await c.stop();
    cluster = undefined;
    for (const [p, acked] of producer.acked) {
      const replicas: Array<Array<[number, string]>> = [];
      for (let b = 1; b <= 3; b++) {
        replicas.push(await recordsOnDisk(join(dataDir, `broker-${b}`, `${topic}-${p}`), topic, p));
      }
      const shortest = Math.min(...replicas.map((x) => x.length));
      assert.ok(shortest >= ends.get(p)!, `partition ${p}: every replica holds the acked records`);
      for (let b = 1; b < 3; b++) {
        assert.deepEqual(
          replicas[b]!.slice(0, shortest),
          replicas[0]!.slice(0, shortest),
          `partition ${p}: broker ${b + 1} has broker 1's records`,
        );
      }
      const at = new Map(replicas[VICTIM - 1]!);
      for (const a of acked) assert.equal(at.get(a.offset), a.value, `${a.value} at ${a.offset}`);
    }
  });
});

/**
 * PrefixCache against a real etcd: events in revision order, garbage values skipped, and no
 * missed event when the watch is cut — neither when etcd restarts (resume from the revision)
 * nor when history was compacted meanwhile (re-list). The cut is made by a TCP proxy between
 * the cache's client and etcd, so the writes and the compaction go on behind its back.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Etcd3 } from "etcd3";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import {
  type BrokerRegistration,
  decodeBrokerRegistration,
  encodeBrokerEndpoint,
} from "../../services/shared/etcd/keys.js";
import { type CacheEvent, PrefixCache } from "../../services/shared/etcd/prefix-cache.js";
import { type CapturedLine, memoryLogger } from "../../services/shared/logger.js";
import { type EtcdProcess, startEtcd } from "../support/etcd.js";
import { waitFor } from "../support/wait-for.js";

/** A loopback TCP proxy that can drop every connection and refuse new ones. */
async function startProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  let cut = false;
  const server = createServer((inbound) => {
    if (cut) {
      inbound.destroy();
      return;
    }
    const outbound = connect(targetPort, "127.0.0.1");
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        inbound.destroy();
        outbound.destroy();
        sockets.delete(s);
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const cutAll = () => {
    cut = true;
    for (const s of sockets) s.destroy();
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    cut: cutAll,
    restore: () => {
      cut = false;
    },
    close: async () => {
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const describeEvent = (e: CacheEvent<string>) =>
  e.type === "put" ? `put ${e.key}=${e.value}` : `delete ${e.key}`;

describe("PrefixCache (real etcd)", () => {
  let etcd: EtcdProcess;
  let client: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    client = createEtcdClient({ endpoints: [etcd.endpoint] });
  });
  after(async () => {
    client?.close();
    await etcd?.stop();
  });

  const freshPrefix = () => `/samsa-test/${randomUUID().slice(0, 8)}/`;
  const stringCache = (c: Etcd3, prefix: string, lines: CapturedLine[] = []) =>
    new PrefixCache<string>({
      client: c,
      prefix,
      decode: (kv) => kv.value.toString(),
      logger: memoryLogger(lines),
    });
  const contentOf = async (prefix: string) =>
    Object.entries(await client.getAll().prefix(prefix).strings()).sort();
  const cacheContent = (cache: PrefixCache<string>) => [...cache.entries()].sort();

  it("lists, then applies puts and deletes in revision order", async () => {
    const p = freshPrefix();
    await client.put(`${p}a`).value("1");
    await client.put(`${p}b`).value("1");
    await client.put("/samsa-test-outside").value("x");
    const cache = stringCache(client, p);
    const events: CacheEvent<string>[] = [];
    cache.onChange((e) => events.push(e));
    await cache.start();
    assert.deepEqual(cacheContent(cache), [
      [`${p}a`, "1"],
      [`${p}b`, "1"],
    ]);
    await client.put(`${p}a`).value("2");
    await client.delete().key(`${p}b`);
    await client
      .if(`${p}c`, "Create", "==", 0)
      .then(client.put(`${p}c`).value("3"), client.put(`${p}d`).value("4"))
      .commit();
    await client.delete().key(`${p}d`);
    await waitFor(() => events.length === 7, { message: "7 events" });
    assert.deepEqual(events.map(describeEvent), [
      `put ${p}a=1`,
      `put ${p}b=1`,
      `put ${p}a=2`,
      `delete ${p}b`,
      `put ${p}c=3`,
      `put ${p}d=4`,
      `delete ${p}d`,
    ]);
    const revisions = events.map((e) => e.revision);
    assert.deepEqual(
      revisions,
      [...revisions].sort((x, y) => x - y),
    );
    const update = events[2]!;
    assert.ok(update.type === "put" && update.prev === "1", "prev value on update");
    assert.deepEqual(cacheContent(cache), await contentOf(p));
    assert.equal(cache.resyncs, 0);
    await cache.close();
    const live = stringCache(client, p);
    await live.start();
    await client.put(`${p}z`).value("late");
    await waitFor(() => live.get(`${p}z`), { message: "the live cache to see the late put" });
    assert.equal(cache.get(`${p}z`), undefined, "no event after close");
    await live.close();
  });

  it("logs and skips values that do not decode; the map keeps only good values", async () => {
    const p = freshPrefix();
    const lines: CapturedLine[] = [];
    const cache = new PrefixCache<BrokerRegistration>({
      client,
      prefix: p,
      decode: decodeBrokerRegistration,
      logger: memoryLogger(lines),
    });
    const events: string[] = [];
    cache.onChange((e) => events.push(`${e.type} ${e.key}`));
    await client.put(`${p}1`).value("{not json");
    await cache.start();
    assert.equal(cache.size, 0);
    await client.put(`${p}2`).value(encodeBrokerEndpoint({ id: 2, host: "h", port: 1 }));
    await client.put(`${p}2`).value(JSON.stringify({ id: 2, host: "h", port: "x" }));
    await client.put(`${p}3`).value(encodeBrokerEndpoint({ id: 3, host: "h", port: 1 }));
    await waitFor(() => cache.get(`${p}3`), { message: "broker 3" });
    assert.deepEqual(events, [`put ${p}2`, `delete ${p}2`, `put ${p}3`]);
    assert.deepEqual(
      [...cache.entries()].map(([k]) => k),
      [`${p}3`],
    );
    const errors = lines.filter((l) => l.level === "error").map((l) => l.fields.key);
    assert.deepEqual(errors, [`${p}1`, `${p}2`]);
    await cache.close();
  });

  it("resumes from its revision after etcd restarts, without re-listing", async () => {
    const p = freshPrefix();
    const own = createEtcdClient({ endpoints: [etcd.endpoint] });
    const cache = stringCache(own, p);
    try {
      await client.put(`${p}a`).value("1");
      await cache.start();
      await etcd.kill();
      await etcd.restart();
      await client.put(`${p}b`).value("2");
      await client.delete().key(`${p}a`);
      await waitFor(async () => cache.get(`${p}b`) === "2" && cache.size === 1, {
        timeoutMs: 15_000,
        message: "cache to catch up after the restart",
      });
      assert.equal(cache.resyncs, 0);
      assert.deepEqual(cacheContent(cache), await contentOf(p));
    } finally {
      await cache.close();
      own.close();
    }
  });

  it("re-lists when its revision was compacted while the watch was cut, missing nothing", async () => {
    const p = freshPrefix();
    const proxy = await startProxy(etcd.clientPort);
    const viaProxy = createEtcdClient({ endpoints: [proxy.endpoint] });
    const cache = stringCache(viaProxy, p);
    const events: string[] = [];
    cache.onChange((e) => events.push(describeEvent(e as CacheEvent<string>)));
    try {
      await client.put(`${p}keep`).value("1");
      await client.put(`${p}gone`).value("1");
      await client.put(`${p}changed`).value("1");
      await cache.start();
      const before = cache.revision;
      proxy.cut();
      await client.delete().key(`${p}gone`);
      await client.put(`${p}changed`).value("2");
      await client.put(`${p}new`).value("1");
      await client.put(`${p}brief`).value("1");
      await client.delete().key(`${p}brief`);
      const last = await client.put("/samsa-test-elsewhere").value("x");
      await client.kv.compact({ revision: last.header.revision, physical: true });
      assert.ok(cache.revision === before, "nothing seen while cut");
      proxy.restore();
      await waitFor(() => cache.resyncs >= 1, { timeoutMs: 15_000, message: "a re-list" });
      assert.deepEqual(cacheContent(cache), await contentOf(p));
      assert.ok(cache.revision >= Number(last.header.revision));
      assert.deepEqual(events.slice(3).sort(), [
        `delete ${p}gone`,
        `put ${p}changed=2`,
        `put ${p}new=1`,
      ]);
      // And it watches again afterwards.
      await client.put(`${p}after`).value("1");
      await waitFor(() => cache.get(`${p}after`) === "1", { message: "a put after re-list" });
    } finally {
      await cache.close();
      viaProxy.close();
      await proxy.close();
    }
  });
});

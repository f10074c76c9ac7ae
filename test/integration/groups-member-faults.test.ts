/**
 * Group members as their own processes (groups-member-process.ts) under real faults, in a real
 * cluster (etcd, a controller, a broker, a gateway): 3 members share 6 partitions; one is
 * SIGKILLed and its partitions move to the others within the session timeout; another is
 * paused with SIGSTOP past its session, its partitions move, and once continued it cannot
 * commit them (UNKNOWN_MEMBER), while the committed offsets stay those of the live owner.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import { GROUP_GATEWAY_ARGS, TEST_SESSION_MS } from "./groups-helpers.js";

const PARTITIONS = 6;
const SCRIPT = fileURLToPath(new URL("./groups-member-process.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** A process start plus a rebalance, ms. */
const SETTLE_TIMEOUT_MS = 20_000;
/** After a SIGKILL or SIGSTOP: the session, then a rebalance. */
const MOVE_TIMEOUT_MS = TEST_SESSION_MS + 10_000;

interface MemberLine {
  memberId?: string;
  epoch?: number;
  partitions?: string[];
  commit?: number;
  results?: number[];
}

/** A member process and the last lines it printed. */
class MemberProcess {
  readonly child: ChildProcess;
  state: MemberLine = {};
  commits: MemberLine[] = [];

  constructor(gateway: string, group: string, topic: string) {
    this.child = spawn(process.execPath, ["--import", "tsx", SCRIPT, gateway, group, topic], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "inherit"],
    });
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      const parsed = JSON.parse(line) as MemberLine;
      if (parsed.commit !== undefined) this.commits.push(parsed);
      else this.state = parsed;
    });
  }

  get partitions(): string[] {
    return this.state.partitions ?? [];
  }

  commit(): void {
    this.child.stdin!.write("commit\n");
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

describe("groups: member processes under SIGKILL and SIGSTOP", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const procs: MemberProcess[] = [];
  const topic = uniqueTopic("faulted");
  const all = [...Array(PARTITIONS).keys()].map((p) => `${topic}:${p}`);

  /** Whether the live members own every partition, each exactly once. */
  const shared = (ms: MemberProcess[], counts: number[]) => {
    const owned = ms.flatMap((m) => m.partitions).sort();
    return owned.join() === all.join() && ms.every((m, i) => m.partitions.length === counts[i]);
  };

  before(async () => {
    cluster = await startTestCluster({ brokers: 1, gateways: 1, gatewayArgs: GROUP_GATEWAY_ARGS });
    await createTopic(clients.admin(cluster.controllers[0]!), topic, PARTITIONS);
    await waitForLeaders(cluster, clients, topic, PARTITIONS);
  });
  after(async () => {
    for (const p of procs) {
      p.kill("SIGCONT");
      p.kill("SIGKILL");
    }
    clients.close();
    await cluster?.stop();
  });

  test("a SIGKILLed member's partitions move; a SIGSTOPped one cannot commit after they moved", async () => {
    const group = uniqueTopic("gproc");
    const [a, b, c] = [0, 1, 2].map(() => new MemberProcess(cluster.gateways[0]!, group, topic));
    procs.push(a!, b!, c!);
    await waitFor(() => shared([a!, b!, c!], [2, 2, 2]), {
      timeoutMs: SETTLE_TIMEOUT_MS,
      message: "3 members share 6",
    });

    const killedAt = Date.now();
    c!.kill("SIGKILL");
    await waitFor(() => shared([a!, b!], [3, 3]), {
      timeoutMs: MOVE_TIMEOUT_MS,
      message: "c's partitions move",
    });
    assert.ok(Date.now() - killedAt >= TEST_SESSION_MS - 500, "not before c's session ended");

    // b commits its partitions, then is paused past its session.
    b!.commit();
    await waitFor(() => b!.commits.length === 1, { message: "b's commit answered" });
    assert.deepEqual(b!.commits[0], { commit: 0, results: [0, 0, 0] });
    const bPartitions = b!.partitions;
    b!.kill("SIGSTOP");
    await waitFor(() => shared([a!], [6]), {
      timeoutMs: MOVE_TIMEOUT_MS,
      message: "a owns everything",
    });
    b!.kill("SIGCONT");
    b!.commit();
    await waitFor(() => b!.commits.length === 2, { message: "b's stale commit answered" });
    assert.equal(b!.commits[1]!.commit, ErrorCode.UNKNOWN_MEMBER, "a stale member cannot commit");
    assert.deepEqual(b!.partitions, bPartitions, "b still believes it owns its old partitions");
  });
});

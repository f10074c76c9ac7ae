/**
 * What the `group-consumer*` integration tests share: {@link EventLog}, the record of what every
 * member processed and committed (in this process or in a child), and its oracle (every record
 * processed, and no record processed after a commit past it); {@link MemberView}, one member's
 * owned partitions whether it is a {@link GroupConsumer} here or a child process
 * (group-consumer-member.ts) that can be SIGKILLed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { GroupConsumer, type GroupConsumerOptions } from "../../services/client/index.js";

/** One thing a member did. */
export interface MemberEvent {
  member: string;
  ev: "rec" | "commit";
  p: number;
  o: number;
  t: number;
}

/** Every record processed and offset committed, by every member of one group. */
export class EventLog {
  readonly events: MemberEvent[] = [];

  add(e: MemberEvent): void {
    this.events.push(e);
  }

  /** Offsets processed per partition. */
  processed(): Map<number, Set<number>> {
    const out = new Map<number, Set<number>>();
    for (const e of this.events) {
      if (e.ev !== "rec") continue;
      const set = out.get(e.p) ?? new Set<number>();
      set.add(e.o);
      out.set(e.p, set);
    }
    return out;
  }

  /** Whether offsets `[0, ends[p])` of every partition were processed. */
  covers(ends: ReadonlyMap<number, number>): boolean {
    const done = this.processed();
    for (const [p, end] of ends) {
      const set = done.get(p);
      for (let o = 0; o < end; o++) if (!set?.has(o)) return false;
    }
    return true;
  }

  /**
   * Records processed although an offset past them had been committed before (the at-least-once
   * promise: what was committed is never processed again).
   */
  reprocessedAfterCommit(): MemberEvent[] {
    const commits = this.events.filter((e) => e.ev === "commit").sort((a, b) => a.t - b.t);
    const bad: MemberEvent[] = [];
    for (const r of this.events) {
      if (r.ev !== "rec") continue;
      if (commits.some((c) => c.p === r.p && c.o > r.o && c.t < r.t)) bad.push(r);
    }
    return bad;
  }

  /** How many records were processed more than once. */
  duplicates(): number {
    const seen = new Set<string>();
    let dup = 0;
    for (const e of this.events) {
      if (e.ev !== "rec") continue;
      const k = `${e.p}:${e.o}`;
      if (seen.has(k)) dup++;
      seen.add(k);
    }
    return dup;
  }
}

/** A member whose owned partitions the test watches. */
export interface MemberView {
  readonly name: string;
  partitions(): string[];
}

/** A GroupConsumer in this process, running `eachMessage` into the log. */
export function localMember(
  name: string,
  log: EventLog,
  options: GroupConsumerOptions,
  topic: string,
): MemberView & { consumer: GroupConsumer; running: Promise<void> } {
  const consumer = new GroupConsumer({
    ...options,
    onCommit: (offsets) => {
      for (const o of offsets)
        log.add({ member: name, ev: "commit", p: o.partition, o: o.offset, t: Date.now() });
    },
  });
  consumer.subscribe([topic]);
  const running = consumer.run({
    eachMessage: ({ partition, message }) => {
      log.add({ member: name, ev: "rec", p: partition, o: message.offset, t: Date.now() });
    },
  });
  return {
    name,
    consumer,
    running,
    partitions: () => consumer.assignment().map((p) => `${p.topic}:${p.partition}`),
  };
}

const MEMBER_SCRIPT = fileURLToPath(new URL("./group-consumer-member.ts", import.meta.url));

/** A member in a child process. */
export class ChildMember implements MemberView {
  private owned: string[] = [];
  private readonly child: ChildProcess;
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    log: EventLog,
    settings: {
      gateways: readonly string[];
      bootstrap: readonly string[];
      group: string;
      topic: string;
      sessionTimeoutMs: number;
      autoCommitIntervalMs: number;
      instanceId?: string;
    },
  ) {
    this.child = spawn(process.execPath, ["--import", "tsx", MEMBER_SCRIPT], {
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, GROUP_MEMBER: JSON.stringify(settings) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
    createInterface({ input: this.child.stdout! }).on("line", (text) => {
      const e = JSON.parse(text) as {
        ev: string;
        p: number;
        o: number;
        t: number;
        parts?: string[];
      };
      if (e.ev === "owned") this.owned = e.parts ?? [];
      else log.add({ member: name, ev: e.ev as "rec" | "commit", p: e.p, o: e.o, t: e.t });
    });
  }

  partitions(): string[] {
    return this.owned;
  }

  /** SIGKILL: no leave, no commit. */
  kill(): void {
    this.child.kill("SIGKILL");
    this.owned = [];
  }

  /** SIGTERM: a graceful disconnect. */
  terminate(): void {
    this.child.kill("SIGTERM");
  }
}

/** Each of `all` owned by exactly one of `members`. */
export function exclusive(members: readonly MemberView[], all: readonly string[]): boolean {
  const owners = new Map<string, number>();
  for (const m of members) for (const p of m.partitions()) owners.set(p, (owners.get(p) ?? 0) + 1);
  return all.every((p) => owners.get(p) === 1) && owners.size === all.length;
}

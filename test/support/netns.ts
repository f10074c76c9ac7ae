/**
 * Network namespaces for link faults (Linux, root): a bridge in the root namespace with an
 * address of its own, and one namespace per member (a broker) with a veth pair into the bridge
 * and loopback up, all in one private /24 (`10.231.<n>.0/24`, `<n>` picked so that no address on
 * this machine is in it yet). The root namespace is `.1` (etcd, controllers and the test process
 * live there), member `i` (from 1) is `.1<i>`: `10.231.<n>.11`, `.12`, ...
 *
 * ```ts
 * const lab = await startNetLab(3);
 * after(() => lab.destroy());
 * // start broker i under lab.member(i).commandPrefix, bound to lab.member(i).address
 * await lab.cut(1, [{ address: lab.member(2).address }]); // broker 1 ⟷ broker 2: packets vanish
 * await lab.heal(1);
 * ```
 *
 * A cut is iptables DROP rules inside the member's namespace (INPUT from and OUTPUT to the
 * peer), so packets vanish as on a real partition: connections hang, nothing is refused. A peer
 * may be narrowed to one TCP port of an address (etcd's, on the root address, while the test
 * process keeps talking to the member from the same address). Healing flushes those chains.
 *
 * Names start with `samsa-<pid>` (the bridge `samsa-<pid>b`, veths `samsa-<pid>v<i>`, namespaces
 * `samsa-<pid>-<i>`), so parallel runs never collide, and leftovers of a run that died without
 * cleaning up (its pid gone) are removed by the next {@link startNetLab}. {@link NetLab.destroy}
 * runs on process exit too. When the root namespace's iptables see bridged traffic
 * (`net.bridge.bridge-nf-call-iptables=1`, as with Docker, whose FORWARD policy is DROP), a FORWARD
 * ACCEPT rule for the bridge is added and removed with it; no sysctl is changed.
 *
 * Needs `ip` (iproute2) and `iptables`: when either is missing, `scripts/bootstrap.sh --netns`
 * installs them (root with apt-get), else this throws saying what to install.
 */
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

/** First two octets of the lab's /24s (a private range Docker and most VPNs leave alone). */
const SUBNET_PREFIX = "10.231";
/** Most members of one lab (host addresses `.11` to `.1<n>` stay below `.20`). */
export const NET_LAB_MEMBERS_MAX = 9;
/** Deadline of one `ip`/`iptables` command, ms. */
const COMMAND_TIMEOUT_MS = 10_000;
/** Deadline of `scripts/bootstrap.sh --netns` (an apt-get install), ms. */
const BOOTSTRAP_TIMEOUT_MS = 300_000;
/** Prefix of every name a lab creates. */
const NAME_PREFIX = "samsa-";
/** Directory of named network namespaces (`ip netns add` creates them there). */
const NETNS_DIR = "/run/netns";
/** The sysctl that makes bridged IPv4 traffic pass the root namespace's iptables. */
const BRIDGE_NF_CALL_IPTABLES = "/proc/sys/net/bridge/bridge-nf-call-iptables";
/** Directories `ip` and `iptables` are looked up in before PATH (root's sbin may not be on it). */
const SBIN_DIRS = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
/** The repository root (test/support/../..), where scripts/bootstrap.sh is. */
const REPO_ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** One member of a lab: a network namespace with one address on the bridge. */
export interface NetMember {
  /** Counting from 1. */
  readonly index: number;
  /** The namespace's name (`ip netns`). */
  readonly namespace: string;
  /** Its address on the bridge, e.g. `10.231.7.11`. */
  readonly address: string;
  /** Runs a command inside the namespace: `["ip", "netns", "exec", namespace]` (execs in place). */
  readonly commandPrefix: readonly string[];
}

/** Traffic a cut drops: all of an address's, or only TCP to and from one of its ports. */
export interface CutPeer {
  readonly address: string;
  /** Only TCP connections to this port of `address` (and their answers). Default: everything. */
  readonly port?: number;
}

/** A bridge with member namespaces; see the module comment. */
export interface NetLab {
  /** The root namespace's address on the bridge (`.1`): etcd and controllers bind it. */
  readonly rootAddress: string;
  readonly members: readonly NetMember[];
  /** Member `index` (from 1); throws for an unknown one. */
  member(index: number): NetMember;
  /** Drops every packet between member `index` and each peer (adds to earlier cuts). */
  cut(index: number, peers: readonly CutPeer[]): Promise<void>;
  /** Removes every cut of member `index`. */
  heal(index: number): Promise<void>;
  /** Deletes the namespaces, the bridge and the FORWARD rule. Idempotent. */
  destroy(): Promise<void>;
}

/** `ip` and `iptables`, found (installed by bootstrap.sh when missing), or an error saying why not. */
function tools(): { ip: string; iptables: string } {
  const find = (name: string) =>
    [...SBIN_DIRS, ...(process.env.PATH ?? "").split(delimiter)]
      .filter((d) => d !== "")
      .map((d) => join(d, name))
      .find((path) => existsSync(path));
  let ip = find("ip");
  let iptables = find("iptables");
  if (ip === undefined || iptables === undefined) {
    const r = spawnSync("bash", [join(REPO_ROOT, "scripts", "bootstrap.sh"), "--netns"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: BOOTSTRAP_TIMEOUT_MS,
    });
    ip = find("ip");
    iptables = find("iptables");
    if (ip === undefined || iptables === undefined) {
      throw new Error(
        `network-namespace tests need ip (iproute2) and iptables; bootstrap.sh --netns could not ` +
          `install them (status ${r.status}): ${r.stderr?.trim() ?? r.error?.message}`,
      );
    }
  }
  return { ip, iptables };
}

/** Runs a command, throwing its stderr on failure. */
async function sh(command: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(command, [...args], { timeout: COMMAND_TIMEOUT_MS });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(" ")}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Whether a process `pid` exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Whether bridged IPv4 traffic passes the root namespace's iptables. */
async function bridgeNetfilter(): Promise<boolean> {
  const text = await readFile(BRIDGE_NF_CALL_IPTABLES, "utf8").catch(() => "0");
  return text.trim() === "1";
}

/** Removes what labs of processes that no longer exist left behind. */
async function sweepLeftovers(ip: string, iptables: string): Promise<void> {
  const owner = (name: string) => /^samsa-(\d+)/.exec(name)?.[1];
  const dead = (name: string) => {
    const pid = owner(name);
    return pid !== undefined && Number(pid) !== process.pid && !alive(Number(pid));
  };
  for (const ns of await readdir(NETNS_DIR).catch(() => [] as string[])) {
    if (ns.startsWith(NAME_PREFIX) && dead(ns)) await sh(ip, ["netns", "del", ns]).catch(() => {});
  }
  const links = JSON.parse(await sh(ip, ["-j", "link", "show"])) as Array<{ ifname: string }>;
  for (const { ifname } of links) {
    if (/^samsa-\d+[bv]/.test(ifname) && dead(ifname)) {
      await sh(ip, ["link", "del", ifname]).catch(() => {});
    }
  }
  const rules = await sh(iptables, ["-w", "-S", "FORWARD"]).catch(() => "");
  for (const rule of rules.split("\n")) {
    const m = /^-A FORWARD (-i (samsa-\d+b) -o \2 -j ACCEPT)$/.exec(rule.trim());
    if (m && dead(m[2]!)) {
      await sh(iptables, ["-w", "-D", "FORWARD", ...m[1]!.split(" ")]).catch(() => {});
    }
  }
}

/** A /24 third octet with no address of this machine in `10.231.<n>.0/24`. */
function freeSubnet(): number {
  const used = new Set<number>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === "IPv4" && a.address.startsWith(`${SUBNET_PREFIX}.`)) {
        used.add(Number(a.address.split(".")[2]));
      }
    }
  }
  const start = process.pid % 256;
  for (let k = 0; k < 256; k++) {
    const n = (start + k) % 256;
    if (!used.has(n)) return n;
  }
  throw new Error(`no free /24 in ${SUBNET_PREFIX}.0.0/16`);
}

/** Creates a lab of `count` members; see the module comment. */
export async function startNetLab(count: number): Promise<NetLab> {
  if (!Number.isInteger(count) || count < 1 || count > NET_LAB_MEMBERS_MAX) {
    throw new Error(`a lab has 1 to ${NET_LAB_MEMBERS_MAX} members, not ${count}`);
  }
  if (process.getuid?.() !== 0) throw new Error("network-namespace tests must run as root");
  const { ip, iptables } = tools();
  await sweepLeftovers(ip, iptables);
  const tag = `${NAME_PREFIX}${process.pid}`;
  const bridge = `${tag}b`;
  const subnet = `${SUBNET_PREFIX}.${freeSubnet()}`;
  const rootAddress = `${subnet}.1`;
  const members: NetMember[] = [];
  for (let i = 1; i <= count; i++) {
    const namespace = `${tag}-${i}`;
    members.push({
      index: i,
      namespace,
      address: `${subnet}.1${i}`,
      commandPrefix: [ip, "netns", "exec", namespace],
    });
  }
  const forwardRule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"];
  let forwardAdded = false;
  let destroyed: Promise<void> | undefined;

  /** Synchronous teardown for process exit (async work cannot run then). */
  const destroySync = () => {
    for (const m of members) spawnSync(ip, ["netns", "del", m.namespace]);
    spawnSync(ip, ["link", "del", bridge]);
    if (forwardAdded) spawnSync(iptables, ["-w", "-D", ...forwardRule]);
  };
  process.once("exit", destroySync);

  const lab: NetLab = {
    rootAddress,
    members,
    member(index) {
      const m = members[index - 1];
      if (m === undefined) throw new Error(`no member ${index} in this lab`);
      return m;
    },
    async cut(index, peers) {
      const m = lab.member(index);
      for (const peer of peers) {
        const tcpOut = peer.port === undefined ? [] : ["-p", "tcp", "--dport", String(peer.port)];
        const tcpIn = peer.port === undefined ? [] : ["-p", "tcp", "--sport", String(peer.port)];
        const exec = [...m.commandPrefix.slice(1), iptables, "-w"];
        await sh(ip, [...exec, "-A", "OUTPUT", "-d", peer.address, ...tcpOut, "-j", "DROP"]);
        await sh(ip, [...exec, "-A", "INPUT", "-s", peer.address, ...tcpIn, "-j", "DROP"]);
      }
    },
    async heal(index) {
      const m = lab.member(index);
      await sh(ip, [...m.commandPrefix.slice(1), iptables, "-w", "-F", "INPUT"]);
      await sh(ip, [...m.commandPrefix.slice(1), iptables, "-w", "-F", "OUTPUT"]);
    },
    destroy() {
      destroyed ??= (async () => {
        process.removeListener("exit", destroySync);
        for (const m of members) await sh(ip, ["netns", "del", m.namespace]).catch(() => {});
        await sh(ip, ["link", "del", bridge]).catch(() => {});
        if (forwardAdded) await sh(iptables, ["-w", "-D", ...forwardRule]).catch(() => {});
      })();
      return destroyed;
    },
  };

  try {
    await sh(ip, ["link", "add", bridge, "type", "bridge"]);
    await sh(ip, ["addr", "add", `${rootAddress}/24`, "dev", bridge]);
    await sh(ip, ["link", "set", bridge, "up"]);
    if (await bridgeNetfilter()) {
      await sh(iptables, ["-w", "-I", ...forwardRule]);
      forwardAdded = true;
    }
    for (const m of members) {
      const veth = `${tag}v${m.index}`;
      await sh(ip, ["netns", "add", m.namespace]);
      await sh(ip, [
        "link",
        "add",
        veth,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        m.namespace,
      ]);
      await sh(ip, ["link", "set", veth, "master", bridge, "up"]);
      await sh(ip, ["-n", m.namespace, "addr", "add", `${m.address}/24`, "dev", "eth0"]);
      await sh(ip, ["-n", m.namespace, "link", "set", "eth0", "up"]);
      await sh(ip, ["-n", m.namespace, "link", "set", "lo", "up"]);
    }
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  return lab;
}

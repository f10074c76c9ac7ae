/**
 * Small helpers shared by the benchmark scripts: options from flags or the environment,
 * throughput arithmetic, percentiles, number formatting and a description of the machine and
 * of the filesystem a directory lives on. No dependency on the services.
 */
import { readFileSync } from "node:fs";
import { realpath, statfs } from "node:fs/promises";
import { cpus, loadavg, totalmem } from "node:os";
import { performance } from "node:perf_hooks";

/** Bytes in a (decimal) megabyte: every MB/s figure printed uses 10^6 bytes. */
export const MB = 1_000_000;
/** Bytes in a mebibyte. */
export const MiB = 1024 * 1024;
/** Bytes in a gibibyte. */
export const GiB = 1024 * MiB;

/**
 * An integer option: `--<flag>=<n>` on the command line wins over the environment variable
 * `env`, which wins over `fallback`. Accepts `_` separators and k/m/g (×1000) or
 * Ki/Mi/Gi (×1024) suffixes. Throws on anything else, so a typo never runs a different benchmark.
 */
export function intOption(flag: string, env: string, fallback: number, min = 0): number {
  const prefix = `--${flag}=`;
  const arg = process.argv.find((a) => a.startsWith(prefix));
  const raw = arg !== undefined ? arg.slice(prefix.length) : process.env[env];
  if (raw === undefined || raw.trim() === "") return fallback;
  const m = /^(\d[\d_]*)(k|m|g|Ki|Mi|Gi)?$/.exec(raw.trim());
  const factors: Record<string, number> = {
    k: 1e3,
    m: 1e6,
    g: 1e9,
    Ki: 1024,
    Mi: MiB,
    Gi: GiB,
  };
  const n = m ? Number(m[1]!.replaceAll("_", "")) * (m[2] ? factors[m[2]]! : 1) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new Error(`option --${flag} / ${env}: "${raw}" is not an integer ≥ ${min}`);
  }
  return n;
}

/** A string option: `--<flag>=<s>`, then `env`, then `fallback`. */
export function stringOption(flag: string, env: string, fallback: string): string {
  const prefix = `--${flag}=`;
  const arg = process.argv.find((a) => a.startsWith(prefix));
  return arg !== undefined ? arg.slice(prefix.length) : (process.env[env] ?? fallback);
}

/** Decimal megabytes per second. */
export function mbPerSec(bytes: number, ms: number): number {
  return ms > 0 ? bytes / MB / (ms / 1000) : 0;
}

/** Items per second. */
export function perSec(count: number, ms: number): number {
  return ms > 0 ? count / (ms / 1000) : 0;
}

/** `n` rounded to `digits` decimals, as a plain string (no separators): for machine lines. */
export function fixed(n: number, digits: number): string {
  return n.toFixed(digits);
}

/** `n` with thousands separators and `digits` decimals: for human lines. */
export function human(n: number, digits = 0): string {
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** `bytes` as a short human string (KiB/MiB/GiB). */
export function humanBytes(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** Nearest-rank percentile `p` (0..100) of `values[0..count)`; sorts a copy. NaN when empty. */
export function percentiles(values: Float64Array, count: number, ps: number[]): number[] {
  if (count === 0) return ps.map(() => Number.NaN);
  const sorted = values.slice(0, count).sort();
  return ps.map((p) => sorted[Math.min(count - 1, Math.max(0, Math.ceil((p / 100) * count) - 1))]!);
}

/** `p50=… p99=… max=…` in ms from latencies in ms. */
export function latencySummary(latenciesMs: Float64Array, count: number): string {
  const [p50, p99, max] = percentiles(latenciesMs, count, [50, 99, 100]);
  return `p50=${p50!.toFixed(2)}ms p99=${p99!.toFixed(2)}ms max=${max!.toFixed(2)}ms`;
}

/** Process CPU time (user + system) spent during `wallMs`, as a share of one core. */
export interface CpuShare {
  userMs: number;
  systemMs: number;
  /** (user + system) / wall: 1.0 means one core busy all the time. */
  cores: number;
}

/** Starts measuring; call the returned function at the end of the measured span. */
export function cpuMeter(): (wallMs: number) => CpuShare {
  const start = process.cpuUsage();
  return (wallMs) => {
    const d = process.cpuUsage(start);
    const userMs = d.user / 1000;
    const systemMs = d.system / 1000;
    return { userMs, systemMs, cores: wallMs > 0 ? (userMs + systemMs) / wallMs : 0 };
  };
}

/** `cpu=1.35 cores (user 900ms, sys 450ms)`. */
export function cpuSummary(c: CpuShare): string {
  return `cpu=${c.cores.toFixed(2)} cores (user ${c.userMs.toFixed(0)}ms, sys ${c.systemMs.toFixed(0)}ms)`;
}

/** The CPU model and count, Node version and memory, one line each. */
export function machineLines(): string[] {
  const cs = cpus();
  return [
    `node ${process.version} (${process.platform}/${process.arch}), v8 ${process.versions.v8}`,
    `cpus: ${cs.length} × ${cs[0]?.model.trim() ?? "unknown"}`,
    `memory: ${humanBytes(totalmem())}`,
    `load average: ${loadText()}`,
  ];
}

/** The 1/5/15-minute load averages. */
export function loadText(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" / ");
}

/**
 * A warning when other processes compete for the CPUs (1-minute load above half the CPU count
 * besides this process), or undefined. The load average lags and counts this process too: for
 * a measured figure over a run, see {@link otherLoadMeter}.
 */
export function busyWarning(): string | undefined {
  const n = cpus().length;
  const load = loadavg()[0]!;
  return load - 1 > n / 2
    ? `WARNING: machine busy (load ${loadText()} on ${n} CPUs): figures are not representative`
    : undefined;
}

/** Busy CPU time of the whole machine so far, ms, from /proc/stat; undefined off Linux. */
function machineBusyMs(): number | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
    return (busy * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * Measures how much CPU everything but this process used from now on (kernel threads included,
 * e.g. writeback of this process's own data). Call the result at the end: it returns the
 * average number of cores others used and a warning when they competed noticeably.
 */
export function otherLoadMeter(): () => { cores: number | undefined; warning?: string } {
  const busy0 = machineBusyMs();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const busy1 = machineBusyMs();
    if (busy0 === undefined || busy1 === undefined) return { cores: undefined };
    const own = process.cpuUsage(own0);
    const wall = performance.now() - t0;
    const cores = Math.max(0, (busy1 - busy0 - (own.user + own.system) / 1000) / wall);
    return cores > 0.4
      ? {
          cores,
          warning: `WARNING: other processes used ${cores.toFixed(2)} of ${cpus().length} cores on average during the run: figures are not representative`,
        }
      : { cores };
  };
}

/**
 * The filesystem holding `dir`: its mount point, type and device from /proc/mounts (Linux; the
 * longest mount point that prefixes the real path), and its free space from statfs.
 */
export async function describeFilesystem(dir: string): Promise<string> {
  const real = await realpath(dir);
  let mount = "unknown mount";
  try {
    let best: { point: string; type: string; dev: string } | undefined;
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [dev, point, type] = line.split(" ");
      if (dev === undefined || point === undefined || type === undefined) continue;
      const p = point.replaceAll("\\040", " ");
      const under = p === "/" || real === p || real.startsWith(`${p}/`);
      if (under && (best === undefined || p.length >= best.point.length)) {
        best = { point: p, type, dev };
      }
    }
    if (best) mount = `${best.type} on ${best.point} (${best.dev})`;
  } catch {
    // Not Linux: the mount stays unknown.
  }
  let free = "";
  try {
    const s = await statfs(real);
    free = `, ${humanBytes(s.bavail * s.bsize)} free`;
  } catch {
    // statfs unsupported here.
  }
  return `${mount}${free}`;
}

/** CPU time (user + system) of a process so far, ms, from /proc (undefined when unreadable). */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the name: state is field 3, utime field 14, stime field 15 (clock ticks of 10 ms).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * `samsa reassign-partitions`, modelled on kafka-reassign-partitions: moves partitions to new
 * replicas through the controllers (AlterPartitionReassignments, KIP-455). The plan is Kafka's
 * JSON file (`--reassignment-json-file`: `{"version":1,"partitions":[{"topic":"orders",
 * "partition":0,"replicas":[1,2,3]}]}`) or, shorter, repeated `--reassignment
 * orders:0=1,2,3`. Exactly one action:
 *
 * - `--execute`: prints the current assignment of the plan's partitions as a plan (to roll back
 *   with), starts the reassignments and says which started; any refused fails the command.
 * - `--verify`: per partition of the plan, whether its reassignment is complete, still in
 *   progress, or neither (another replica set, without a reassignment: exit 1).
 * - `--list`: the reassignments in progress, with the replicas being added and removed.
 * - `--cancel`: cancels the plan's reassignments in progress (replicas may be left out of
 *   `--reassignment`: `orders:0`); the partitions return to the replicas they had before.
 */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import type {
  OngoingReassignment,
  PartitionReassignment,
  ReassignmentResult,
  TopicDescription,
  TopicPartition,
} from "../../client/index.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { type AdminApi, type CliContext, type GlobalOptions, withAdmin } from "./context.js";

/** The `version` of Kafka's reassignment JSON that is read and written. */
export const PLAN_VERSION = 1;
/** Separator of topic and partition in `--reassignment` (`:` is not legal in a topic name). */
export const REASSIGNMENT_PARTITION_SEPARATOR = ":";
/** Separator of the partition and its replicas in `--reassignment`. */
export const REASSIGNMENT_REPLICAS_SEPARATOR = "=";
/** Partitions in one plan at most (the request limit of the controllers). */
export const PLAN_PARTITIONS_MAX = 10_000;

/** One partition of a plan; `replicas` null when left out (only `--cancel` allows that). */
export interface PlannedPartition extends TopicPartition {
  readonly replicas: readonly number[] | null;
}

/** The options of `reassign-partitions`. */
export interface ReassignOptions {
  execute?: boolean;
  verify?: boolean;
  list?: boolean;
  cancel?: boolean;
  reassignmentJsonFile?: string;
  reassignment?: string[];
}

const usage = (message: string) => new SamsaError(ErrorCode.INVALID_REQUEST, message);
const name = (p: TopicPartition) => `${p.topic}-${p.partition}`;

function brokerIds(text: string, what: string): number[] {
  const ids = text.split(",").map((s) => s.trim());
  if (ids.some((s) => !/^\d+$/.test(s))) throw usage(`${what}: replicas must be broker ids`);
  return ids.map(Number);
}

/**
 * Parses one `--reassignment topic:partition=1,2,3` (`topic:partition` alone: replicas null).
 * @throws SamsaError INVALID_REQUEST when malformed.
 */
export function parseReassignmentArg(value: string): PlannedPartition {
  const eq = value.indexOf(REASSIGNMENT_REPLICAS_SEPARATOR);
  const head = eq < 0 ? value : value.slice(0, eq);
  const colon = head.lastIndexOf(REASSIGNMENT_PARTITION_SEPARATOR);
  const topic = colon < 0 ? "" : head.slice(0, colon).trim();
  const partition = head.slice(colon + 1).trim();
  if (topic === "" || !/^\d+$/.test(partition)) {
    throw usage(`--reassignment ${value}: expected topic:partition=replica,replica,...`);
  }
  const replicas = eq < 0 ? null : brokerIds(value.slice(eq + 1), `--reassignment ${value}`);
  return { topic, partition: Number(partition), replicas };
}

/**
 * Parses Kafka's reassignment JSON (`log_dirs` is accepted and ignored).
 * @throws SamsaError INVALID_REQUEST when it is not such a plan.
 */
export function parsePlan(text: string): PlannedPartition[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw usage(`the reassignment plan is not JSON: ${(err as Error).message}`);
  }
  const partitions = (doc as { partitions?: unknown } | null)?.partitions;
  if (!Array.isArray(partitions)) throw usage('the reassignment plan has no "partitions" list');
  if (partitions.length > PLAN_PARTITIONS_MAX) {
    throw usage(`the plan has more than ${PLAN_PARTITIONS_MAX} partitions`);
  }
  return partitions.map((p: unknown, i) => {
    const { topic, partition, replicas } = (p ?? {}) as Record<string, unknown>;
    const intOk = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
    if (typeof topic !== "string" || topic === "" || !intOk(partition)) {
      throw usage(`plan entry ${i}: needs "topic" and "partition"`);
    }
    if (replicas !== undefined && !(Array.isArray(replicas) && replicas.every(intOk))) {
      throw usage(`plan entry ${i}: "replicas" must be broker ids`);
    }
    return { topic, partition: partition as number, replicas: (replicas as number[]) ?? null };
  });
}

/** Kafka's reassignment JSON of `partitions` (replicas given). */
export function formatPlan(partitions: readonly PlannedPartition[]): string {
  const entries = partitions.map((p) => ({
    topic: p.topic,
    partition: p.partition,
    replicas: p.replicas ?? [],
    log_dirs: (p.replicas ?? []).map(() => "any"),
  }));
  return JSON.stringify({ version: PLAN_VERSION, partitions: entries });
}

/** The plan of the options: the JSON file or the `--reassignment`s (exactly one of the two). */
async function planOf(opts: ReassignOptions): Promise<PlannedPartition[]> {
  const compact = opts.reassignment ?? [];
  if ((opts.reassignmentJsonFile !== undefined) === compact.length > 0) {
    throw usage("give --reassignment-json-file or --reassignment (not both)");
  }
  const plan =
    opts.reassignmentJsonFile !== undefined
      ? parsePlan(await readFile(opts.reassignmentJsonFile, "utf8"))
      : compact.map(parseReassignmentArg);
  if (plan.length === 0) throw usage("the reassignment plan names no partition");
  return plan;
}

/** The one action of the options. */
function actionOf(opts: ReassignOptions): "execute" | "verify" | "list" | "cancel" {
  const actions = (["execute", "verify", "list", "cancel"] as const).filter((a) => opts[a]);
  if (actions.length !== 1)
    throw usage("give exactly one of --execute, --verify, --list, --cancel");
  return actions[0]!;
}

/** The plan's partitions with replicas (execute and verify need them). */
function withReplicas(plan: readonly PlannedPartition[]): PartitionReassignment[] {
  return plan.map((p) => {
    if (p.replicas === null || p.replicas.length === 0) {
      throw usage(`${name(p)}: the plan gives no replicas`);
    }
    return { topic: p.topic, partition: p.partition, replicas: p.replicas };
  });
}

/** The lines of failed results, and the error the command fails with (undefined: none failed). */
function failuresOf(
  results: readonly ReassignmentResult[],
  what: string,
): { lines: string[]; error?: SamsaError } {
  const failed = results.filter((r) => r.error !== null);
  if (failed.length === 0) return { lines: [] };
  const lines = [
    `Error ${what} partition(s):`,
    ...failed.map((r) => `${name(r)}: ${r.error!.codeName}: ${r.error!.message}`),
  ];
  return {
    lines,
    error: new SamsaError(failed[0]!.error!.code, `${failed.length} partition(s) failed`),
  };
}

/** `--list`: kafka-reassign-partitions' report of the reassignments in progress. */
export function formatOngoing(ongoing: readonly OngoingReassignment[]): string {
  if (ongoing.length === 0) return "No partition reassignments found.\n";
  const lines = ongoing.map(
    (o) =>
      `${name(o)}: replicas: ${o.replicas.join(",")}. adding: ${o.addingReplicas.join(",")}. removing: ${o.removingReplicas.join(",")}.`,
  );
  return `Current partition reassignments:\n${lines.map((l) => `${l}\n`).join("")}`;
}

/**
 * `--verify`: one line per planned partition — complete, still in progress, or neither — and
 * whether all are complete or in progress.
 */
export function verifyReport(
  plan: readonly PartitionReassignment[],
  ongoing: readonly OngoingReassignment[],
  topics: readonly TopicDescription[],
): { text: string; ok: boolean } {
  const running = new Set(ongoing.map(name));
  let ok = true;
  const lines = plan.map((p) => {
    if (running.has(name(p))) return `Reassignment of partition ${name(p)} is still in progress.`;
    const replicas = topics
      .find((t) => t.name === p.topic)
      ?.partitions.find((x) => x.partition === p.partition)?.replicas;
    if (replicas !== undefined && replicas.join() === p.replicas!.join()) {
      return `Reassignment of partition ${name(p)} is completed.`;
    }
    ok = false;
    if (replicas === undefined) return `Partition ${name(p)} does not exist.`;
    return `There is no active reassignment of partition ${name(p)}, but replica set is ${replicas.join(",")} rather than ${p.replicas!.join(",")}.`;
  });
  return { text: lines.map((l) => `${l}\n`).join(""), ok };
}

/** The current replicas of the plan's partitions, as a plan (what `--execute` prints). */
function currentAssignment(
  plan: readonly TopicPartition[],
  topics: readonly TopicDescription[],
): PlannedPartition[] {
  const out: PlannedPartition[] = [];
  for (const p of plan) {
    const replicas = topics
      .find((t) => t.name === p.topic)
      ?.partitions.find((x) => x.partition === p.partition)?.replicas;
    if (replicas !== undefined) out.push({ topic: p.topic, partition: p.partition, replicas });
  }
  return out;
}

async function run(admin: AdminApi, opts: ReassignOptions, ctx: CliContext): Promise<void> {
  const action = actionOf(opts);
  const out = (lines: readonly string[]) => ctx.stdout.write(lines.map((l) => `${l}\n`).join(""));
  if (action === "list") {
    ctx.stdout.write(formatOngoing(await admin.listPartitionReassignments()));
    return;
  }
  const plan = await planOf(opts);
  const topicsOf = (ps: readonly TopicPartition[]) => [...new Set(ps.map((p) => p.topic))];
  if (action === "cancel") {
    const results = await admin.alterPartitionReassignments(
      plan.map((p) => ({ topic: p.topic, partition: p.partition, replicas: null })),
    );
    const cancelled = results.filter((r) => r.error === null);
    if (cancelled.length > 0) {
      out([`Successfully cancelled partition reassignments for: ${cancelled.map(name).join(",")}`]);
    }
    const failed = failuresOf(results, "cancelling the reassignment of");
    out(failed.lines);
    if (failed.error) throw failed.error;
    return;
  }
  const targets = withReplicas(plan);
  const topics = await admin.describeTopics(topicsOf(targets));
  if (action === "verify") {
    const ongoing = await admin.listPartitionReassignments(targets);
    const report = verifyReport(targets, ongoing, topics);
    ctx.stdout.write(report.text);
    if (!report.ok) throw new SamsaError(ErrorCode.INVALID_REQUEST, "some reassignments failed");
    return;
  }
  out([
    "Current partition replica assignment",
    "",
    formatPlan(currentAssignment(targets, topics)),
    "",
    "Save this to use as the --reassignment-json-file option during rollback",
  ]);
  const results = await admin.alterPartitionReassignments(targets);
  const started = results.filter((r) => r.error === null);
  if (started.length > 0) {
    out([`Successfully started partition reassignments for ${started.map(name).join(",")}`]);
  }
  const failed = failuresOf(results, "reassigning");
  out(failed.lines);
  if (failed.error) throw failed.error;
}

/** Adds the `reassign-partitions` command to `program`. */
export function addReassignPartitionsCommand(program: Command, ctx: CliContext): void {
  program
    .command("reassign-partitions")
    .description("move partitions to new replicas (execute, verify, list, cancel)")
    .option("--execute", "start the reassignments of the plan")
    .option("--verify", "whether the plan's reassignments are complete")
    .option("--list", "the reassignments in progress")
    .option("--cancel", "cancel the plan's reassignments in progress")
    .option("--reassignment-json-file <path>", "the plan, in kafka-reassign-partitions' JSON")
    .option(
      "--reassignment <topic:partition=replicas>",
      "one partition of the plan, e.g. orders:0=1,2,3 (repeatable)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .action(async (_opts: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ReassignOptions & GlobalOptions>();
      actionOf(opts);
      await withAdmin(ctx, opts, (admin) => run(admin, opts, ctx));
    });
}

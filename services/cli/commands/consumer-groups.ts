/**
 * `samsa consumer-groups list|describe|reset-offsets|delete`, modelled on kafka-consumer-groups,
 * and `samsa consume --group G` (a group member that commits what it printed). They talk to the
 * GroupService of the gateways (`--gateway`, env {@link GATEWAY_ENV}, default the local cluster
 * launcher's gateway). `describe` prints one row per partition (GROUP TOPIC PARTITION
 * CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID, `-` where there is none),
 * `--members` one row per member, `--state` one row per group. `reset-offsets` is a dry run
 * unless `--execute` (and then needs an empty group).
 */
import { type Command, InvalidArgumentError } from "commander";
import {
  type ConsumerRecord,
  GroupClient,
  type GroupDescriptionInfo,
  GroupConsumer,
  parseAddressList,
  type ResetTarget,
} from "../../client/index.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { intAtLeast } from "./args.js";
import { type CliContext, type GlobalOptions, globalsOf } from "./context.js";
import { formatRecord, type RecordFormat } from "./output.js";

/** Environment variable with the gateways, `host:port[,host:port...]`. */
export const GATEWAY_ENV = "SAMSA_GATEWAY";
/** The local cluster launcher's gateway. */
export const DEFAULT_GATEWAYS: readonly string[] = Object.freeze(["127.0.0.1:19095"]);
/** Auto-commit interval of `consume --group`, ms. */
export const CONSUME_GROUP_COMMIT_INTERVAL_MS = 1_000;
/** Printed for a value that does not exist (no commit, no member), as kafka-consumer-groups does. */
const NONE_TEXT = "-";

interface GroupsOptions extends GlobalOptions {
  gateway?: string;
}

/** The gateways of the flag, else the environment, else the default. */
export function gatewaysOf(opts: { gateway?: string }, env: CliContext["env"]): string[] {
  if (opts.gateway !== undefined) return parseAddressList(opts.gateway);
  const fromEnv = env[GATEWAY_ENV]?.trim();
  if (fromEnv) return parseAddressList(fromEnv);
  return [...DEFAULT_GATEWAYS];
}

async function withGroups<T>(
  ctx: CliContext,
  opts: GroupsOptions,
  fn: (c: GroupClient) => Promise<T>,
): Promise<T> {
  const { settings } = globalsOf(opts, ctx.env);
  const client = new GroupClient({
    gateways: gatewaysOf(opts, ctx.env),
    apiTimeoutMs: settings.apiTimeoutMs,
    requestTimeoutMs: settings.requestTimeoutMs,
  });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Left-aligned columns separated by two spaces (kafka-consumer-groups' layout). */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map(
      (r) =>
        `${r
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd()}\n`,
    )
    .join("");
}

const text = (n: number): string => (n < 0 ? NONE_TEXT : String(n));

/** The rows of `describe` for one group (partitions, `--members` or `--state`). */
export function describeRows(
  d: GroupDescriptionInfo,
  view: "offsets" | "members" | "state",
): string[][] {
  if (view === "state")
    return [
      ["GROUP", "COORDINATOR", "ASSIGNOR", "STATE", "#MEMBERS"],
      [
        d.groupId,
        d.coordinator || NONE_TEXT,
        d.assignor || NONE_TEXT,
        d.state,
        String(d.members.length),
      ],
    ];
  if (view === "members") {
    const rows = [["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"]];
    for (const m of d.members) {
      const parts = m.assignment.map((p) => `${p.topic}(${p.partition})`).join(",");
      rows.push([
        d.groupId,
        m.memberId,
        m.clientHost,
        m.clientId,
        String(m.assignment.length),
        parts || NONE_TEXT,
      ]);
    }
    return rows;
  }
  const header = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"];
  const rows = [[...header, "CONSUMER-ID", "HOST", "CLIENT-ID"]];
  const byId = new Map(d.members.map((m) => [m.memberId, m]));
  for (const p of d.partitions) {
    const m = byId.get(p.memberId);
    rows.push([
      d.groupId,
      p.topic,
      String(p.partition),
      text(p.committedOffset),
      text(p.logEndOffset),
      text(p.lag),
      m?.memberId ?? NONE_TEXT,
      m?.clientHost || NONE_TEXT,
      m?.clientId || NONE_TEXT,
    ]);
  }
  return rows;
}

interface ResetOptions extends GroupsOptions {
  group: string;
  topic: string[];
  toEarliest?: boolean;
  toLatest?: boolean;
  toDatetime?: number;
  toOffset?: number;
  shiftBy?: number;
  dryRun?: boolean;
  execute?: boolean;
}

/** `topic` or `topic:0,2` → the topic and its partitions (none = all). */
export function parseTopicSpec(spec: string): { topic: string; partitions: number[] } {
  const i = spec.indexOf(":");
  if (i < 0) return { topic: spec, partitions: [] };
  const partitions = spec
    .slice(i + 1)
    .split(",")
    .map((p) => intAtLeast(0)(p));
  return { topic: spec.slice(0, i), partitions };
}

/** The one reset target the flags name. */
export function resetTargetOf(o: ResetOptions): ResetTarget {
  const targets: ResetTarget[] = [];
  if (o.toEarliest) targets.push({ toEarliest: true });
  if (o.toLatest) targets.push({ toLatest: true });
  if (o.toDatetime !== undefined) targets.push({ toDatetime: o.toDatetime });
  if (o.toOffset !== undefined) targets.push({ toOffset: o.toOffset });
  if (o.shiftBy !== undefined) targets.push({ shiftBy: o.shiftBy });
  if (targets.length !== 1)
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      "give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by",
    );
  if (o.dryRun && o.execute)
    throw new SamsaError(ErrorCode.INVALID_REQUEST, "--dry-run and --execute exclude each other");
  return targets[0]!;
}

function parseDatetime(value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isSafeInteger(ms) || ms < 0)
    throw new InvalidArgumentError("expected an ISO date-time or ms since the epoch");
  return ms;
}

function parseShift(value: string): number {
  const n = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError("expected an integer");
  return n;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** Adds `consumer-groups` to `program`. */
export function addConsumerGroupsCommand(program: Command, ctx: CliContext): void {
  const groups = program
    .command("consumer-groups")
    .description("list, describe, reset the offsets of and delete consumer groups");
  const gatewayFlag = [
    "--gateway <host:port,...>",
    `gateways (env ${GATEWAY_ENV}; default ${DEFAULT_GATEWAYS.join(",")})`,
  ] as const;
  groups
    .command("list")
    .description("list the groups")
    .option(...gatewayFlag)
    .option("--state", "print each group's state and member count too")
    .action(async (_o: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GroupsOptions & { state?: boolean }>();
      const list = await withGroups(ctx, opts, (c) => c.listGroups());
      if (!opts.state) for (const g of list) ctx.stdout.write(`${g.groupId}\n`);
      else if (list.length > 0)
        ctx.stdout.write(
          table([
            ["GROUP", "STATE", "#MEMBERS"],
            ...list.map((g) => [g.groupId, g.state, String(g.members)]),
          ]),
        );
    });
  groups
    .command("describe")
    .description("partitions with offsets and lag (or --members, --state) of a group")
    .requiredOption("--group <id>", "the group (repeat for several)", collect)
    .option(...gatewayFlag)
    .option("--members", "one row per member")
    .option("--state", "the group's state")
    .action(async (_o: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<
        GroupsOptions & { group: string[]; members?: boolean; state?: boolean }
      >();
      const view = opts.state ? "state" : opts.members ? "members" : "offsets";
      const described = await withGroups(ctx, opts, (c) => c.describeGroups(opts.group));
      let failed: SamsaError | undefined;
      for (const d of described) {
        if (d.error !== ErrorCode.NONE) {
          failed ??= new SamsaError(d.error, d.errorMessage || `group ${d.groupId}`);
          ctx.stderr.write(
            `Consumer group '${d.groupId}': ${ErrorCode[d.error]} ${d.errorMessage}\n`,
          );
          continue;
        }
        ctx.stdout.write(table(describeRows(d, view)));
      }
      if (failed !== undefined) throw failed;
    });
  groups
    .command("reset-offsets")
    .description("move a group's committed offsets (a dry run unless --execute)")
    .requiredOption("--group <id>", "the group")
    .requiredOption(
      "--topic <topic[:p,...]>",
      "topic, or topic:partitions (repeat for several)",
      collect,
    )
    .option(...gatewayFlag)
    .option("--to-earliest", "to the log start offset")
    .option("--to-latest", "to the log end offset")
    .option(
      "--to-datetime <time>",
      "to the first record at or after this time (ISO or ms)",
      parseDatetime,
    )
    .option("--to-offset <n>", "to this offset", intAtLeast(0))
    .option("--shift-by <n>", "move by n (negative: back)", parseShift)
    .option("--dry-run", "only print the new offsets (the default)")
    .option("--execute", "write the new offsets (the group must be empty)")
    .action(async (_o: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ResetOptions>();
      const target = resetTargetOf(opts);
      const res = await withGroups(ctx, opts, (c) =>
        c.resetOffsets(opts.group, opts.topic.map(parseTopicSpec), target, opts.execute === true),
      );
      const rows = [["GROUP", "TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"]];
      for (const p of res.partitions)
        rows.push([
          opts.group,
          p.topic,
          String(p.partition),
          text(p.previousOffset),
          p.error === ErrorCode.NONE ? text(p.newOffset) : ErrorCode[p.error],
        ]);
      ctx.stdout.write(table(rows));
      if (!res.executed) ctx.stderr.write("Dry run: nothing written (add --execute to write)\n");
    });
  groups
    .command("delete")
    .description("delete empty groups and their committed offsets")
    .requiredOption("--group <id>", "the group (repeat for several)", collect)
    .option(...gatewayFlag)
    .action(async (_o: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GroupsOptions & { group: string[] }>();
      const results = await withGroups(ctx, opts, (c) => c.deleteGroups(opts.group));
      let failed: SamsaError | undefined;
      for (const [group, err] of results) {
        if (err === undefined) ctx.stdout.write(`Deletion of group '${group}' succeeded\n`);
        else {
          failed ??= err;
          ctx.stderr.write(`Deletion of group '${group}' failed: ${err.codeName} ${err.message}\n`);
        }
      }
      if (failed !== undefined) throw failed;
    });
}

/** What `consume --group` needs of the consume command's options. */
export interface GroupConsumeOptions extends GroupsOptions {
  topic: string;
  group: string;
  fromBeginning?: boolean;
  maxMessages?: number;
  timeoutMs?: number;
}

/**
 * `consume --group`: a group member printing records; commits what it printed every second and
 * when it ends (after --max-messages, --timeout-ms without a record, or Ctrl-C). Without a
 * committed offset it starts at the latest offset, or the earliest with --from-beginning.
 * Resolves with the number of records printed.
 */
export async function consumeAsGroup(
  ctx: CliContext,
  opts: GroupConsumeOptions,
  format: RecordFormat,
): Promise<number> {
  const { endpoints, settings } = globalsOf(opts, ctx.env);
  const consumer = new GroupConsumer({
    groupId: opts.group,
    gateways: gatewaysOf(opts, ctx.env),
    bootstrapServers: endpoints.bootstrap,
    clientId: "samsa-cli",
    autoOffsetReset: opts.fromBeginning ? "earliest" : "latest",
    autoCommitIntervalMs: CONSUME_GROUP_COMMIT_INTERVAL_MS,
    requestTimeoutMs: settings.requestTimeoutMs,
  });
  consumer.subscribe([opts.topic]);
  let count = 0;
  let idle: NodeJS.Timeout | undefined;
  const stop = (): void => {
    void consumer.disconnect();
  };
  const armIdle = (): void => {
    if (opts.timeoutMs === undefined) return;
    clearTimeout(idle);
    idle = setTimeout(stop, opts.timeoutMs);
  };
  ctx.signal.addEventListener("abort", stop, { once: true });
  if (ctx.signal.aborted) stop();
  armIdle();
  try {
    await consumer.run({
      eachMessage: ({ message }: { message: ConsumerRecord }) => {
        if (opts.maxMessages !== undefined && count >= opts.maxMessages) {
          // Past the limit: not printed, so not processed (and not committed).
          throw new StopConsuming();
        }
        ctx.stdout.write(formatRecord(message, format));
        count++;
        armIdle();
        if (opts.maxMessages !== undefined && count >= opts.maxMessages) stop();
      },
    });
  } catch (err) {
    if (!(err instanceof StopConsuming)) throw err;
  } finally {
    clearTimeout(idle);
    ctx.signal.removeEventListener("abort", stop);
    await consumer.disconnect();
  }
  return count;
}

/** Ends `consume --group` at a record it must not print. */
class StopConsuming extends Error {}

/** `consume --group` as the consume command calls it: checks the flags, prints the count. */
export async function consumeGroupCommand(
  ctx: CliContext,
  opts: GroupConsumeOptions &
    Partial<RecordFormat> & { partition?: number; offset?: unknown; skipCorrupt?: boolean },
): Promise<void> {
  if (opts.partition !== undefined || opts.offset !== undefined)
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      "--group takes the partitions the group assigns: no --partition or --offset",
    );
  let count = 0;
  try {
    count = await consumeAsGroup(ctx, opts, {
      printKey: opts.printKey === true,
      printOffset: opts.printOffset === true,
      printPartition: opts.printPartition === true,
      keySeparator: opts.keySeparator ?? "\t",
    });
  } finally {
    ctx.stderr.write(`Processed a total of ${count} messages\n`);
  }
}

/**
 * What the CLI prints: errors as one line `error: <CODE_NAME>: <message>` (never a stack trace
 * for a SamsaError), topic descriptions in kafka-topics' `--describe` layout, the cluster,
 * leader elections in kafka-leader-election's layout, and consumed records in the console
 * consumer's layout.
 */
import type {
  ClusterDescription,
  ElectionResult,
  ElectionType,
  OngoingReassignment,
  PartitionMetadata,
  TopicDescription,
} from "../../client/index.js";
import { NO_LEADER_ID } from "../../client/index.js";
import type { ConsumerRecord } from "../../client/index.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { NULL_TEXT } from "../defaults.js";

/** A writable text stream (process.stdout, or a test's collector). */
export interface TextOut {
  write(text: string): unknown;
}

/** Separator of fields on a line of `topics describe` and `cluster describe` (Kafka's tab). */
export const FIELD_SEPARATOR = "\t";
/** Separator of ids in a list (`Replicas: 1,2,3`). */
export const ID_LIST_SEPARATOR = ",";

/**
 * The line printed for a failed command: `error: <CODE_NAME>: <message>`. Anything that is not
 * a SamsaError is reported as UNKNOWN with its message only.
 */
export function formatError(err: unknown): string {
  const code = err instanceof SamsaError ? err.codeName : ErrorCode[ErrorCode.UNKNOWN];
  const message = err instanceof Error ? err.message : String(err);
  return `error: ${code}: ${message.replace(/\s*\n\s*/g, " ")}`;
}

const ids = (list: readonly number[]): string => list.join(ID_LIST_SEPARATOR);

/** A partition whose ISR is smaller than its replicas (kafka-topics' under-replicated). */
export function isUnderReplicated(p: PartitionMetadata): boolean {
  return p.isr.length < p.replicas.length;
}

/** A partition without a live leader (kafka-topics' unavailable). */
export function isUnavailable(p: PartitionMetadata): boolean {
  return p.leaderId === NO_LEADER_ID || p.offlineReplicas.includes(p.leaderId);
}

/**
 * kafka-topics' `--describe` layout: one summary line per topic, then one tab-indented line per
 * partition with Topic, Partition, Leader (`none` without one), Replicas and Isr (and Offline
 * when some replicas are offline, and Adding Replicas and Removing Replicas while a reassignment
 * in `reassignments` runs). With `only` (kafka-topics' `--under-replicated-partitions` and
 * `--unavailable-partitions`), just the partitions it accepts, without the summary line.
 */
export function formatTopicDescription(
  t: TopicDescription,
  only?: (p: PartitionMetadata) => boolean,
  reassignments: readonly OngoingReassignment[] = [],
): string {
  const configs = Object.entries(t.configs)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(ID_LIST_SEPARATOR);
  const lines: string[] = [];
  if (only === undefined) {
    lines.push(
      [
        `Topic: ${t.name}`,
        `TopicId: ${t.topicId}`,
        `PartitionCount: ${t.partitions.length}`,
        `ReplicationFactor: ${t.partitions[0]?.replicas.length ?? 0}`,
        `Configs: ${configs}`,
      ].join(FIELD_SEPARATOR),
    );
  }
  for (const p of t.partitions) {
    if (only !== undefined && !only(p)) continue;
    const fields = [
      `Topic: ${t.name}`,
      `Partition: ${p.partition}`,
      `Leader: ${p.leaderId === NO_LEADER_ID ? "none" : p.leaderId}`,
      `Replicas: ${ids(p.replicas)}`,
      `Isr: ${ids(p.isr)}`,
    ];
    if (p.offlineReplicas.length > 0) fields.push(`Offline: ${ids(p.offlineReplicas)}`);
    const r = reassignments.find((x) => x.topic === t.name && x.partition === p.partition);
    if (r !== undefined) {
      fields.push(`Adding Replicas: ${ids(r.addingReplicas)}`);
      fields.push(`Removing Replicas: ${ids(r.removingReplicas)}`);
    }
    lines.push(FIELD_SEPARATOR + fields.join(FIELD_SEPARATOR));
  }
  return lines.map((l) => `${l}\n`).join("");
}

/**
 * kafka-leader-election's report: `Successfully completed leader election (PREFERRED) for
 * partitions t-0, t-1`, `Valid replica already elected for partitions t-2`, then one line per
 * failed partition, `Error completing leader election (PREFERRED) for partition: t-3: <CODE>:
 * <message>`; `No partition needed a leader election.` when there is nothing to report.
 */
export function formatElectionResults(
  type: ElectionType,
  results: readonly ElectionResult[],
): string {
  const name = type.toUpperCase();
  const id = (r: ElectionResult) => `${r.topic}-${r.partition}`;
  const elected = results.filter((r) => r.error === null);
  const notNeeded = results.filter((r) => r.error?.code === ErrorCode.ELECTION_NOT_NEEDED);
  const lines: string[] = [];
  if (elected.length > 0) {
    lines.push(
      `Successfully completed leader election (${name}) for partitions ${elected.map(id).join(", ")}`,
    );
  }
  if (notNeeded.length > 0) {
    lines.push(`Valid replica already elected for partitions ${notNeeded.map(id).join(", ")}`);
  }
  for (const r of results) {
    if (r.error === null || r.error.code === ErrorCode.ELECTION_NOT_NEEDED) continue;
    lines.push(
      `Error completing leader election (${name}) for partition: ${id(r)}: ${r.error.codeName}: ${r.error.message}`,
    );
  }
  if (lines.length === 0) lines.push("No partition needed a leader election.");
  return lines.map((l) => `${l}\n`).join("");
}

/** The cluster: its id, the active controller, then one line per live broker. */
export function formatCluster(c: ClusterDescription): string {
  const controller =
    c.controllerId === ""
      ? "Controller: none"
      : [
          `Controller: ${c.controllerId}`,
          `Address: ${c.controllerAddress}`,
          `Epoch: ${c.controllerEpoch}`,
        ].join(FIELD_SEPARATOR);
  const brokers = c.brokers.map((b) =>
    [`Broker: ${b.id}`, `Address: ${b.address}`, `Rack: ${b.rack === "" ? "none" : b.rack}`].join(
      FIELD_SEPARATOR,
    ),
  );
  return `${[`ClusterId: ${c.clusterId}`, controller, ...brokers].join("\n")}\n`;
}

/** What `consume` prints of each record. */
export interface RecordFormat {
  printPartition: boolean;
  printOffset: boolean;
  printKey: boolean;
  /** Between key and value. */
  keySeparator: string;
}

/**
 * One consumed record as the console consumer prints it:
 * `[Partition:<p>\t][Offset:<o>\t][<key><sep>]<value>`, with `null` for a null key or value.
 */
export function formatRecord(r: ConsumerRecord, f: RecordFormat): string {
  let line = "";
  if (f.printPartition) line += `Partition:${r.partition}${FIELD_SEPARATOR}`;
  if (f.printOffset) line += `Offset:${r.offset}${FIELD_SEPARATOR}`;
  if (f.printKey) line += `${r.key === null ? NULL_TEXT : r.key.toString("utf8")}${f.keySeparator}`;
  line += r.value === null ? NULL_TEXT : r.value.toString("utf8");
  return `${line}\n`;
}

/**
 * The etcd key layout of a Samsa cluster (docs/architecture.md#etcd-keys) and the JSON values
 * stored under it.
 *
 * Every key lives under one prefix, by default `/samsa/<cluster-id>/`:
 *
 * | key                                   | value                          |
 * |---------------------------------------|--------------------------------|
 * | `brokers/<id>`                        | {@link BrokerRegistration}     |
 * | `controller/<lease-id>`               | {@link ControllerCandidate} (one key per candidate; the leader is the oldest) |
 * | `topics/<name>`                       | {@link TopicRecord}            |
 * | `partitions/<topic>/<p>`              | {@link PartitionState}         |
 * | `groups/<group>/members/<member>`     | gateway-defined                |
 * | `groups/<group>/state`                | gateway-defined (the coordinator's group record) |
 * | `groups/<group>/owner`                | {@link GroupOwnerRecord} (leased by the coordinating gateway) |
 * | `offsets/<group>/<topic>/<p>`         | {@link OffsetRecord}           |
 *
 * Name segments (topic, group, member) are percent-encoded (`encodeURIComponent`), so a group id
 * containing `/` cannot collide with another key; legal topic names are unchanged by it.
 *
 * Decoding validates every field at run time and throws {@link MetadataDecodeError}: a watcher
 * logs and skips such a value rather than crashing.
 */
import type { IKeyValue } from "etcd3";
import { assert, ErrorCode, SamsaError } from "../errors.js";

/** Root under which cluster prefixes live when none is configured. */
export const keyRootDefault = "/samsa";

/** A value stored in etcd could not be decoded: garbage JSON or a field of the wrong shape. */
export class MetadataDecodeError extends SamsaError {
  readonly key: string;
  readonly reason: string;

  constructor(key: string, reason: string, options?: { cause?: unknown }) {
    super(ErrorCode.UNKNOWN, `cannot decode etcd value at ${key}: ${reason}`, options);
    this.name = "MetadataDecodeError";
    this.key = key;
    this.reason = reason;
  }
}

/** An etcd key-value with the key as a string and revisions as numbers. */
export interface EtcdKeyValue {
  readonly key: string;
  readonly value: Buffer;
  /** Revision that created the key (changes only if the key is deleted and re-created). */
  readonly createRevision: number;
  /** Revision of the last write to the key. */
  readonly modRevision: number;
  /** Lease attached to the key, as etcd's decimal string; "0" for none. */
  readonly lease: string;
}

/** Converts an etcd revision (int64 as a string) to a number, asserting it is exact. */
export function revisionNumber(revision: string | number): number {
  const n = Number(revision);
  assert(Number.isSafeInteger(n) && n >= 0, `etcd revision ${revision} is a safe integer`);
  return n;
}

/** Converts etcd3's raw key-value into an {@link EtcdKeyValue}. */
export function toEtcdKeyValue(kv: IKeyValue): EtcdKeyValue {
  return {
    key: kv.key.toString("utf8"),
    value: kv.value,
    createRevision: revisionNumber(kv.create_revision),
    modRevision: revisionNumber(kv.mod_revision),
    lease: kv.lease,
  };
}

/** A key of the layout, parsed by {@link EtcdKeys.parse}. */
export type ParsedKey =
  | { kind: "broker"; brokerId: number }
  | { kind: "controller"; candidate: string }
  | { kind: "topic"; topic: string }
  | { kind: "partition"; topic: string; partition: number }
  | { kind: "groupMember"; group: string; member: string }
  | { kind: "groupState"; group: string }
  | { kind: "groupOwner"; group: string }
  | { kind: "offset"; group: string; topic: string; partition: number };

const seg = encodeURIComponent;

/** Builds and parses the keys of one cluster. Immutable; share one instance per process. */
export class EtcdKeys {
  /** The cluster prefix, always ending with `/` (e.g. `/samsa/prod-1/`). */
  readonly prefix: string;

  /** @param prefix the cluster prefix; a missing trailing `/` is added. */
  constructor(prefix: string) {
    assert(prefix.length > 0, "etcd key prefix is not empty");
    this.prefix = prefix.endsWith("/") ? prefix : `${prefix}/`;
  }

  /** Keys under `<root>/<clusterId>/` (root default {@link keyRootDefault}). */
  static forCluster(clusterId: string, root: string = keyRootDefault): EtcdKeys {
    assert(/^[A-Za-z0-9._-]+$/.test(clusterId), `cluster id ${clusterId} is [A-Za-z0-9._-]+`);
    return new EtcdKeys(`${root.replace(/\/+$/, "")}/${clusterId}/`);
  }

  /** Prefix of all broker registrations. */
  brokersPrefix(): string {
    return `${this.prefix}brokers/`;
  }
  /** `brokers/<id>`: a broker's registration (leased). */
  broker(brokerId: number): string {
    return `${this.brokersPrefix()}${brokerId}`;
  }
  /** Election namespace: one key per candidate, named by its lease id. */
  controllerPrefix(): string {
    return `${this.prefix}controller/`;
  }
  /**
   * `producer-ids/next`: the first producer id not yet handed out in a block (decimal), advanced
   * by the active controller with a compare-and-swap (docs/idempotence.md).
   */
  producerIdsNext(): string {
    return `${this.prefix}producer-ids/next`;
  }
  /** Prefix of all topic records. */
  topicsPrefix(): string {
    return `${this.prefix}topics/`;
  }
  /** `topics/<name>`: a topic record. */
  topic(name: string): string {
    return `${this.topicsPrefix()}${seg(name)}`;
  }
  /** All partitions (no argument) or those of one topic. */
  partitionsPrefix(topic?: string): string {
    const all = `${this.prefix}partitions/`;
    return topic === undefined ? all : `${all}${seg(topic)}/`;
  }
  /** `partitions/<topic>/<p>`: a partition state. */
  partition(topic: string, partition: number): string {
    return `${this.partitionsPrefix(topic)}${partition}`;
  }
  /** All groups (no argument) or everything of one group. */
  groupsPrefix(group?: string): string {
    const all = `${this.prefix}groups/`;
    return group === undefined ? all : `${all}${seg(group)}/`;
  }
  /** Prefix of a group's members. */
  groupMembersPrefix(group: string): string {
    return `${this.groupsPrefix(group)}members/`;
  }
  /** `groups/<group>/members/<member>` (leased by the member). */
  groupMember(group: string, member: string): string {
    return `${this.groupMembersPrefix(group)}${seg(member)}`;
  }
  /** `groups/<group>/state`: generation, leader, assignment. */
  groupState(group: string): string {
    return `${this.groupsPrefix(group)}state`;
  }
  /** `groups/<group>/owner`: the gateway coordinating the group (leased by it). */
  groupOwner(group: string): string {
    return `${this.groupsPrefix(group)}owner`;
  }
  /** All offsets (no argument) or those of one group. */
  offsetsPrefix(group?: string): string {
    const all = `${this.prefix}offsets/`;
    return group === undefined ? all : `${all}${seg(group)}/`;
  }
  /** `offsets/<group>/<topic>/<p>`: a committed offset. */
  offset(group: string, topic: string, partition: number): string {
    return `${this.offsetsPrefix(group)}${seg(topic)}/${partition}`;
  }

  /** Parses a full key of this cluster; undefined for anything outside the layout. */
  parse(key: string): ParsedKey | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const parts = key.slice(this.prefix.length).split("/");
    try {
      return parseParts(parts.map((p) => decodeURIComponent(p)));
    } catch {
      return undefined; // malformed percent-encoding
    }
  }
}

function parseIndex(text: string | undefined): number | undefined {
  if (text === undefined || !/^(0|[1-9][0-9]{0,9})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 0x7fffffff ? n : undefined;
}

function parseParts(p: string[]): ParsedKey | undefined {
  const [head, a, b, c] = p;
  const index = (s: string | undefined) => parseIndex(s);
  switch (head) {
    case "brokers": {
      const brokerId = index(a);
      return p.length === 2 && brokerId !== undefined ? { kind: "broker", brokerId } : undefined;
    }
    case "controller":
      return p.length === 2 && a ? { kind: "controller", candidate: a } : undefined;
    case "topics":
      return p.length === 2 && a ? { kind: "topic", topic: a } : undefined;
    case "partitions": {
      const partition = index(b);
      return p.length === 3 && a && partition !== undefined
        ? { kind: "partition", topic: a, partition }
        : undefined;
    }
    case "groups":
      if (p.length === 3 && a && b === "state") return { kind: "groupState", group: a };
      if (p.length === 3 && a && b === "owner") return { kind: "groupOwner", group: a };
      if (p.length === 4 && a && b === "members" && c) {
        return { kind: "groupMember", group: a, member: c };
      }
      return undefined;
    case "offsets": {
      const partition = index(c);
      return p.length === 4 && a && b && partition !== undefined
        ? { kind: "offset", group: a, topic: b, partition }
        : undefined;
    }
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Values (JSON). Each decoder validates every field and throws MetadataDecodeError.

/** A broker's address on one listener. */
export interface ListenerAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * What a broker stores at `brokers/<id>` (its {@link BrokerRegistration} minus the epoch).
 * `host`/`port` are its address on the inter-broker listener (what services dial); `listeners`
 * its advertised address on every listener by name, that one included. Registrations written
 * before listeners had names have no `listeners`.
 */
export interface BrokerEndpoint {
  readonly id: number;
  readonly host: string;
  readonly port: number;
  readonly rack?: string;
  readonly metricsPort?: number;
  readonly listeners?: Readonly<Record<string, ListenerAddress>>;
  /**
   * Partitions whose log dir went offline on this broker (disk full, I/O error; Kafka's offline
   * log dir): the controller counts the broker as dead for them (leadership moves to another
   * in-sync replica, the broker leaves their ISR). Absent when none; cleared by a restart.
   */
  readonly offlinePartitions?: ReadonlyArray<OfflinePartition>;
}

/** A partition offline on one broker. */
export interface OfflinePartition {
  readonly topic: string;
  readonly partition: number;
}

/** Whether `broker` can host `topic`/`partition` (registered, and not offline for it). */
export function brokerServes(
  broker: Pick<BrokerEndpoint, "offlinePartitions">,
  topic: string,
  partition: number,
): boolean {
  return !broker.offlinePartitions?.some((p) => p.topic === topic && p.partition === partition);
}

/**
 * A live broker. `brokerEpoch` is **the create revision of its `brokers/<id>` key**, i.e. the
 * revision of the registration put (like Kafka's czxid of the ZooKeeper node). It is not stored
 * in the JSON value (a put cannot know its own revision): decoders take it from the key-value, so
 * it can never disagree with etcd. A re-registration creates the key again: a larger epoch.
 */
export interface BrokerRegistration extends BrokerEndpoint {
  readonly brokerEpoch: number;
}

/** A topic at `topics/<name>`. */
export interface TopicRecord {
  /** UUID, new for every creation of the name (tells a re-created topic apart). */
  readonly id: string;
  readonly name: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  /** Topic-level config overrides (Kafka names, string values). */
  readonly config: Readonly<Record<string, string>>;
  /** Creation time, ms since the Unix epoch. */
  readonly createdAt: number;
}

/** The state of one partition at `partitions/<topic>/<p>`. */
export interface PartitionState {
  /** Assigned replicas, preferred leader first. */
  readonly replicas: readonly number[];
  /** Leader broker id; {@link noLeader} when offline. */
  readonly leader: number;
  /** Bumped by the controller on every leader change. */
  readonly leaderEpoch: number;
  /** In-sync replicas (a subset of `replicas`). */
  readonly isr: readonly number[];
  /** Bumped on every change of this state (leader or ISR). */
  readonly partitionEpoch: number;
  /**
   * While a reassignment is in progress (KIP-455): the replicas being added, a subset of
   * `replicas` (which then holds the target first, then the replicas being removed). Absent or
   * empty otherwise.
   */
  readonly addingReplicas?: readonly number[];
  /** While a reassignment is in progress: the replicas to drop once it completes. */
  readonly removingReplicas?: readonly number[];
}

/** {@link PartitionState.leader} of a partition without a leader. */
export const noLeader = -1;

/** A {@link PartitionState} with the revisions it was read at (what a CAS compares). */
export interface VersionedPartitionState {
  readonly state: PartitionState;
  readonly modRevision: number;
  readonly createRevision: number;
}

/** What a controller candidate stores under `controller/`. */
export interface ControllerCandidate {
  /** The controller's id (config `controller.id`; a string, e.g. `<host>-<pid>`). */
  readonly id: string;
  /** Where the candidate serves the Admin API (`host:port`). */
  readonly address: string;
}

/** A candidate as observed: the leader is the one with the smallest epoch. */
export interface ControllerInfo extends ControllerCandidate {
  /** Controller epoch: the create revision of the candidate's key. */
  readonly epoch: number;
  /** The candidate's full key. */
  readonly key: string;
}

type Json = Record<string, unknown>;

function parseJson(kv: EtcdKeyValue): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(kv.value.toString("utf8"));
  } catch (err) {
    throw new MetadataDecodeError(kv.key, "not JSON", { cause: err });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new MetadataDecodeError(kv.key, "not a JSON object");
  }
  return parsed as Json;
}

function int(kv: EtcdKeyValue, obj: Json, field: string, min: number): number {
  const v = obj[field];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    throw new MetadataDecodeError(kv.key, `${field} must be an integer >= ${min}`);
  }
  return v;
}

function str(kv: EtcdKeyValue, obj: Json, field: string): string {
  const v = obj[field];
  if (typeof v !== "string" || v.length === 0) {
    throw new MetadataDecodeError(kv.key, `${field} must be a non-empty string`);
  }
  return v;
}

function ids(kv: EtcdKeyValue, obj: Json, field: string): number[] {
  const v = obj[field];
  const ok =
    Array.isArray(v) &&
    v.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0) &&
    new Set(v).size === v.length;
  if (!ok) throw new MetadataDecodeError(kv.key, `${field} must be distinct broker ids`);
  return v as number[];
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** JSON of a broker's registration value. */
export function encodeBrokerEndpoint(endpoint: BrokerEndpoint): string {
  const { id, host, port, rack, metricsPort, listeners, offlinePartitions } = endpoint;
  const offline = offlinePartitions?.length ? offlinePartitions : undefined;
  return JSON.stringify({
    id,
    host,
    port,
    rack,
    metricsPort,
    listeners,
    offlinePartitions: offline,
  });
}

/** Decodes `brokers/<id>`; `brokerEpoch` is the key's create revision. */
export function decodeBrokerRegistration(kv: EtcdKeyValue): BrokerRegistration {
  const o = parseJson(kv);
  const id = int(kv, o, "id", 0);
  const host = str(kv, o, "host");
  const port = int(kv, o, "port", 1);
  if (port > 65535) throw new MetadataDecodeError(kv.key, "port must be <= 65535");
  const rack = o.rack === undefined ? undefined : str(kv, o, "rack");
  const metricsPort = o.metricsPort === undefined ? undefined : int(kv, o, "metricsPort", 0);
  const listeners = o.listeners === undefined ? undefined : listenerAddresses(kv, o.listeners);
  const key = kv.key.slice(kv.key.lastIndexOf("/") + 1);
  if (key !== String(id)) throw new MetadataDecodeError(kv.key, `id ${id} does not match key`);
  const offlinePartitions =
    o.offlinePartitions === undefined ? undefined : offlinePartitionList(kv, o.offlinePartitions);
  const registration: BrokerRegistration = {
    id,
    host,
    port,
    rack,
    metricsPort,
    brokerEpoch: kv.createRevision,
  };
  return {
    ...registration,
    ...(listeners === undefined ? {} : { listeners }),
    ...(offlinePartitions === undefined ? {} : { offlinePartitions }),
  };
}

/** `offlinePartitions` of a registration: `[{topic, partition}]`, each checked. */
function offlinePartitionList(kv: EtcdKeyValue, value: unknown): OfflinePartition[] {
  if (!Array.isArray(value)) {
    throw new MetadataDecodeError(kv.key, "offlinePartitions must be an array");
  }
  return value.map((v) => {
    if (typeof v !== "object" || v === null) {
      throw new MetadataDecodeError(kv.key, "offlinePartitions entries must be objects");
    }
    return { topic: str(kv, v as Json, "topic"), partition: int(kv, v as Json, "partition", 0) };
  });
}

/** `listeners` of a registration: `{NAME: {host, port}}`, each address checked. */
function listenerAddresses(kv: EtcdKeyValue, value: unknown): Record<string, ListenerAddress> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new MetadataDecodeError(kv.key, "listeners must be an object");
  }
  const out: Record<string, ListenerAddress> = {};
  for (const [name, address] of Object.entries(value as Json)) {
    if (typeof address !== "object" || address === null || Array.isArray(address)) {
      throw new MetadataDecodeError(kv.key, `listener ${name} must be {host, port}`);
    }
    const host = str(kv, address as Json, "host");
    const port = int(kv, address as Json, "port", 1);
    if (port > 65535) throw new MetadataDecodeError(kv.key, "port must be <= 65535");
    out[name] = Object.freeze({ host, port });
  }
  return Object.freeze(out);
}

/** JSON of a topic record. */
export function encodeTopicRecord(topic: TopicRecord): string {
  return JSON.stringify(topic);
}

/** Decodes `topics/<name>`. */
export function decodeTopicRecord(kv: EtcdKeyValue): TopicRecord {
  const o = parseJson(kv);
  const id = str(kv, o, "id");
  if (!uuidPattern.test(id)) throw new MetadataDecodeError(kv.key, "id must be a UUID");
  const config = o.config;
  const configOk =
    typeof config === "object" &&
    config !== null &&
    !Array.isArray(config) &&
    Object.values(config).every((v) => typeof v === "string");
  if (!configOk) throw new MetadataDecodeError(kv.key, "config must map strings to strings");
  return {
    id,
    name: str(kv, o, "name"),
    partitions: int(kv, o, "partitions", 1),
    replicationFactor: int(kv, o, "replicationFactor", 1),
    config: config as Record<string, string>,
    createdAt: int(kv, o, "createdAt", 0),
  };
}

/** Whether a partition state records a reassignment in progress. */
export function isReassigning(state: PartitionState): boolean {
  return (state.addingReplicas?.length ?? 0) > 0 || (state.removingReplicas?.length ?? 0) > 0;
}

/** JSON of a partition state (the reassignment fields only while one is in progress). */
export function encodePartitionState(state: PartitionState): string {
  const { replicas, leader, leaderEpoch, isr, partitionEpoch } = state;
  if (!isReassigning(state)) {
    return JSON.stringify({ replicas, leader, leaderEpoch, isr, partitionEpoch });
  }
  const addingReplicas = state.addingReplicas ?? [];
  const removingReplicas = state.removingReplicas ?? [];
  return JSON.stringify({
    replicas,
    leader,
    leaderEpoch,
    isr,
    partitionEpoch,
    addingReplicas,
    removingReplicas,
  });
}

/** Decodes `partitions/<topic>/<p>`, checking leader ∈ replicas and ISR ⊆ replicas. */
export function decodePartitionState(kv: EtcdKeyValue): PartitionState {
  const o = parseJson(kv);
  const replicas = ids(kv, o, "replicas");
  if (replicas.length === 0) throw new MetadataDecodeError(kv.key, "replicas must not be empty");
  const leader = int(kv, o, "leader", noLeader);
  if (leader !== noLeader && !replicas.includes(leader)) {
    throw new MetadataDecodeError(kv.key, `leader ${leader} is not a replica`);
  }
  const isr = ids(kv, o, "isr");
  if (!isr.every((b) => replicas.includes(b))) {
    throw new MetadataDecodeError(kv.key, "isr must be a subset of replicas");
  }
  const state = {
    replicas,
    leader,
    leaderEpoch: int(kv, o, "leaderEpoch", 0),
    isr,
    partitionEpoch: int(kv, o, "partitionEpoch", 0),
  };
  if (o.addingReplicas === undefined && o.removingReplicas === undefined) return state;
  const adding = o.addingReplicas === undefined ? [] : ids(kv, o, "addingReplicas");
  const removing = o.removingReplicas === undefined ? [] : ids(kv, o, "removingReplicas");
  if (![...adding, ...removing].every((b) => replicas.includes(b))) {
    throw new MetadataDecodeError(kv.key, "adding and removing replicas must be replicas");
  }
  if (adding.some((b) => removing.includes(b))) {
    throw new MetadataDecodeError(kv.key, "a replica cannot be both adding and removing");
  }
  if (removing.length === replicas.length) {
    throw new MetadataDecodeError(kv.key, "a reassignment keeps at least one replica");
  }
  if (adding.length === 0 && removing.length === 0) return state;
  return { ...state, addingReplicas: adding, removingReplicas: removing };
}

/** Decodes a partition state together with the revisions a CAS compares. */
export function decodeVersionedPartitionState(kv: EtcdKeyValue): VersionedPartitionState {
  return {
    state: decodePartitionState(kv),
    modRevision: kv.modRevision,
    createRevision: kv.createRevision,
  };
}

/** JSON of a controller candidate. */
export function encodeControllerCandidate(candidate: ControllerCandidate): string {
  return JSON.stringify({ id: candidate.id, address: candidate.address });
}

/** Decodes a candidate key under `controller/`; its epoch is the key's create revision. */
export function decodeControllerInfo(kv: EtcdKeyValue): ControllerInfo {
  const o = parseJson(kv);
  return {
    id: str(kv, o, "id"),
    address: str(kv, o, "address"),
    epoch: kv.createRevision,
    key: kv.key,
  };
}

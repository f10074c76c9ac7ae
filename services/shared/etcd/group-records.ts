/**
 * The consumer group records of the etcd layout (docs/groups.md#etcd): who coordinates a group
 * (`groups/<group>/owner`, put with the coordinating gateway's lease, so it vanishes when that
 * gateway dies) and a group's committed offsets (`offsets/<group>/<topic>/<p>`, written only by
 * the coordinator, in a transaction that compares its owner key's create revision: a deposed
 * coordinator cannot write). The group's own state (`groups/<group>/state`) is the
 * coordinator's record and is decoded by the gateway.
 */
import { type EtcdKeyValue, MetadataDecodeError } from "./keys.js";

/** `groups/<group>/owner`: the coordinating gateway. */
export interface GroupOwnerRecord {
  /** The gateway's id. */
  readonly gatewayId: string;
  /** Where clients reach it (`host:port`). */
  readonly address: string;
}

/** An owner record with the key's revisions: the create revision is the ownership's epoch. */
export interface VersionedGroupOwner extends GroupOwnerRecord {
  readonly epoch: number;
  /** The lease the key is attached to (etcd's decimal string). */
  readonly lease: string;
}

/** `offsets/<group>/<topic>/<p>`: a committed offset. */
export interface OffsetRecord {
  /** The next offset the group reads. */
  readonly offset: number;
  /** Leader epoch of the last record processed; -1 = unknown. */
  readonly leaderEpoch: number;
  /** Free-form metadata of the commit. */
  readonly metadata: string;
  /** When it was committed, ms since the epoch. */
  readonly commitTimestamp: number;
  /** The member that committed it ("" = a non-member: an admin commit or a reset). */
  readonly memberId: string;
  /** Its member epoch then. */
  readonly memberEpoch: number;
}

type Json = Record<string, unknown>;

function parse(kv: EtcdKeyValue): Json {
  let value: unknown;
  try {
    value = JSON.parse(kv.value.toString("utf8"));
  } catch (err) {
    throw new MetadataDecodeError(kv.key, "not JSON", { cause: err });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new MetadataDecodeError(kv.key, "not a JSON object");
  return value as Json;
}

function integer(kv: EtcdKeyValue, o: Json, field: string, min: number): number {
  const v = o[field];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min)
    throw new MetadataDecodeError(kv.key, `${field} must be an integer >= ${min}`);
  return v;
}

function text(kv: EtcdKeyValue, o: Json, field: string): string {
  const v = o[field];
  if (typeof v !== "string") throw new MetadataDecodeError(kv.key, `${field} must be a string`);
  return v;
}

/** JSON of an owner record. */
export function encodeGroupOwner(owner: GroupOwnerRecord): string {
  return JSON.stringify({ gatewayId: owner.gatewayId, address: owner.address });
}

/** Decodes `groups/<group>/owner`. */
export function decodeGroupOwner(kv: EtcdKeyValue): VersionedGroupOwner {
  const o = parse(kv);
  return {
    gatewayId: text(kv, o, "gatewayId"),
    address: text(kv, o, "address"),
    epoch: kv.createRevision,
    lease: kv.lease,
  };
}

/** JSON of an offset record. */
export function encodeOffset(record: OffsetRecord): string {
  const { offset, leaderEpoch, metadata, commitTimestamp, memberId, memberEpoch } = record;
  return JSON.stringify({ offset, leaderEpoch, metadata, commitTimestamp, memberId, memberEpoch });
}

/** Decodes `offsets/<group>/<topic>/<p>`. */
export function decodeOffset(kv: EtcdKeyValue): OffsetRecord {
  const o = parse(kv);
  return {
    offset: integer(kv, o, "offset", 0),
    leaderEpoch: integer(kv, o, "leaderEpoch", -1),
    metadata: text(kv, o, "metadata"),
    commitTimestamp: integer(kv, o, "commitTimestamp", 0),
    memberId: text(kv, o, "memberId"),
    memberEpoch: integer(kv, o, "memberEpoch", -2),
  };
}

/**
 * What the fuzz suite (fuzz.test.ts) generates: every RPC of every service in the loaded
 * package definition, with its protobufjs request and response types, and fast-check
 * arbitraries of requests built from those types alone (so a new RPC or field is fuzzed without
 * editing the test), of raw request bytes, and of mutated record batches.
 *
 * Values are hostile but bounded: int64 extremes as strings, 32-bit extremes, NaN and infinities,
 * unknown enum numbers, empty, odd and enormous strings (at most {@link FUZZ_STRING_BYTES_MAX}),
 * duplicated and long repeated fields (at most {@link FUZZ_REPEATED_LONG}), several members of a
 * oneof at once, and names from a pool of real topics and groups so that requests reach past the
 * first lookup.
 */
import fc from "fast-check";
import protobuf from "protobufjs";
import { packageDefinition, protoFiles, protoRoot } from "../../services/shared/grpc/proto.js";
import {
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BASE_SEQUENCE_OFFSET,
  BASE_TIMESTAMP_OFFSET,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  buildBatch,
  CompressionType,
  CRC_OFFSET,
  computeBatchCrc,
  isCompressionSupported,
  LAST_OFFSET_DELTA_OFFSET,
  LOG_OVERHEAD_BYTES,
  MAGIC_OFFSET,
  MAX_TIMESTAMP_OFFSET,
  PARTITION_LEADER_EPOCH_OFFSET,
  PRODUCER_EPOCH_OFFSET,
  PRODUCER_ID_OFFSET,
  type ProducerRecord,
  RECORD_COUNT_OFFSET,
} from "../../services/shared/record-batch/index.js";
import { writeVarlong } from "../../services/shared/record-batch/varint.js";

/** Largest string or bytes value generated, bytes (1 MiB: big, still far below request limits). */
export const FUZZ_STRING_BYTES_MAX = 1024 * 1024;
/** Length of a "long" repeated field (its elements are small values). */
export const FUZZ_REPEATED_LONG = 1_000;
/** Elements of an ordinary repeated field, at most. */
const FUZZ_REPEATED_MAX = 4;
/** Nesting of messages generated, at most (deeper message fields are left unset). */
const FUZZ_DEPTH_MAX = 4;
/** Raw random request bytes, at most. */
const FUZZ_RAW_BYTES_MAX = 512;

/** One RPC of the package definition. */
export interface FuzzMethod {
  /** Fully-qualified service name, e.g. `samsa.v1.BrokerService`. */
  readonly service: string;
  /** Method name, e.g. `Produce`. */
  readonly method: string;
  /** gRPC path, `/samsa.v1.BrokerService/Produce`. */
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestType: protobuf.Type;
  readonly responseType: protobuf.Type;
}

/** The protos loaded by protobufjs itself, from the same files the services load. */
function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) =>
    target.startsWith(protoRoot) ? target : `${protoRoot}/${target}`;
  root.loadSync([...protoFiles], { keepCase: false });
  root.resolveAll();
  return root;
}

/** Shape of a grpc method definition in the package definition (what is used here). */
interface MethodDefinitionLike {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

/**
 * Every RPC of every `samsa.*` service in the package definition, in a stable order. The gRPC
 * health and reflection services are not ours and are left out.
 */
export function fuzzMethods(): FuzzMethod[] {
  const root = loadRoot();
  const out: FuzzMethod[] = [];
  for (const [name, entry] of Object.entries(packageDefinition).sort(([a], [b]) =>
    a.localeCompare(b),
  )) {
    if (!name.startsWith("samsa.")) continue;
    const methods = Object.values(entry as Record<string, unknown>);
    if (!methods.every((m) => typeof (m as MethodDefinitionLike)?.path === "string")) continue;
    const service = root.lookupService(name);
    for (const m of methods as MethodDefinitionLike[]) {
      const methodName = m.path.slice(m.path.lastIndexOf("/") + 1);
      const method = service.methods[methodName];
      if (!method?.resolvedRequestType || !method.resolvedResponseType)
        throw new Error(`${m.path}: request or response type not resolved`);
      out.push({
        service: name,
        method: methodName,
        path: m.path,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        requestType: method.resolvedRequestType,
        responseType: method.resolvedResponseType,
      });
    }
  }
  return out;
}

/** Names the generated strings draw from, so that requests reach real topics and groups. */
export interface FuzzPool {
  readonly strings: readonly string[];
  /** Valid record batches (produced as `bytes` values, mutated or not). */
  readonly batches: readonly Buffer[];
}

const INT32_EDGES = [0, 1, -1, 2, 3, 2 ** 31 - 1, -(2 ** 31), 1_000, 65_535, 1_000_000];
const UINT32_EDGES = [0, 1, 2, 2 ** 31, 2 ** 32 - 1, 1_000, 65_535, 100_000_000];
const INT64_EDGES = [
  "0",
  "1",
  "-1",
  "-2",
  "9223372036854775807",
  "-9223372036854775808",
  "9007199254740991",
  "9007199254740992",
  "-9007199254740993",
  "4294967296",
  "1700000000000",
];
const UINT64_EDGES = ["0", "1", "18446744073709551615", "9223372036854775808", "9007199254740993"];
const ODD_STRINGS = ["", " ", ".", "..", "\u0000", "a/b", "ü", "\ud800", "-1", "a".repeat(300)];
const ENORMOUS_STRING = "x".repeat(FUZZ_STRING_BYTES_MAX);
const ENORMOUS_BYTES = Buffer.alloc(FUZZ_STRING_BYTES_MAX, 0xab);

/** Options of the value arbitraries: `small` values only (inside long repeated fields). */
interface Shape {
  readonly pool: FuzzPool;
  readonly small: boolean;
  readonly depth: number;
}

function int64Arb(unsigned: boolean): fc.Arbitrary<string> {
  const min = unsigned ? 0n : -(2n ** 63n);
  const max = unsigned ? 2n ** 64n - 1n : 2n ** 63n - 1n;
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...(unsigned ? UINT64_EDGES : INT64_EDGES)) },
    { weight: 3, arbitrary: fc.integer({ min: unsigned ? 0 : -10, max: 1_000 }).map(String) },
    { weight: 1, arbitrary: fc.bigInt({ min, max }).map(String) },
  );
}

function stringArb(shape: Shape): fc.Arbitrary<string> {
  const arbs: fc.WeightedArbitrary<string>[] = [
    { weight: 6, arbitrary: fc.constantFrom(...shape.pool.strings) },
    { weight: 2, arbitrary: fc.constantFrom(...ODD_STRINGS) },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
  ];
  if (!shape.small) arbs.push({ weight: 1, arbitrary: fc.constant(ENORMOUS_STRING) });
  return fc.oneof(...arbs);
}

function bytesArb(shape: Shape): fc.Arbitrary<Buffer> {
  const arbs: fc.WeightedArbitrary<Buffer>[] = [
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
    { weight: 3, arbitrary: fc.constantFrom(...shape.pool.batches) },
    { weight: 3, arbitrary: mutatedBatchArb().map((m) => m.bytes) },
  ];
  if (!shape.small) arbs.push({ weight: 1, arbitrary: fc.constant(ENORMOUS_BYTES) });
  return fc.oneof(...arbs);
}

/** A value of one scalar, enum or message field (not repeated). */
function fieldValueArb(field: protobuf.FieldBase, shape: Shape): fc.Arbitrary<unknown> {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) {
    const known = Object.values(resolved.values);
    return fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...known) },
      { weight: 1, arbitrary: fc.constantFrom(-1, 99, 2 ** 31 - 1, -(2 ** 31)) },
    );
  }
  if (resolved instanceof protobuf.Type) return messageArb(resolved, shape);
  switch (field.type) {
    case "double":
    case "float":
      return fc.oneof(
        fc.double(),
        fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -0, 1e300),
      );
    case "int32":
    case "sint32":
    case "sfixed32":
      return fc.oneof(fc.constantFrom(...INT32_EDGES), fc.integer());
    case "uint32":
    case "fixed32":
      return fc.oneof(fc.constantFrom(...UINT32_EDGES), fc.nat({ max: 2 ** 32 - 1 }));
    case "int64":
    case "sint64":
    case "sfixed64":
      return int64Arb(false);
    case "uint64":
    case "fixed64":
      return int64Arb(true);
    case "bool":
      return fc.boolean();
    case "string":
      return stringArb(shape);
    case "bytes":
      return bytesArb(shape);
    default:
      throw new Error(`field ${field.fullName}: type ${field.type} not generated`);
  }
}

/**
 * A repeated field: a few values, duplicates, or a long run of one small value. Inside a small
 * value (an element of a long run) only short arrays, so that no request grows past a few MiB.
 */
function repeatedArb(field: protobuf.FieldBase, shape: Shape): fc.Arbitrary<unknown[]> {
  const element = fieldValueArb(field, shape);
  const few = fc.array(element, { maxLength: FUZZ_REPEATED_MAX });
  if (shape.small) return few;
  const small = fieldValueArb(field, { ...shape, small: true });
  return fc.oneof(
    { weight: 6, arbitrary: few },
    { weight: 2, arbitrary: element.map((e) => [e, e, e]) },
    { weight: 1, arbitrary: small.map((e) => new Array(FUZZ_REPEATED_LONG).fill(e)) },
  );
}

/** A map field: a few entries with keys from the string pool (or numbers, by key type). */
function mapArb(field: protobuf.MapField, shape: Shape): fc.Arbitrary<Record<string, unknown>> {
  const key =
    field.keyType === "string" ? stringArb({ ...shape, small: true }) : fc.integer().map(String);
  return fc.dictionary(key, fieldValueArb(field, shape), { maxKeys: FUZZ_REPEATED_MAX });
}

/**
 * A plain object of `type` as protobufjs encodes it (camelCase names): any subset of its fields,
 * each with a hostile or pooled value. Deeper than {@link FUZZ_DEPTH_MAX}, an empty message.
 */
export function messageArb(type: protobuf.Type, shape: Shape): fc.Arbitrary<object> {
  if (shape.depth >= FUZZ_DEPTH_MAX) return fc.constant({});
  const inner = { ...shape, depth: shape.depth + 1 };
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of type.fieldsArray) {
    if (field instanceof protobuf.MapField) fields[field.name] = mapArb(field, inner);
    else if (field.repeated) fields[field.name] = repeatedArb(field, inner);
    else fields[field.name] = fieldValueArb(field, inner);
  }
  return fc.record(fields, { requiredKeys: [] });
}

/** A request of `type`, top level. */
export function requestArb(type: protobuf.Type, pool: FuzzPool): fc.Arbitrary<object> {
  return messageArb(type, { pool, small: false, depth: 0 });
}

/** Request bytes that are no valid encoding of anything in particular. */
export function rawBytesArb(): fc.Arbitrary<Buffer> {
  return fc.uint8Array({ maxLength: FUZZ_RAW_BYTES_MAX }).map((a) => Buffer.from(a));
}

/** Valid encodings of `type` cut short or with bytes flipped. */
export function damagedRequestArb(type: protobuf.Type, pool: FuzzPool): fc.Arbitrary<Buffer> {
  return fc
    .tuple(
      requestArb(type, { ...pool, strings: pool.strings }),
      fc.nat(),
      fc.nat(255),
      fc.boolean(),
    )
    .map(([request, pos, byte, truncate]) => {
      const bytes = Buffer.from(type.encode(request as protobuf.Message).finish());
      if (bytes.length === 0) return Buffer.from([byte]);
      const at = pos % bytes.length;
      if (truncate) return bytes.subarray(0, at);
      bytes[at] = byte;
      return bytes;
    });
}

/** Codecs this build supports. */
export const FUZZ_CODECS: readonly CompressionType[] = [
  CompressionType.NONE,
  CompressionType.GZIP,
  CompressionType.LZ4,
  CompressionType.ZSTD,
  CompressionType.SNAPPY,
].filter(isCompressionSupported);

const recordArb: fc.Arbitrary<ProducerRecord> = fc.record({
  key: fc.option(
    fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)),
    { nil: null },
  ),
  value: fc.option(
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    { nil: null },
  ),
  headers: fc.array(
    fc.record({
      key: fc.string({ maxLength: 8 }),
      value: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
    }),
    { maxLength: 2 },
  ),
});

/** Header fields of a batch: offset and width in bytes. */
const HEADER_FIELDS: readonly (readonly [string, number, 1 | 2 | 4 | 8])[] = [
  ["baseOffset", BASE_OFFSET_OFFSET, 8],
  ["batchLength", BATCH_LENGTH_OFFSET, 4],
  ["partitionLeaderEpoch", PARTITION_LEADER_EPOCH_OFFSET, 4],
  ["magic", MAGIC_OFFSET, 1],
  ["crc", CRC_OFFSET, 4],
  ["attributes", ATTRIBUTES_OFFSET, 2],
  ["lastOffsetDelta", LAST_OFFSET_DELTA_OFFSET, 4],
  ["baseTimestamp", BASE_TIMESTAMP_OFFSET, 8],
  ["maxTimestamp", MAX_TIMESTAMP_OFFSET, 8],
  ["producerId", PRODUCER_ID_OFFSET, 8],
  ["producerEpoch", PRODUCER_EPOCH_OFFSET, 2],
  ["baseSequence", BASE_SEQUENCE_OFFSET, 4],
  ["recordCount", RECORD_COUNT_OFFSET, 4],
];
const FIELD_VALUE_EDGES = [0n, 1n, -1n, 2n, 7n, 0x7fn, 0xffn, 0x7fffn, 0x7fffffffn, -(2n ** 31n)];

/** One change to a valid batch. */
type Mutation =
  | { kind: "field"; field: number; value: bigint }
  | { kind: "byte"; pos: number; value: number }
  | { kind: "varint"; pos: number; value: number }
  | { kind: "truncate"; pos: number }
  | { kind: "append"; bytes: Uint8Array }
  | { kind: "duplicate" };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("field" as const),
      field: fc.nat(HEADER_FIELDS.length - 1),
      value: fc.oneof(
        fc.constantFrom(...FIELD_VALUE_EDGES),
        fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n),
      ),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("byte" as const),
      pos: fc.nat(),
      value: fc.nat(255),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("varint" as const),
      pos: fc.nat(),
      value: fc.oneof(
        fc.constantFrom(-1, -64, 0, 1, 127, 2 ** 31 - 1, -(2 ** 31), 2 ** 40),
        fc.integer(),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), pos: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("append" as const),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 80 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "duplicate" as const }) },
);

/** Writes `value` (two's complement, truncated to `width`) big-endian at `at`. */
function writeField(buf: Buffer, at: number, width: number, value: bigint): void {
  const masked = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width; i++)
    buf[at + i] = Number((masked >> BigInt(8 * (width - 1 - i))) & 0xffn);
}

function applyMutation(batch: Buffer, m: Mutation): Buffer {
  switch (m.kind) {
    case "field": {
      const [, at, width] = HEADER_FIELDS[m.field]!;
      writeField(batch, at, width, m.value);
      return batch;
    }
    case "byte":
      batch[m.pos % batch.length] = m.value;
      return batch;
    case "varint": {
      // Into the records region (after the header) when there is one.
      const span = Math.max(1, batch.length - BATCH_HEADER_BYTES);
      const at = Math.min(batch.length - 1, BATCH_HEADER_BYTES + (m.pos % span));
      const encoded = Buffer.alloc(10);
      const n = writeVarlong(encoded, 0, m.value);
      const out = Buffer.concat([
        batch.subarray(0, at),
        encoded.subarray(0, n),
        batch.subarray(at),
      ]);
      return out.subarray(0, Math.max(batch.length, at + n));
    }
    case "truncate":
      return batch.subarray(0, m.pos % batch.length);
    case "append":
      return Buffer.concat([batch, m.bytes]);
    case "duplicate":
      return Buffer.concat([batch, batch]);
  }
}

/** A mutated batch and how it was made (printed with a failure). */
export interface MutatedBatch {
  readonly bytes: Buffer;
  readonly codec: CompressionType;
  readonly records: number;
  readonly mutations: readonly Mutation[];
  readonly crcRecomputed: boolean;
}

/**
 * A valid batch (1-5 records, any supported codec, idempotent or not) changed by 1-3
 * mutations, its CRC recomputed (mostly, so that the record framing is what is tested) or not.
 */
export function mutatedBatchArb(): fc.Arbitrary<MutatedBatch> {
  return fc
    .record({
      records: fc.array(recordArb, { minLength: 1, maxLength: 5 }),
      codec: fc.constantFrom(...FUZZ_CODECS),
      idempotent: fc.boolean(),
      mutations: fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
      crcRecomputed: fc.oneof(
        { weight: 3, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
    })
    .map(({ records, codec, idempotent, mutations, crcRecomputed }) => {
      let bytes = buildBatch(records, {
        compression: codec,
        ...(idempotent ? { producerId: 4242n, producerEpoch: 0, baseSequence: 0 } : {}),
      });
      for (const m of mutations) bytes = applyMutation(Buffer.from(bytes), m);
      if (crcRecomputed && bytes.length >= BATCH_HEADER_BYTES) {
        // Over the region the batch's own length field says, as a validator reads it.
        const end = LOG_OVERHEAD_BYTES + bytes.readInt32BE(BATCH_LENGTH_OFFSET);
        const region = end > CRC_OFFSET + 4 && end <= bytes.length ? end : bytes.length;
        bytes.writeUInt32BE(computeBatchCrc(bytes.subarray(0, region)), CRC_OFFSET);
      }
      return { bytes, codec, records: records.length, mutations, crcRecomputed };
    });
}

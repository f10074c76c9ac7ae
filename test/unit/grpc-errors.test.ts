import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { EnumTypeDefinition } from "@grpc/proto-loader";
import { ERROR_TABLE, ErrorCode, SamsaError } from "../../services/shared/errors.js";
import {
  CONTROLLER_METADATA_KEY,
  ERROR_CODE_METADATA_KEY,
  fromProtoErrorCode,
  fromServiceError,
  protoErrorCodeName,
  toProtoErrorCode,
  toServiceError,
} from "../../services/shared/grpc/errors.js";
import { packageDefinition } from "../../services/shared/grpc/proto.js";

/** Every TS ErrorCode value (numeric enum: skip the reverse-mapping keys). */
const allCodes = Object.values(ErrorCode).filter((v): v is ErrorCode => typeof v === "number");

/** The proto enum as loaded at run time: name → number. */
function protoEnum(): Map<string, number> {
  const def = packageDefinition["samsa.v1.ErrorCode"] as EnumTypeDefinition;
  const values = (def.type as { value: Array<{ name: string; number: number }> }).value;
  return new Map(values.map((v) => [v.name, v.number]));
}

/** A status error as grpc-js gives a client. */
function statusError(code: grpc.status, details: string, md?: Record<string, string>) {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(md ?? {})) metadata.set(k, v);
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata });
}

describe("ErrorCode parity with proto/samsa/v1/errors.proto", () => {
  it("gives every TS code the proto value ERROR_CODE_<NAME> with the same number", () => {
    const proto = protoEnum();
    for (const code of allCodes) {
      const name =
        code === ErrorCode.NONE ? "ERROR_CODE_UNSPECIFIED" : `ERROR_CODE_${ErrorCode[code]}`;
      assert.equal(protoErrorCodeName(code), name);
      assert.equal(proto.get(name), code, `${name} has number ${code} in the proto`);
    }
  });

  it("has no proto value the TS enum lacks", () => {
    assert.equal(protoEnum().size, allCodes.length);
  });

  it("converts between proto values and TS codes", () => {
    for (const code of allCodes) {
      assert.equal(toProtoErrorCode(code), code);
      assert.equal(fromProtoErrorCode(toProtoErrorCode(code)), code);
      assert.equal(fromProtoErrorCode(protoErrorCodeName(code)), code);
    }
    assert.equal(fromProtoErrorCode(undefined), ErrorCode.NONE);
    assert.equal(fromProtoErrorCode(9999), ErrorCode.UNKNOWN, "a newer peer's code");
    assert.equal(fromProtoErrorCode("ERROR_CODE_FROM_THE_FUTURE"), ErrorCode.UNKNOWN);
    assert.equal(fromProtoErrorCode("NOT_LEADER"), ErrorCode.UNKNOWN, "proto names only");
  });
});

describe("toServiceError", () => {
  it("maps every code by the table: status, message, samsa-error-code", () => {
    for (const code of allCodes.filter((c) => c !== ErrorCode.NONE)) {
      const err = toServiceError(new SamsaError(code, `custom ${code}`));
      assert.equal(err.code, ERROR_TABLE[code].grpcStatus, ErrorCode[code]);
      assert.equal(err.details, `custom ${code}`);
      assert.deepEqual(err.metadata.get(ERROR_CODE_METADATA_KEY), [ErrorCode[code]]);
    }
  });

  it("sends NOT_LEADER as FAILED_PRECONDITION with its default message", () => {
    const err = toServiceError(new SamsaError(ErrorCode.NOT_LEADER));
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err.details, ERROR_TABLE[ErrorCode.NOT_LEADER].message);
  });

  it("adds the SamsaError's metadata hints, but never lets them override the code", () => {
    const err = toServiceError(
      new SamsaError(ErrorCode.NOT_CONTROLLER, undefined, {
        metadata: {
          [CONTROLLER_METADATA_KEY]: "10.0.0.7:9093",
          [ERROR_CODE_METADATA_KEY]: "NONE",
          "Bad Key!": "dropped",
        },
      }),
    );
    assert.deepEqual(err.metadata.get(CONTROLLER_METADATA_KEY), ["10.0.0.7:9093"]);
    assert.deepEqual(err.metadata.get(ERROR_CODE_METADATA_KEY), ["NOT_CONTROLLER"]);
    assert.equal(Object.keys(err.metadata.getMap()).length, 2);
  });

  it("turns anything else into INTERNAL / UNKNOWN without leaking message or stack", () => {
    const thrownValues = [
      new TypeError("secret /etc/path"),
      "a string",
      undefined,
      { x: 1 },
      new SamsaError(ErrorCode.NONE, "secret: NONE is not an error"),
      new SamsaError(4242 as ErrorCode, "secret: not a code of the table"),
    ];
    for (const thrown of thrownValues) {
      const err = toServiceError(thrown);
      assert.equal(err.code, grpc.status.INTERNAL);
      assert.deepEqual(err.metadata.get(ERROR_CODE_METADATA_KEY), ["UNKNOWN"]);
      assert.equal(err.details, ERROR_TABLE[ErrorCode.UNKNOWN].message);
      assert.doesNotMatch(JSON.stringify({ ...err, message: err.message }), /secret|TypeError/);
      assert.equal(err.stack, undefined);
    }
  });
});

describe("fromServiceError", () => {
  it("round-trips every code, message, retriable flag and hint", () => {
    for (const code of allCodes.filter((c) => c !== ErrorCode.NONE)) {
      const hints = { [CONTROLLER_METADATA_KEY]: "c:1" };
      const back = fromServiceError(
        toServiceError(new SamsaError(code, `m${code}`, { metadata: hints })),
      );
      assert.equal(back.code, code);
      assert.equal(back.message, `m${code}`);
      assert.equal(back.retriable, ERROR_TABLE[code].retriable);
      assert.deepEqual(back.metadata, hints);
    }
  });

  it("maps statuses without samsa-error-code sensibly", () => {
    const cases: Array<[grpc.status, ErrorCode, boolean]> = [
      [grpc.status.UNAVAILABLE, ErrorCode.LEADER_NOT_AVAILABLE, true],
      [grpc.status.DEADLINE_EXCEEDED, ErrorCode.REQUEST_TIMED_OUT, true],
      [grpc.status.RESOURCE_EXHAUSTED, ErrorCode.MESSAGE_TOO_LARGE, false],
      [grpc.status.INVALID_ARGUMENT, ErrorCode.INVALID_REQUEST, false],
      [grpc.status.UNIMPLEMENTED, ErrorCode.INVALID_REQUEST, false],
      [grpc.status.INTERNAL, ErrorCode.UNKNOWN, false],
      [grpc.status.UNKNOWN, ErrorCode.UNKNOWN, false],
      [grpc.status.CANCELLED, ErrorCode.UNKNOWN, false],
    ];
    for (const [status, code, retriable] of cases) {
      const err = fromServiceError(statusError(status, "from the wire"));
      assert.equal(err.code, code, grpc.status[status]);
      assert.equal(err.retriable, retriable);
      assert.equal(err.message, "from the wire");
      assert.equal(err.metadata, undefined);
    }
  });

  it("keeps the original error as cause and passes SamsaErrors through", () => {
    const original = statusError(grpc.status.UNAVAILABLE, "");
    const err = fromServiceError(original);
    assert.equal(err.cause, original);
    assert.equal(err.message, ERROR_TABLE[ErrorCode.LEADER_NOT_AVAILABLE].message);
    const samsa = new SamsaError(ErrorCode.NOT_LEADER);
    assert.equal(fromServiceError(samsa), samsa);
    assert.equal(fromServiceError(new Error("plain")).code, ErrorCode.UNKNOWN);
  });

  it("maps an unknown code name (a newer server) to UNKNOWN", () => {
    const err = fromServiceError(
      statusError(grpc.status.FAILED_PRECONDITION, "x", { [ERROR_CODE_METADATA_KEY]: "NEW_ONE" }),
    );
    assert.equal(err.code, ErrorCode.UNKNOWN);
  });
});

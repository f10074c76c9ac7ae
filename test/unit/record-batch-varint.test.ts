/** Zigzag varint / varlong fixtures (docs/format.md §5) and their failure modes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import {
  ByteReader,
  varintSize,
  varlongSize,
  writeVarint,
  writeVarlong,
} from "../../services/shared/record-batch/varint.js";

/** value → expected hex, shared by varint and varlong (same encoding inside int32). */
const INT32_FIXTURES: Array<[number, string]> = [
  [0, "00"],
  [-1, "01"],
  [1, "02"],
  [-2, "03"],
  [2, "04"],
  [63, "7e"],
  [-64, "7f"],
  [64, "8001"],
  [-65, "8101"],
  [150, "ac02"],
  [300, "d804"],
  [-300, "d704"],
  [8191, "fe7f"],
  [8192, "808001"],
  [2_147_483_647, "feffffff0f"],
  [-2_147_483_648, "ffffffff0f"],
];

const INT64_FIXTURES: Array<[number, string]> = [
  [2 ** 31, "8080808010"],
  [1_700_000_000_000, "80a0abfef962"],
  [-1_700_000_000_000, "ff9fabfef962"],
  [2 ** 52 - 1, "feffffffffffff0f"],
  [2 ** 52, "8080808080808010"],
  [Number.MAX_SAFE_INTEGER, "feffffffffffff1f"],
  [2 ** 62, "80808080808080808001"],
  [-(2 ** 63), "ffffffffffffffffff01"],
];

function encodeVarint(v: number): string {
  const buf = Buffer.alloc(varintSize(v));
  assert.equal(writeVarint(buf, 0, v), buf.length);
  return buf.toString("hex");
}

function encodeVarlong(v: number): string {
  const buf = Buffer.alloc(varlongSize(v));
  assert.equal(writeVarlong(buf, 0, v), buf.length);
  return buf.toString("hex");
}

function assertCorrupt(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SamsaError);
    assert.equal(err.code, ErrorCode.CORRUPT_MESSAGE);
    assert.match(err.message, message);
    return true;
  });
}

describe("varint (int32)", () => {
  for (const [value, hex] of INT32_FIXTURES) {
    it(`${value} <-> ${hex}`, () => {
      assert.equal(encodeVarint(value), hex);
      const r = new ByteReader(Buffer.from(hex, "hex"));
      assert.equal(r.readVarint(), value);
      assert.equal(r.remaining, 0);
    });
  }

  it("round-trips every int32 (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (v) => {
        const hex = encodeVarint(v);
        assert.equal(new ByteReader(Buffer.from(hex, "hex")).readVarint(), v);
      }),
    );
  });

  it("rejects truncated, overlong and over-32-bit encodings", () => {
    assertCorrupt(() => new ByteReader(Buffer.alloc(0)).readVarint(), /truncated varint/);
    assertCorrupt(() => new ByteReader(Buffer.from("8080", "hex")).readVarint(), /truncated/);
    assertCorrupt(
      () => new ByteReader(Buffer.from("ffffffff10", "hex")).readVarint(),
      /overflows 32 bits/,
    );
    assertCorrupt(
      () => new ByteReader(Buffer.from("808080808000", "hex")).readVarint(),
      /overflows|longer/,
    );
    // The reader's end bound applies even when the buffer goes on.
    assertCorrupt(() => new ByteReader(Buffer.from("8001", "hex"), 0, 1).readVarint(), /truncated/);
  });
});

describe("varlong (int64)", () => {
  for (const [value, hex] of [...INT32_FIXTURES, ...INT64_FIXTURES]) {
    it(`${value} <-> ${hex}`, () => {
      assert.equal(encodeVarlong(value), hex);
      const r = new ByteReader(Buffer.from(hex, "hex"));
      assert.equal(r.readVarlong(), value);
      assert.equal(r.remaining, 0);
    });
  }

  it("round-trips every safe integer (property)", () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (v) => {
        const hex = encodeVarlong(v);
        assert.equal(new ByteReader(Buffer.from(hex, "hex")).readVarlong(), v);
      }),
    );
  });

  it("rejects truncated, overlong and over-64-bit encodings", () => {
    assertCorrupt(() => new ByteReader(Buffer.from("80", "hex")).readVarlong(), /truncated/);
    assertCorrupt(
      () => new ByteReader(Buffer.from("8080808080808080", "hex")).readVarlong(),
      /truncated/,
    );
    assertCorrupt(
      () => new ByteReader(Buffer.from("ffffffffffffffffff02", "hex")).readVarlong(),
      /overflows 64 bits/,
    );
  });
});

describe("varint and varlong at the reader's end bound", () => {
  // The readers take short encodings on a fast path that looks ahead one byte; the result must
  // not depend on whether more bytes follow, and the end bound must hold on every path.
  const placed = (hex: string) => Buffer.from(`ff${hex}8080`, "hex");

  it("reads the same value whether or not bytes follow, and never past the end", () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (v) => {
        const hex = encodeVarint(v);
        const size = hex.length / 2;
        const buf = placed(hex);
        for (const end of [1 + size, buf.length]) {
          const r = new ByteReader(buf, 1, end);
          assert.equal(r.readVarint(), v);
          assert.equal(r.pos, 1 + size);
        }
        assertCorrupt(() => new ByteReader(buf, 1, size).readVarint(), /truncated/);
      }),
    );
  });

  it("reads the same varlong whether or not bytes follow, and never past the end", () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (v) => {
        const hex = encodeVarlong(v);
        const size = hex.length / 2;
        const buf = placed(hex);
        for (const end of [1 + size, buf.length]) {
          const r = new ByteReader(buf, 1, end);
          assert.equal(r.readVarlong(), v);
          assert.equal(r.pos, 1 + size);
        }
        assertCorrupt(() => new ByteReader(buf, 1, size).readVarlong(), /truncated/);
      }),
    );
  });
});

describe("ByteReader bounds", () => {
  it("rejects byte runs past the end and negative lengths", () => {
    const r = new ByteReader(Buffer.from("0102030405", "hex"), 1, 4);
    assert.equal(r.readInt8(), 2);
    assertCorrupt(() => r.readBytes(3, "value"), /value length 3 exceeds the 2 bytes left/);
    assertCorrupt(() => r.readBytes(-5, "value"), /value length -5/);
    assert.equal(r.readBytes(2, "value").toString("hex"), "0304");
    assertCorrupt(() => r.readInt8(), /truncated int8/);
  });
});

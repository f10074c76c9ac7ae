/**
 * Zigzag varints, as used inside Kafka v2 records (the same encoding as protobuf's `sint32` /
 * `sint64`): a signed value `n` is mapped to an unsigned one by zigzag (`0 → 0, -1 → 1, 1 → 2,
 * -2 → 3, …`), then written little-endian in groups of 7 bits, the high bit of each byte set
 * when another byte follows.
 *
 * - A **varint** holds an int32 and takes 1–5 bytes.
 * - A **varlong** holds an int64 and takes 1–10 bytes. It is handled with `number` arithmetic
 *   (exact up to 2^53); the rare longer encodings take a slower `bigint` path.
 *
 * Writers work on a pre-sized buffer and return the position after the value; the reader is a
 * bounded cursor that throws `SamsaError(CORRUPT_MESSAGE)` on truncated or overlong input.
 */
import { ErrorCode, SamsaError } from "../errors.js";

/** Most bytes a varint (int32) takes. */
export const VARINT_BYTES_MAX = 5;
/** Most bytes a varlong (int64) takes. */
export const VARLONG_BYTES_MAX = 10;

/** Largest |value| whose zigzag form is below 2^53. */
const VARLONG_FAST_ABS_MAX = 2 ** 52 - 1;
const SEVEN_BITS = 0x80;
/** The fifth byte of a varint may carry only the top 4 bits of 32. */
const VARINT_LAST_BYTE_MAX = 0x0f;
/** The tenth byte of a varlong may carry only the top bit of 64. */
const VARLONG_LAST_BYTE_MAX = 0x01;
/** Bytes of a varlong that the fast (`number`) reader handles: 7 × 7 = 49 bits. */
const VARLONG_FAST_BYTES = 7;

/** Zigzag-encodes an int32 to its unsigned form (as a non-negative number < 2^32). */
export function zigzag32(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0;
}

/** Decodes an unsigned 32-bit zigzag value back to an int32. */
export function unzigzag32(u: number): number {
  return (u >>> 1) ^ -(u & 1);
}

/** Bytes taken by `value` (an int32) as a varint. */
export function varintSize(value: number): number {
  const u = zigzag32(value);
  if (u < 0x80) return 1;
  if (u < 0x4000) return 2;
  if (u < 0x20_0000) return 3;
  if (u < 0x1000_0000) return 4;
  return 5;
}

/**
 * Writes `value` (an int32) as a zigzag varint at `pos`; returns the position after it.
 * The caller has sized `buf` with {@link varintSize}.
 */
export function writeVarint(buf: Buffer, pos: number, value: number): number {
  let u = zigzag32(value);
  while (u >= SEVEN_BITS) {
    buf[pos++] = (u & 0x7f) | SEVEN_BITS;
    u >>>= 7;
  }
  buf[pos++] = u;
  return pos;
}

function zigzag64Big(value: bigint): bigint {
  return BigInt.asUintN(64, (value << 1n) ^ (value >> 63n));
}

/** Bytes taken by `value` (an integer, |value| < 2^63) as a varlong. */
export function varlongSize(value: number): number {
  let u = Math.abs(value) <= VARLONG_FAST_ABS_MAX ? zigzagNumber(value) : -1;
  if (u < 0) {
    let big = zigzag64Big(BigInt(value));
    let n = 1;
    while (big >= 0x80n) {
      big >>= 7n;
      n++;
    }
    return n;
  }
  let n = 1;
  while (u >= SEVEN_BITS) {
    u = Math.floor(u / SEVEN_BITS);
    n++;
  }
  return n;
}

function zigzagNumber(value: number): number {
  return value >= 0 ? value * 2 : -value * 2 - 1;
}

/**
 * Writes `value` (an integer) as a zigzag varlong at `pos`; returns the position after it.
 * The caller has sized `buf` with {@link varlongSize}.
 */
export function writeVarlong(buf: Buffer, pos: number, value: number): number {
  if (Math.abs(value) > VARLONG_FAST_ABS_MAX) return writeVarlongBig(buf, pos, BigInt(value));
  let u = zigzagNumber(value);
  while (u >= SEVEN_BITS) {
    buf[pos++] = (u % SEVEN_BITS) | SEVEN_BITS;
    u = Math.floor(u / SEVEN_BITS);
  }
  buf[pos++] = u;
  return pos;
}

function writeVarlongBig(buf: Buffer, pos: number, value: bigint): number {
  let u = zigzag64Big(value);
  while (u >= 0x80n) {
    buf[pos++] = Number(u & 0x7fn) | SEVEN_BITS;
    u >>= 7n;
  }
  buf[pos++] = Number(u);
  return pos;
}

function corrupt(message: string): SamsaError {
  return new SamsaError(ErrorCode.CORRUPT_MESSAGE, message);
}

/**
 * A bounded read cursor over `buf[pos, end)`. Every read checks the bound and throws
 * `SamsaError(CORRUPT_MESSAGE)` instead of reading past it.
 */
export class ByteReader {
  /**
   * @param buf The bytes.
   * @param pos Where reading starts.
   * @param end Where reading must stop (exclusive); defaults to `buf.length`.
   */
  constructor(
    readonly buf: Buffer,
    public pos = 0,
    public end = buf.length,
  ) {}

  /** Bytes left before `end`. */
  get remaining(): number {
    return this.end - this.pos;
  }

  /** Reads one signed byte. */
  readInt8(): number {
    if (this.pos >= this.end) throw corrupt("truncated int8");
    const b = this.buf[this.pos++]!;
    return b > 0x7f ? b - 0x100 : b;
  }

  /** Reads a zigzag varint (int32); rejects encodings longer than 5 bytes or over 32 bits. */
  readVarint(): number {
    // Fast paths for the one- and two-byte encodings (|value| < 8192) that record lengths,
    // offset deltas and key/value lengths of ordinary records use: no loop, int32 arithmetic
    // only, small enough for the JIT to inline into the record decoder.
    const { buf, pos, end } = this;
    if (pos < end) {
      const b0 = buf[pos]!;
      if (b0 < SEVEN_BITS) {
        this.pos = pos + 1;
        return unzigzag32(b0);
      }
      if (pos + 1 < end) {
        const b1 = buf[pos + 1]!;
        if (b1 < SEVEN_BITS) {
          this.pos = pos + 2;
          return unzigzag32((b0 & 0x7f) | (b1 << 7));
        }
      }
    }
    return this.readVarintSlow();
  }

  private readVarintSlow(): number {
    const { buf, end } = this;
    let pos = this.pos;
    let u = 0;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (pos >= end) throw corrupt("truncated varint");
      const b = buf[pos++]!;
      if (i === VARINT_BYTES_MAX - 1 && b > VARINT_LAST_BYTE_MAX) {
        throw corrupt("varint overflows 32 bits");
      }
      // Bits 28-31 land in the sign bit of the int32; unzigzag32 shifts them back unsigned.
      u |= (b & 0x7f) << (7 * i);
      if (b < SEVEN_BITS) {
        this.pos = pos;
        return unzigzag32(u);
      }
    }
    throw corrupt("varint longer than 5 bytes");
  }

  /**
   * Reads a zigzag varlong (int64) as a number; exact for |value| < 2^53, rounded beyond.
   * Rejects encodings longer than 10 bytes or over 64 bits.
   */
  readVarlong(): number {
    // Fast path for the one-byte encoding: the timestamp delta of records built in the same
    // millisecond, the common case inside a producer batch.
    const { buf, pos, end } = this;
    if (pos < end) {
      const b0 = buf[pos]!;
      if (b0 < SEVEN_BITS) {
        this.pos = pos + 1;
        return unzigzag32(b0);
      }
    }
    return this.readVarlongMedium();
  }

  private readVarlongMedium(): number {
    const { buf, end } = this;
    let pos = this.pos;
    let u = 0;
    let scale = 1;
    for (let i = 0; i < VARLONG_FAST_BYTES; i++) {
      if (pos >= end) throw corrupt("truncated varlong");
      const b = buf[pos++]!;
      u += (b & 0x7f) * scale;
      if (b < SEVEN_BITS) {
        this.pos = pos;
        // u < 2^49 here, so the zigzag decode is exact in number arithmetic.
        return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
      }
      scale *= SEVEN_BITS;
    }
    return this.readVarlongSlow();
  }

  private readVarlongSlow(): number {
    const { buf, end } = this;
    let pos = this.pos;
    let u = 0n;
    for (let i = 0; i < VARLONG_BYTES_MAX; i++) {
      if (pos >= end) throw corrupt("truncated varlong");
      const b = buf[pos++]!;
      if (i === VARLONG_BYTES_MAX - 1 && b > VARLONG_LAST_BYTE_MAX) {
        throw corrupt("varlong overflows 64 bits");
      }
      u |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (b < SEVEN_BITS) {
        this.pos = pos;
        return Number((u >> 1n) ^ -(u & 1n));
      }
    }
    throw corrupt("varlong longer than 10 bytes");
  }

  /**
   * Reads `length` raw bytes as a view into the underlying buffer (no copy).
   * @param what Names the field in the error message.
   */
  readBytes(length: number, what: string): Buffer {
    if (length < 0 || length > this.end - this.pos) {
      throw corrupt(`${what} length ${length} exceeds the ${this.end - this.pos} bytes left`);
    }
    const start = this.pos;
    this.pos = start + length;
    return this.buf.subarray(start, this.pos);
  }

  /** Reads `length` bytes as UTF-8 text. */
  readUtf8(length: number, what: string): string {
    if (length < 0 || length > this.end - this.pos) {
      throw corrupt(`${what} length ${length} exceeds the ${this.end - this.pos} bytes left`);
    }
    const start = this.pos;
    this.pos = start + length;
    return this.buf.toString("utf8", start, this.pos);
  }
}

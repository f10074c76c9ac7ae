/**
 * The record batch format (Kafka's v2 record batch, magic 2, CRC-32C): layout constants,
 * header validation and stamping, record encoding, batch building and decoding, compression.
 * See docs/format.md for the byte-level specification.
 */
export * from "./batch-builder.js";
export * from "./builder.js";
export * from "./compression.js";
export * from "./header.js";
export * from "./layout.js";
export * from "./records.js";
export * from "./record-walk.js";

/**
 * The per-partition checkpoint file (`partition.checkpoint`): recovery point, log start offset
 * and high watermark, rewritten atomically. Kafka keeps these in three per-directory files; one
 * small file per partition keeps a partition's directory self-contained, so it can be moved or
 * deleted as a unit.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { writeFileAtomic } from "./atomic-file.js";

/** File name of the checkpoint inside a partition directory. */
export const PARTITION_CHECKPOINT_FILE = "partition.checkpoint";
/** Format version written and read. */
export const PARTITION_CHECKPOINT_VERSION = 1;

export interface PartitionCheckpoint {
  /** Everything below this offset is fsynced, indexes included; recovery starts here. */
  recoveryPoint: number;
  logStartOffset: number;
  highWatermark: number;
}

/** Reads the checkpoint; a missing file gives zeros (a new partition or one never flushed). */
export async function readPartitionCheckpoint(dir: string): Promise<PartitionCheckpoint> {
  const path = join(dir, PARTITION_CHECKPOINT_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      return { recoveryPoint: 0, logStartOffset: 0, highWatermark: 0 };
    }
    throw err;
  }
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const num = (k: string) => {
      const n = v[k];
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw new Error(`bad ${k}`);
      return n;
    };
    if (v.version !== PARTITION_CHECKPOINT_VERSION) throw new Error(`version ${String(v.version)}`);
    return {
      recoveryPoint: num("recoveryPoint"),
      logStartOffset: num("logStartOffset"),
      highWatermark: num("highWatermark"),
    };
  } catch (err) {
    throw new SamsaError(
      ErrorCode.KAFKA_STORAGE_ERROR,
      `unreadable checkpoint ${path}: ${(err as Error).message}`,
    );
  }
}

/** Writes the checkpoint atomically and durably. */
export async function writePartitionCheckpoint(dir: string, c: PartitionCheckpoint): Promise<void> {
  const body = JSON.stringify({ version: PARTITION_CHECKPOINT_VERSION, ...c });
  await writeFileAtomic(join(dir, PARTITION_CHECKPOINT_FILE), `${body}\n`);
}

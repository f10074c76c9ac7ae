/**
 * Waiting for the cluster metadata to change, without missing a change: every change (and every
 * re-list of a cache) bumps a version number; a caller notes the version before it acts on the
 * metadata and, when that failed, waits until the version moved past it. A change that happened
 * between the failure and the wait is therefore never slept through.
 */
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";

export class MetadataWatch {
  private current = 0;
  private readonly waiters = new Set<() => void>();
  private readonly unsubscribe: () => void;

  constructor(metadata: ClusterMetadata) {
    this.unsubscribe = metadata.onChange(() => this.bump());
    metadata.onResync(() => this.bump());
  }

  /** The number of changes seen so far. */
  get version(): number {
    return this.current;
  }

  /**
   * Resolves once the version is past `seen`, `timeoutMs` has passed or `signal` aborted
   * (whichever comes first; never rejects). Returns whether the metadata changed.
   */
  changedSince(seen: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.current > seen) return Promise.resolve(true);
    if (timeoutMs <= 0 || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve(this.current > seen);
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Stops following the metadata and releases every waiter. */
  close(): void {
    this.unsubscribe();
    this.bump();
  }

  private bump(): void {
    this.current++;
    for (const done of [...this.waiters]) done();
  }
}

/**
 * Runs an async pass on demand, never two at once: a trigger during a pass makes one more pass
 * after it (however many triggers came), so a burst of changes costs at most two passes. Used by
 * the controller's background drivers (leader balancing, reassignments), which react to every
 * metadata change and re-read what they need on each pass.
 */
export class CoalescingRunner {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  /**
   * @param pass One pass; what it throws goes to `onError` (the next trigger runs again).
   * @param onError Reports a failed pass.
   */
  constructor(
    private readonly pass: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Runs a pass now, or once more after the one in progress. Nothing after {@link stop}. */
  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.onError(err);
      } finally {
        this.running = undefined;
      }
    })();
  }

  /** Refuses further triggers and waits for the pass in progress. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

/**
 * Calling the active controller: the one piece the admin client, the gateway's AdminService
 * proxy and a standby controller's forwarding share. Candidates are tried in order; a
 * NOT_CONTROLLER answer naming the active controller (trailing metadata `samsa-controller`) is
 * followed at once; other retriable failures move on to the next candidate and, after a whole
 * round, back off (exponentially, with jitter) before asking for the candidates again — all
 * within one deadline. Non-retriable errors are thrown at once.
 */
import type * as grpc from "@grpc/grpc-js";
import { ErrorCode, SamsaError } from "../errors.js";
import { backoffMs, type Deadline, sleep } from "../retry.js";
import { parseAddress } from "./addresses.js";
import { type RequestOf, type UnaryMethod, type UnaryResponseOf, unary } from "./client.js";
import type { ConnectionPool } from "./connection-pool.js";
import { CONTROLLER_METADATA_KEY } from "./errors.js";
import type { AdminServiceClient } from "./proto.js";

/** Most NOT_CONTROLLER hints followed in one round over the candidates (guards hint loops). */
export const CONTROLLER_HINT_HOPS_MAX = 3;

/** How one call finds and reaches the active controller. */
export interface ControllerCallOptions {
  /**
   * The controller addresses to try, in order; asked again before every round, so a source
   * that follows etcd (the gateway's mirror) sees a newly elected controller. An empty list
   * means "none known yet": the round counts as failed with NOT_CONTROLLER.
   */
  readonly candidates: () => readonly string[];
  /** The whole operation's deadline, retries included. */
  readonly deadline: Deadline;
  /** Deadline of one attempt, ms (cut to what is left of `deadline`). */
  readonly requestTimeoutMs: number;
  /** Metadata sent with every attempt. */
  readonly metadata?: grpc.Metadata;
  /** False: a single attempt at the first candidate, no hint followed (a standby's forward). Default true. */
  readonly retry?: boolean;
}

/** A controller's answer and the address that gave it. */
export interface ControllerAnswer<R> {
  readonly response: R;
  readonly address: string;
}

/**
 * Calls `method` on the active controller through `pool`.
 * @throws SamsaError the first non-retriable error; or, once the deadline passes (or after the
 *   single attempt when `retry` is false), the last retriable one with the method and timeout
 *   in its message and its code and metadata kept.
 */
export async function callController<M extends UnaryMethod<AdminServiceClient>>(
  pool: ConnectionPool<AdminServiceClient>,
  method: M,
  request: RequestOf<AdminServiceClient, M>,
  options: ControllerCallOptions,
): Promise<ControllerAnswer<UnaryResponseOf<AdminServiceClient, M>>> {
  const { deadline } = options;
  const retry = options.retry ?? true;
  let last = new SamsaError(ErrorCode.NOT_CONTROLLER, "no controller is active");
  let queue = [...options.candidates()];
  let hops = 0;
  let attempt = 0;
  for (;;) {
    const address = queue.shift();
    if (address !== undefined) {
      try {
        const deadlineMs = deadline.requestMs(options.requestTimeoutMs);
        const callOptions = { deadlineMs, metadata: options.metadata };
        const response = await unary(pool.get(address), method, request, callOptions);
        return { response, address };
      } catch (err) {
        if (!(err instanceof SamsaError) || !err.retriable) throw err;
        last = err;
        if (!retry) throw err;
        const hint = controllerHint(err, address);
        if (hint !== undefined && hops < CONTROLLER_HINT_HOPS_MAX && !deadline.expired) {
          hops++;
          queue.unshift(hint);
          continue;
        }
      }
    }
    if (!retry) throw last;
    if (deadline.expired) throw gaveUp(method, last, deadline);
    if (queue.length > 0) continue;
    await sleep(backoffMs(attempt++), undefined, deadline);
    if (deadline.expired) throw gaveUp(method, last, deadline);
    queue = [...options.candidates()];
    hops = 0;
  }
}

/** The address a NOT_CONTROLLER error points to, when valid and not the one just tried. */
export function controllerHint(err: SamsaError, tried: string): string | undefined {
  if (err.code !== ErrorCode.NOT_CONTROLLER) return undefined;
  const hint = err.metadata?.[CONTROLLER_METADATA_KEY];
  if (hint === undefined || hint === "") return undefined;
  try {
    const address = parseAddress(hint);
    return address === tried ? undefined : address;
  } catch {
    return undefined; // A malformed hint is ignored: the other candidates still work.
  }
}

/** The last retriable error of a call that ran out of time, with what was tried (code kept). */
function gaveUp(method: string, err: SamsaError, deadline: Deadline): SamsaError {
  return new SamsaError(
    err.code,
    `${method}: no controller answered within ${deadline.timeoutMs} ms; last error: ${err.message}`,
    { cause: err, metadata: err.metadata === undefined ? undefined : { ...err.metadata } },
  );
}

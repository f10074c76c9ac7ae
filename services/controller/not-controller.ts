/** The NOT_CONTROLLER answer of a standby: names the active controller for the caller to follow. */
import type { ControllerInfo } from "../shared/etcd/keys.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { CONTROLLER_METADATA_KEY } from "../shared/grpc/errors.js";

/** NOT_CONTROLLER with the active controller's address in `samsa-controller` (when known). */
export function notControllerError(leader: ControllerInfo | undefined): SamsaError {
  return new SamsaError(
    ErrorCode.NOT_CONTROLLER,
    leader
      ? `the active controller is ${leader.id} at ${leader.address}`
      : "no controller is active",
    { metadata: leader ? { [CONTROLLER_METADATA_KEY]: leader.address } : {} },
  );
}

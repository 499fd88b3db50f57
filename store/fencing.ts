/**
 * Fencing by lease epoch, the one rule every store and the server apply alike: a write that carries an epoch
 * applies only to the run's current epoch. Writes without one (users cancelling, the CLI) are not fenced.
 */
import { BerthError } from "../wire/errors.js";

/** Whether a write carrying `given` (undefined: not fenced) must be refused for a run at `current`. */
export function isStaleEpoch(given: number | null | undefined, current: number): boolean {
  return given !== undefined && given !== null && given !== current;
}

export function staleLease(flowRunId: string, current: number, given: number): BerthError {
  return new BerthError(
    "BERTH_E_STALE_LEASE",
    `flow run ${flowRunId} is at epoch ${current}, not ${given}: another attempt owns this run, so this write was refused`,
    { details: { expected: current, actual: given } },
  );
}

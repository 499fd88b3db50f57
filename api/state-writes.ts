import { isBerthError, BerthError } from "./errors.js";
import { FINAL_FLOW_RUN_STATES, type FlowRun, type FlowRunStateName } from "./schema.js";
import type { ApiClient } from "./client.js";

export interface StateWriteOutcome {
  /** The run after the write, or as found when the write no longer applied. */
  run: FlowRun;
  applied: boolean;
}

/**
 * A compare-and-swap state write that survives losing a race: on a stale version it re-reads the run and
 * tries again, unless the run has meanwhile reached a final state (then the write no longer applies).
 */
export async function writeFlowRunState(
  client: ApiClient,
  flowRunId: string,
  write: { state: FlowRunStateName; message?: string | undefined },
  knownVersion: number,
  onConflict?: (current: FlowRun) => void,
): Promise<StateWriteOutcome> {
  let version = knownVersion;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const run = await client.setFlowRunState(flowRunId, {
        state: write.state,
        expectedVersion: version,
        ...(write.message === undefined ? {} : { message: write.message }),
      });
      return { run, applied: true };
    } catch (err) {
      if (!isBerthError(err, "BERTH_E_STALE_VERSION")) throw err;
      const current = await client.getFlowRun(flowRunId);
      onConflict?.(current);
      if (FINAL_FLOW_RUN_STATES.includes(current.state)) return { run: current, applied: false };
      version = current.version;
    }
  }
  throw new BerthError("BERTH_E_CONFLICT", `could not record state ${write.state} for flow run ${flowRunId}: too many concurrent writers`);
}

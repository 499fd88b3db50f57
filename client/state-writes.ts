import { whileServerDown } from "./retry.js";
import { isBerthError, BerthError } from "../wire/errors.js";
import { cutText } from "../shared/text.js";
import { FINAL_FLOW_RUN_STATES, MAX_STATE_MESSAGE_LENGTH } from "../wire/constants.js";
import type { FlowRun, FlowRunStateName, LogLine, TaskRun } from "../wire/schema.js";
import type { RunClient } from "./run-client.js";

export interface StateWriteOutcome {
  /** The run after the write, or as found when the write no longer applied. */
  run: FlowRun;
  applied: boolean;
}

export interface StateWriteOptions {
  /** The writer's lease epoch: a write from a superseded attempt is refused (BERTH_E_STALE_LEASE). */
  epoch?: number | undefined;
  /** How long to keep retrying while the server is unreachable (default 0: fail at once). */
  serverDownForMs?: number;
  signal?: AbortSignal | undefined;
  /** Called with the run as found when another writer got there first. */
  onConflict?: (current: FlowRun) => void;
}

/**
 * A compare-and-swap state write that survives losing a race: on a stale version it re-reads the run and
 * tries again, unless the run has meanwhile reached a final state (then the write no longer applies).
 * A stale *epoch* is never retried: it means another attempt owns the run.
 */
export async function writeFlowRunState(
  client: RunClient,
  flowRunId: string,
  write: { state: FlowRunStateName; message?: string | undefined; taskRuns?: TaskRun[] | undefined; logs?: LogLine[] | undefined },
  knownVersion: number,
  options: StateWriteOptions = {},
): Promise<StateWriteOutcome> {
  const retrying = <T>(fn: () => Promise<T>) => whileServerDown(fn, { forMs: options.serverDownForMs ?? 0, signal: options.signal });
  let version = knownVersion;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const run = await retrying(() =>
        client.setFlowRunState(flowRunId, {
          state: write.state,
          expectedVersion: version,
          // A message the server cannot store would cost the state itself: cut it instead.
          ...(write.message === undefined ? {} : { message: cutText(write.message, MAX_STATE_MESSAGE_LENGTH) }),
          ...(options.epoch === undefined ? {} : { epoch: options.epoch }),
          ...(write.taskRuns?.length ? { taskRuns: write.taskRuns } : {}),
          ...(write.logs?.length ? { logs: write.logs } : {}),
        }),
      );
      return { run, applied: true };
    } catch (err) {
      if (!isBerthError(err, "BERTH_E_STALE_VERSION")) throw err;
      const current = await retrying(() => client.getFlowRun(flowRunId));
      options.onConflict?.(current);
      if (FINAL_FLOW_RUN_STATES.includes(current.state)) return { run: current, applied: false };
      version = current.version;
    }
  }
  throw new BerthError("BERTH_E_CONFLICT", `could not record state ${write.state} for flow run ${flowRunId}: too many concurrent writers`);
}

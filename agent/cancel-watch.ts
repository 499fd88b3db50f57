/**
 * The agent's watch for cancels: a long-poll that the server answers the moment one of the agent's runs
 * becomes Cancelling (the same wake-ups as claims, across replicas too), so that a cancel stops the container
 * within a second instead of at the next heartbeat. The heartbeat still lists cancels: if the watch is down
 * (server restarting), they arrive with it, as before.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { describeError } from "../wire/errors.js";
import type { RunTable } from "./run-table.js";

/**
 * Stops the containers of the runs named that this agent holds. `again`: also those already being stopped
 * (the heartbeat's way of retrying a stop that failed, say while the engine was away).
 */
export function cancelRuns(runs: RunTable, flowRunIds: readonly string[], log: Logger, again = false): void {
  for (const flowRunId of flowRunIds) {
    const lifecycle = runs.get(flowRunId);
    if (!lifecycle || (lifecycle.cancelling && !again)) continue;
    log.info({ flowRunId }, "cancelling flow run: stopping its container");
    void lifecycle.cancel().catch((err: unknown) => log.warn({ err, flowRunId }, "could not stop container"));
  }
}

export interface CancelWatchDeps {
  client: ApiClient;
  log: () => Logger;
  agentId: () => string;
  runs: RunTable;
  /** Long-poll length of one watch request. */
  waitMs: number;
  /** Aborted when the agent has stopped: ends the watch at once. */
  signal: AbortSignal;
}

export async function runCancelWatch(deps: CancelWatchDeps): Promise<void> {
  // What the server last said: only a run not among these is news, else the watch would answer at once forever.
  let known: string[] = [];
  for (let failures = 0; !deps.signal.aborted; ) {
    try {
      const { cancelRunIds } = await deps.client.watchCancels(deps.agentId(), { known, waitMs: deps.waitMs }, deps.signal);
      failures = 0;
      known = cancelRunIds;
      cancelRuns(deps.runs, cancelRunIds, deps.log());
    } catch (err) {
      if (deps.signal.aborted) return;
      const delay = backoffMs(failures++);
      // The heartbeat still carries cancels meanwhile, and says more loudly when the server is gone.
      deps.log().debug(`cancel watch failed (${describeError(err)}); again in ${delay} ms`);
      await sleep(delay, deps.signal);
    }
  }
}

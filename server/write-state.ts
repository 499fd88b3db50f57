/** The one way the server records a flow-run state: the store's compare-and-swap, then the wake-ups it implies. */
import type { FlowRun } from "../wire/schema.js";
import type { StateStore, StateWrite } from "../store/port.js";
import { RUNS_TOPIC, cancelsTopic, logsTopic, type Notifier } from "./notifier.js";
import type { ServerMetrics } from "./metrics.js";
import { isFinalState } from "./states.js";

export async function writeState(ctx: { store: StateStore; notifier: Notifier; metrics: ServerMetrics }, id: string, write: StateWrite): Promise<FlowRun> {
  const run = await ctx.store.setFlowRunState(id, write);
  if (isFinalState(run.state)) ctx.metrics.runsFinished.inc({ flow: run.flowName, state: run.state });
  // Claimable again, or a concurrency slot freed by a run that ended: parked claims look at once. Final: log
  // followers stop waiting.
  if (run.state === "Scheduled" || isFinalState(run.state)) ctx.notifier.notify(RUNS_TOPIC);
  if (isFinalState(run.state)) ctx.notifier.notify(logsTopic(id));
  // The agent holding it hears at once, through its cancel watch, rather than at its next heartbeat.
  if (run.state === "Cancelling" && run.agentId !== null) ctx.notifier.notify(cancelsTopic(run.agentId));
  return run;
}

/**
 * Flow runs as users see them: a Scheduled run says why its last attempt was given up, if it was (the reaper
 * rescheduled it, or its agent gave it back), and why no agent is picking it up, if none can.
 */
import type { FlowRun, FlowRunView } from "../wire/schema.js";
import { explainPickup } from "../store/labels.js";
import type { ServerContext } from "./context.js";

export async function viewFlowRuns(ctx: ServerContext, runs: readonly FlowRun[]): Promise<FlowRunView[]> {
  if (!runs.some((run) => run.state === "Scheduled")) return [...runs];
  const online = (await ctx.store.listAgents()).filter((agent) => ctx.presence.isOnline(agent));
  return runs.map((run) => {
    if (run.state !== "Scheduled") return run;
    const parts = [rescheduled(run), explainPickup(run.labels, online)].filter((part) => part !== undefined);
    return parts.length === 0 ? run : { ...run, pickup: parts.join("; ") };
  });
}

export async function viewFlowRun(ctx: ServerContext, run: FlowRun): Promise<FlowRunView> {
  const [view] = await viewFlowRuns(ctx, [run]);
  return view ?? run;
}

/** A Scheduled run with an epoch has been claimed before: its state message says why that attempt ended. */
function rescheduled(run: FlowRun): string | undefined {
  if (run.epoch === 0) return undefined;
  const why = run.stateMessage ? `: ${run.stateMessage}` : "";
  return `rescheduled after attempt ${run.epoch}${why}`;
}

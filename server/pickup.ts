/** Flow runs as users see them: a Scheduled run says why no agent is picking it up, if none can. */
import type { FlowRun, FlowRunView } from "../api/schema.js";
import { explainPickup } from "../store/labels.js";
import type { ServerContext } from "./context.js";

export async function viewFlowRuns(ctx: ServerContext, runs: readonly FlowRun[]): Promise<FlowRunView[]> {
  if (!runs.some((run) => run.state === "Scheduled")) return [...runs];
  const online = (await ctx.store.listAgents()).filter((agent) => ctx.presence.isOnline(agent));
  return runs.map((run) => {
    if (run.state !== "Scheduled") return run;
    const pickup = explainPickup(run.labels, online);
    return pickup === undefined ? run : { ...run, pickup };
  });
}

export async function viewFlowRun(ctx: ServerContext, run: FlowRun): Promise<FlowRunView> {
  const [view] = await viewFlowRuns(ctx, [run]);
  return view ?? run;
}

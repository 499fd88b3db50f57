/**
 * Flow runs as users see them: a Scheduled run says why it is not running yet, in one line of reasons, so
 * that no run is silently unclaimable:
 *
 * - its last attempt was given up (the reaper rescheduled it, or its agent gave it back);
 * - its start is still to come;
 * - no online agent has the labels it needs;
 * - a concurrency limit holds it (a label's, or its flow's maxConcurrentRuns), naming the runs in the slots;
 * - every agent that could take it is unhealthy, draining, or busy with other runs.
 */
import { labelsMatch, explainPickup } from "../store/labels.js";
import { formatMs } from "../shared/text.js";
import type { AgentRecord, ConcurrencyLimit, FlowRun, FlowRunView } from "../wire/schema.js";
import type { ServerContext } from "./context.js";
import { AgentPresence } from "./presence.js";

/** Runs named per limit, before "and N more". */
const NAMED_HOLDERS = 3;

export async function viewFlowRuns(ctx: ServerContext, runs: readonly FlowRun[]): Promise<FlowRunView[]> {
  if (!runs.some((run) => run.state === "Scheduled")) return [...runs];
  const agents = (await ctx.store.listAgents()).map((agent) => ctx.presence.view(agent));
  const online = agents.filter((agent) => AgentPresence.isOnline(agent));
  const limits = new Map((await ctx.store.listConcurrencyLimits()).map((limit) => [limit.label, limit]));
  const flowLimits = new Map<string, Promise<ConcurrencyLimit | undefined>>();
  const flowLimit = (name: string) => {
    let limit = flowLimits.get(name);
    if (!limit) flowLimits.set(name, (limit = flowLimitOf(ctx, name)));
    return limit;
  };
  const busyAgents = new Map<string, Promise<boolean>>();
  const busy = (agentId: string) => {
    let known = busyAgents.get(agentId);
    if (!known) busyAgents.set(agentId, (known = holdsRuns(ctx, agentId)));
    return known;
  };
  const now = ctx.presence.now();
  const views: FlowRunView[] = [];
  for (const run of runs) {
    if (run.state !== "Scheduled") {
      views.push(run);
      continue;
    }
    const startsInMs = Date.parse(run.scheduledStart) - now;
    const parts = [
      rescheduled(run),
      startsInMs > 0 ? `starts at ${run.scheduledStart} (in ${formatMs(startsInMs)})` : undefined,
      explainPickup(run.labels, online) ?? (await held(run, limits, await flowLimit(run.flowName))) ?? (await unavailable(run, online, busy)),
    ].filter((part) => part !== undefined);
    views.push(parts.length === 0 ? run : { ...run, pickup: parts.join("; ") });
  }
  return views;
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

/** The flow's maxConcurrentRuns (its newest version's) as a limit, with the runs holding it. */
async function flowLimitOf(ctx: ServerContext, flowName: string): Promise<ConcurrencyLimit | undefined> {
  const flow = await ctx.store.getFlowByName(flowName);
  if (!flow || flow.maxConcurrentRuns === null) return undefined;
  const holders = await ctx.store.listActiveRuns({ flowName }, flow.maxConcurrentRuns + NAMED_HOLDERS);
  return { label: flowName, max: flow.maxConcurrentRuns, holders: holders.map((run) => run.id) };
}

/** The limits whose every slot is taken, among those that apply to the run. */
async function held(run: FlowRun, limits: ReadonlyMap<string, ConcurrencyLimit>, flowLimit: ConcurrencyLimit | undefined): Promise<string | undefined> {
  const reasons: string[] = [];
  if (flowLimit && flowLimit.holders.length >= flowLimit.max) {
    reasons.push(`held by flow "${run.flowName}"'s maxConcurrentRuns (${slots(flowLimit)})`);
  }
  for (const label of run.labels) {
    const limit = limits.get(label);
    if (limit && limit.holders.length >= limit.max) reasons.push(`held by the concurrency limit of label ${label} (${slots(limit)})`);
  }
  return reasons.length === 0 ? undefined : reasons.join("; ");
}

function slots(limit: ConcurrencyLimit): string {
  const named = limit.holders.slice(0, NAMED_HOLDERS).join(", ");
  const more = limit.holders.length > NAMED_HOLDERS ? ` and ${limit.holders.length - NAMED_HOLDERS} more` : "";
  return `${limit.holders.length} of ${limit.max} slot${limit.max === 1 ? "" : "s"} taken, by ${named}${more}`;
}

/** Whether the agent holds a run now (Submitted or Running by its claim). */
async function holdsRuns(ctx: ServerContext, agentId: string): Promise<boolean> {
  for (const state of ["Submitted", "Running"] as const) {
    if ((await ctx.store.listFlowRuns({ agentId, state, limit: 1 })).length > 0) return true;
  }
  return false;
}

/**
 * Agents that could take the run exist, but none is waiting for work: say why, when it is known. An agent
 * that is online, not waiting and holds no run is between polls (just registered, or about to claim): no reason.
 */
async function unavailable(run: FlowRun, online: readonly AgentRecord[], busy: (agentId: string) => Promise<boolean>): Promise<string | undefined> {
  const able = online.filter((agent) => labelsMatch(run.labels, agent.labels));
  if (able.length === 0 || able.some((agent) => agent.status === "online" && agent.waiting)) return undefined;
  const names = (agents: readonly AgentRecord[]) => agents.map((agent) => agent.name).join(", ");
  const unhealthy = able.filter((agent) => agent.status === "unhealthy");
  const draining = able.filter((agent) => agent.status === "draining");
  const working = able.filter((agent) => agent.status === "online");
  const busyOnes: AgentRecord[] = [];
  for (const agent of working) if (await busy(agent.id)) busyOnes.push(agent);
  // One that can take the run soon makes the others' reasons moot.
  if (busyOnes.length < working.length) return undefined;
  const reasons = [
    ...(unhealthy.length > 0 ? [`unhealthy, its Docker engine not answering: ${names(unhealthy)}`] : []),
    ...(draining.length > 0 ? [`draining, to stop: ${names(draining)}`] : []),
    ...(busyOnes.length > 0 ? [`busy with other runs: ${names(busyOnes)}`] : []),
  ];
  return `every agent that could take it is unavailable (${reasons.join("; ")})`;
}

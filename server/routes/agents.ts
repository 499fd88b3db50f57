import { AgentRecord, AgentHeartbeat, AgentHeartbeatReply, AgentList, AgentRegister, CancelWatch, CancelWatchReply, FINAL_FLOW_RUN_STATES, KeptImages, OrphanQuery, OrphanReply } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { disconnectSignal, longPoll } from "../long-poll.js";
import { cancelsTopic } from "../notifier.js";
import { formatMs } from "../../shared/text.js";
import { IdParams, agentNotFound, withErrors, type ZodApp } from "./shared.js";

/** A run created this recently keeps its flow version's image, even once it is over (it may be run again). */
const RECENT_RUN_MS = 60 * 60_000;

export function registerAgentRoutes(app: ZodApp, ctx: ServerContext): void {
  app.post(
    "/api/agents",
    {
      config: { access: "agent-self" },
      schema: {
        summary: "Register an agent; a known name gets its agent back (200), so a restarted agent keeps its id",
        tags: ["agents"],
        body: AgentRegister.strict(),
        response: withErrors({ 200: AgentRecord, 201: AgentRecord }),
      },
    },
    async (request, reply) => {
      const { agent, created } = await ctx.store.registerAgent(request.body);
      const log = request.log.child({ agentId: agent.id });
      if (created) log.info({ labels: agent.labels }, `agent ${agent.name} registered`);
      else log.info({ labels: agent.labels }, `agent ${agent.name} registered again: it keeps its id`);
      // A restarted agent has no claim parked; one that does is another live process using the same name.
      if (!created && ctx.presence.isWaiting(agent)) {
        log.warn(`agent name ${agent.name} is in use by a running agent: two agents with one name share one identity; give each its own name`);
      }
      const { waitingUntil: _, ...record } = agent;
      return reply.code(created ? 201 : 200).send(record);
    },
  );

  app.get(
    "/api/agents",
    { schema: { summary: "Agents; lost when silent for longer than agentLostAfterMs", tags: ["agents"], response: withErrors({ 200: AgentList }) } },
    async () => ({ agents: (await ctx.store.listAgents()).map((agent) => ctx.presence.view(agent)) }),
  );

  app.post(
    "/api/agents/:id/heartbeat",
    {
      config: { access: "agent-self" },
      schema: {
        summary: "An agent is alive: renews the leases of the runs it lists; answers with runs to cancel and runs it lost",
        tags: ["agents"],
        params: IdParams,
        body: AgentHeartbeat.strict(),
        response: withErrors({ 200: AgentHeartbeatReply }),
      },
    },
    async (request) => {
      const { id } = request.params;
      const { status, runs, health } = request.body;
      const agent = await ctx.store.heartbeatAgent(id, status, health);
      if (!agent) throw agentNotFound(id);
      const renewal = runs.length === 0 ? { lostRunIds: [] } : await ctx.store.renewLeases(id, runs, ctx.options.leaseMs);
      const cancelling = await ctx.store.listFlowRuns({ agentId: id, state: "Cancelling", limit: 1000 });
      const cancelRunIds = cancelling.map((run) => run.id);
      const lostRunIds: string[] = [];
      const heldEpochs = new Map(runs.map((run) => [run.id, run.epoch]));
      for (const runId of renewal.lostRunIds) {
        // Cancelled before its container started (Submitted → Cancelled): this attempt's to stop, not lost to another.
        const run = await ctx.store.getFlowRun(runId);
        if (run?.state === "Cancelled" && run.epoch === heldEpochs.get(runId)) cancelRunIds.push(runId);
        else lostRunIds.push(runId);
      }
      if (lostRunIds.length > 0) request.log.warn({ agentId: id, lostRunIds }, `agent ${agent.name} holds flow runs it has lost: it must stop them`);
      return { cancelRunIds, lostRunIds };
    },
  );

  app.get(
    "/api/agents/:id/kept-images",
    {
      config: { access: "agent-self" },
      schema: {
        summary: "The storage images an agent must keep when its disk runs low: every flow's current image, and those of runs not over or recent",
        tags: ["agents"],
        params: IdParams,
        response: withErrors({ 200: KeptImages }),
      },
    },
    async (request) => {
      const { id } = request.params;
      if (!(await ctx.store.getAgent(id))) throw agentNotFound(id);
      const inUse = new Set(await ctx.store.flowIdsInUse(new Date(ctx.presence.now() - RECENT_RUN_MS)));
      const images = new Set<string>();
      const named = new Set<string>();
      // Newest version first within each name: the first seen of a name is its current version.
      for (const flow of await ctx.store.listFlows()) {
        const current = !named.has(flow.name);
        named.add(flow.name);
        if ((current || inUse.has(flow.id)) && flow.storage.type === "docker") images.add(flow.storage.image);
      }
      return { images: [...images].sort() };
    },
  );

  app.post(
    "/api/agents/:id/orphans",
    {
      config: { access: "agent-self" },
      schema: {
        summary: "Which of the containers other agents left on this agent's engine may be removed: those of runs that are over whose agent is gone for good",
        tags: ["agents"],
        params: IdParams,
        body: OrphanQuery.strict(),
        response: withErrors({ 200: OrphanReply }),
      },
    },
    async (request) => {
      const { id } = request.params;
      if (!(await ctx.store.getAgent(id))) throw agentNotFound(id);
      const now = ctx.presence.now();
      // Only agents and runs this server knows: a container of another berth on the same engine is not ours to remove.
      const gone = new Map<string, string | undefined>();
      const goneFor = async (agentId: string): Promise<string | undefined> => {
        if (!gone.has(agentId)) {
          const agent = agentId === id ? undefined : await ctx.store.getAgent(agentId);
          const quietMs = agent ? now - Date.parse(agent.lastHeartbeatAt) : 0;
          gone.set(agentId, agent && quietMs > ctx.options.agentGoneAfterMs ? `agent ${agent.name} was last heard ${formatMs(quietMs)} ago` : undefined);
        }
        return gone.get(agentId);
      };
      const remove: OrphanReply["remove"] = [];
      for (const { container, agentId, flowRunId } of request.body.containers) {
        const agentGone = await goneFor(agentId);
        if (agentGone === undefined) continue;
        const run = await ctx.store.getFlowRun(flowRunId);
        if (!run || !FINAL_FLOW_RUN_STATES.includes(run.state)) continue;
        remove.push({ container, reason: `${agentGone} and its run ${flowRunId} is ${run.state}` });
      }
      return { remove };
    },
  );

  app.post(
    "/api/agents/:id/cancels",
    {
      config: { access: "agent-self" },
      schema: {
        summary: "An agent's watch for cancels (long-poll): answers as soon as one of its runs is Cancelling that it does not list in known",
        tags: ["agents"],
        params: IdParams,
        body: CancelWatch.strict(),
        response: withErrors({ 200: CancelWatchReply }),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { known, waitMs } = request.body;
      if (!(await ctx.store.getAgent(id))) throw agentNotFound(id);
      const told = new Set(known);
      const cancelling = async () => (await ctx.store.listFlowRuns({ agentId: id, state: "Cancelling", limit: 1000 })).map((run) => run.id);
      const news =
        (await longPoll({
          notifier: ctx.notifier,
          topic: cancelsTopic(id),
          waitMs,
          signals: [disconnectSignal(reply), ctx.closing],
          attempt: async () => {
            const ids = await cancelling();
            return ids.some((runId) => !told.has(runId)) ? ids : undefined;
          },
        })) ?? (await cancelling());
      return { cancelRunIds: news };
    },
  );
}

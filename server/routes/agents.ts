import { Agent, AgentHeartbeat, AgentHeartbeatReply, AgentList, AgentRegister } from "../../api/schema.js";
import type { ServerContext } from "../context.js";
import { IdParams, agentNotFound, withErrors, type ZodApp } from "./shared.js";

export function registerAgentRoutes(app: ZodApp, ctx: ServerContext): void {
  app.post(
    "/api/agents",
    { schema: { summary: "Register an agent", tags: ["agents"], body: AgentRegister.strict(), response: withErrors({ 201: Agent }) } },
    async (request, reply) => {
      const agent = await ctx.store.registerAgent(request.body);
      request.log.info({ agentId: agent.id, labels: agent.labels }, `agent ${agent.name} registered`);
      return reply.code(201).send(agent);
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
      schema: {
        summary: "An agent is alive; answers with its runs that users asked to cancel",
        tags: ["agents"],
        params: IdParams,
        body: AgentHeartbeat.strict(),
        response: withErrors({ 200: AgentHeartbeatReply }),
      },
    },
    async (request) => {
      const { id } = request.params;
      const agent = await ctx.store.heartbeatAgent(id, request.body.status);
      if (!agent) throw agentNotFound(id);
      const cancelling = await ctx.store.listFlowRuns({ agentId: id, state: "Cancelling", limit: 1000 });
      return { cancelRunIds: cancelling.map((run) => run.id) };
    },
  );
}

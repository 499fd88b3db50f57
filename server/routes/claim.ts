import type { FastifyBaseLogger, FastifyRequest } from "fastify";
import type { StoredAgent } from "../../store/port.js";
import { isBerthError } from "../../wire/errors.js";
import { ClaimReply, ClaimRequest, type ClaimedRun, type FlowRun } from "../../wire/schema.js";
import { assertNotRevoked } from "../auth.js";
import type { ServerContext } from "../context.js";
import { disconnectSignal, longPoll } from "../long-poll.js";
import { RUNS_TOPIC } from "../notifier.js";
import { IdParams, agentNotFound, withErrors, type ZodApp } from "./shared.js";

/** A claim's first look checks its token again (it was checked as the request arrived) after this long. */
const REVOCATION_RECHECK_MS = 250;

export function registerClaimRoutes(app: ZodApp, ctx: ServerContext): void {
  app.post(
    "/api/agents/:id/claim",
    {
      config: { access: "agent-self" },
      schema: {
        summary: "Claim Scheduled runs whose labels the agent satisfies, each with a new epoch and a lease; waits up to waitMs for one (long-poll)",
        tags: ["agents"],
        params: IdParams,
        body: ClaimRequest.strict(),
        response: withErrors({ 200: ClaimReply }),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { max, waitMs } = request.body;
      const knownFlows = new Set(request.body.knownFlows);
      // Known after the first look, which reads it with the claim.
      let agent: StoredAgent | undefined;
      const gone = disconnectSignal(reply);
      // Until when this claim is parked, marked on the agent's row so that every replica sees it waiting.
      let waitingUntil: string | undefined;
      let runs: FlowRun[] = [];
      try {
        runs =
          (await longPoll({
            notifier: ctx.notifier,
            topic: RUNS_TOPIC,
            waitMs,
            signals: [gone, ctx.closing],
            attempt: async () => {
              // The token was checked as the request arrived; a claim that waited, or whose body was slow to
              // come, checks it again.
              if (agent || reply.elapsedTime > REVOCATION_RECHECK_MS) await assertNotRevoked(ctx.store, request.principal);
              const end = ctx.metrics.claimDuration.startTimer();
              const look = agent ? { agent, runs: await ctx.store.claimFlowRuns(id, agent.labels, max, ctx.options.leaseMs) } : await firstLook(ctx, request, id, max);
              end({ outcome: look.runs.length > 0 ? "claimed" : "empty" });
              // The labels of the first look are the ones every later look of this claim uses.
              agent ??= { ...(await markPresent(ctx, request.log, look.agent)), labels: look.agent.labels };
              return look.runs.length > 0 ? look.runs : undefined;
            },
            // A run whose start is still to come wakes the claim at that start, not at the next poll.
            dueInMs: async () => {
              // Asked after a look, which has read the agent.
              const next = await ctx.store.nextScheduledStart(agent?.labels ?? []);
              return next === undefined ? undefined : Date.parse(next) - ctx.presence.now();
            },
            beforeWait: async () => {
              if (waitingUntil !== undefined) return;
              waitingUntil = new Date(ctx.presence.now() + waitMs).toISOString();
              ctx.metrics.claimsParked.inc();
              // Best effort, as the in-process mark it replaces could not fail: the claim still waits.
              await ctx.store.markAgentWaiting(id, waitingUntil).catch((err: unknown) => {
                request.log.warn({ agentId: id, err }, "could not mark the agent as waiting; other servers may see it quiet until its next heartbeat");
              });
            },
          })) ?? [];
      } finally {
        // Failing to clear the mark must not lose what was claimed: it runs out by itself at waitingUntil.
        if (waitingUntil !== undefined) {
          ctx.metrics.claimsParked.dec();
          const cleared = ctx.store.clearAgentWaiting(id, waitingUntil).catch((err: unknown) => {
            request.log.warn({ agentId: id, err }, "could not clear the agent's waiting mark; it expires by itself");
          });
          // A woken claim answers without waiting for the write (and its sync): the runs it took are
          // committed already, and the mark is only presence, cleared where it still is this claim's.
          if (runs.length === 0) await cleared;
        }
      }
      if (gone.aborted && runs.length > 0) {
        await release(ctx, runs);
        return { claims: [], startTimeoutMs: ctx.options.startTimeoutMs };
      }
      const claims: ClaimedRun[] = [];
      const claimedAt = ctx.presence.now();
      for (const flowRun of runs) {
        ctx.metrics.claimed(flowRun, claimedAt);
        const runToken = ctx.runTokens.mint(flowRun.id, flowRun.epoch);
        // The agent has this flow version already: a large flow would cost more than the rest of the claim.
        if (knownFlows.has(flowRun.flowId)) claims.push({ flowRun, runToken });
        else {
          const flow = await ctx.store.getFlow(flowRun.flowId);
          if (flow) claims.push({ flowRun, flow, runToken });
        }
        request.log.info({ agentId: id, flowRunId: flowRun.id }, "flow run claimed");
      }
      return { claims, startTimeoutMs: ctx.options.startTimeoutMs };
    },
  );
}

/**
 * A claim's first look: the agent, and what it claimed. An agent token's request uses the agent as its
 * authorization read it, whose labels were checked against the token; any other reads the agent with the claim.
 */
async function firstLook(ctx: ServerContext, request: FastifyRequest, id: string, max: number): Promise<{ agent: StoredAgent; runs: FlowRun[] }> {
  const checked = request.authorizedAgent;
  if (checked) return { agent: checked, runs: await ctx.store.claimFlowRuns(id, checked.labels, max, ctx.options.leaseMs) };
  // An agent token's request whose agent its authorization did not find: nothing to claim for.
  if (request.principal?.role === "agent") throw agentNotFound(id);
  const first = await ctx.store.claimForAgent(id, max, ctx.options.leaseMs);
  if (!first) throw agentNotFound(id);
  return first;
}

/**
 * A claim is proof of life; an agent that had said it stopped is evidently back. Its row is written only when
 * that changes something a reader could see: a status, or a heartbeat older than a quarter of the time after
 * which it counts as lost. Otherwise a claim would cost two commits, the other being its own. Best effort, as
 * the claim it follows has taken its runs already: the agent's next heartbeat says the same.
 */
async function markPresent(ctx: ServerContext, log: FastifyBaseLogger, known: StoredAgent): Promise<StoredAgent> {
  const status = known.status === "unhealthy" ? "unhealthy" : "online";
  const heardMsAgo = ctx.presence.now() - Date.parse(known.lastHeartbeatAt);
  if (known.status === status && heardMsAgo >= 0 && heardMsAgo < ctx.options.agentLostAfterMs / 4) return known;
  try {
    return (await ctx.store.heartbeatAgent(known.id, status)) ?? known;
  } catch (err) {
    log.warn({ agentId: known.id, err }, "could not record the claiming agent as present; its next heartbeat will");
    return known;
  }
}

/** Gives back runs claimed for a client that disconnected before it could receive them. */
async function release(ctx: ServerContext, runs: readonly FlowRun[]): Promise<void> {
  for (const run of runs) {
    try {
      await ctx.store.setFlowRunState(run.id, {
        state: "Scheduled",
        message: "returned: the claiming agent disconnected before receiving it",
        expectedVersion: run.version,
      });
    } catch (err) {
      // Someone else moved it on (a user cancelled it): then it is no longer ours to give back.
      if (!isBerthError(err, "BERTH_E_STALE_VERSION")) throw err;
    }
  }
  ctx.notifier.notify(RUNS_TOPIC);
}

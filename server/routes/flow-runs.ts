import { BerthError } from "../../wire/errors.js";
import { FlowRunCreate, FlowRunCreated, FlowRunList, FlowRunListQuery, FlowRunView, type FlowRecord } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { RUNS_TOPIC } from "../notifier.js";
import { checkParameters } from "../parameters.js";
import { viewFlowRun, viewFlowRuns } from "../pickup.js";
import { IdParams, requireFlowRun, withErrors, type ZodApp } from "./shared.js";

export function registerFlowRunRoutes(app: ZodApp, ctx: ServerContext): void {
  app.post(
    "/api/flow-runs",
    {
      schema: {
        summary: "Create a Scheduled flow run (idempotent with idempotencyKey)",
        tags: ["flow runs"],
        body: FlowRunCreate.strict(),
        response: withErrors({ 200: FlowRunCreated, 201: FlowRunCreated }),
      },
    },
    async (request, reply) => {
      const body = request.body;
      const flow = await resolveFlow(ctx, body);
      checkParameters(flow, body.parameters);
      const scheduledStart = body.scheduledStart === undefined ? undefined : startTime(body.scheduledStart, ctx.presence.now());
      const { flowRun, created } = await ctx.store.createFlowRun(
        {
          flow,
          parameters: body.parameters,
          labels: body.labels ?? flow.labels,
          idempotencyKey: body.idempotencyKey,
          scheduledStart,
        },
        // Parked claims look as soon as the run is committed: on SQLite, while its sync is under way, so that
        // the claim's own commit (acknowledged once both are on disk) and this reply's work do not wait on it.
        (created) => {
          if (created) ctx.notifier.notify(RUNS_TOPIC);
        },
      );
      if (created) {
        ctx.metrics.runsCreated.inc({ flow: flow.name, source: "api" });
        request.log.info({ flowRunId: flowRun.id, flowId: flow.id }, "flow run created");
      }
      return reply.code(created ? 201 : 200).send({ flowRun: await viewFlowRun(ctx, flowRun), created });
    },
  );

  app.get(
    "/api/flow-runs",
    {
      schema: {
        summary: "Flow runs, newest first",
        tags: ["flow runs"],
        querystring: FlowRunListQuery,
        response: withErrors({ 200: FlowRunList }),
      },
    },
    async (request) => ({ flowRuns: await viewFlowRuns(ctx, await ctx.store.listFlowRuns(request.query)) }),
  );

  app.get(
    "/api/flow-runs/:id",
    {
      config: { access: "run-read" },
      schema: {
        summary: "One flow run; a Scheduled one says why no agent picks it up, if none can",
        tags: ["flow runs"],
        params: IdParams,
        response: withErrors({ 200: FlowRunView }),
      },
    },
    async (request) => viewFlowRun(ctx, await requireFlowRun(ctx.store, request.params.id)),
  );
}

async function resolveFlow(ctx: ServerContext, body: FlowRunCreate): Promise<FlowRecord> {
  if (body.flowId !== undefined) {
    const flow = await ctx.store.getFlow(body.flowId);
    if (!flow) throw new BerthError("BERTH_E_FLOW_NOT_FOUND", `flow ${body.flowId} not found: list flows with \`berth flows\``);
    if (body.flowName !== undefined && body.flowName !== flow.name) {
      throw new BerthError("BERTH_E_VALIDATION", `flow ${body.flowId} is named "${flow.name}", not "${body.flowName}": give one of them`);
    }
    return flow;
  }
  const name = body.flowName ?? "";
  const flow = await ctx.store.getFlowByName(name, body.flowVersion);
  if (flow) return flow;
  const which = body.flowVersion === undefined ? `named "${name}"` : `"${name}" version ${body.flowVersion}`;
  throw new BerthError("BERTH_E_FLOW_NOT_FOUND", `no flow ${which} is registered: register it with \`berth register\``);
}

/** How far in the past a start may be (clocks of client and server differ): such a run starts at once. */
const PAST_START_TOLERANCE_MS = 60_000;

function startTime(iso: string, now: number): Date {
  const at = new Date(iso);
  if (at.getTime() < now - PAST_START_TOLERANCE_MS) {
    const message = `scheduledStart ${iso} is in the past (the server's time is ${new Date(now).toISOString()}): give a time to come, or leave it out to start now`;
    throw new BerthError("BERTH_E_VALIDATION", `invalid body for POST /api/flow-runs: ${message}`, {
      details: { issues: [{ in: "body", path: "scheduledStart", message }] },
    });
  }
  return at;
}

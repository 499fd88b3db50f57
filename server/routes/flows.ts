import { validateClockSpec } from "../../flows/schedules.js";
import { BerthError } from "../../wire/errors.js";
import { FlowRecord, FlowCreate, FlowList, FlowRegistered } from "../../wire/schema.js";
import { checkParameters } from "../parameters.js";
import type { ServerContext } from "../context.js";
import { IdParams, requireFlow, withErrors, type ZodApp } from "./shared.js";

export function registerFlowRoutes(app: ZodApp, ctx: ServerContext): void {
  app.post(
    "/api/flows",
    {
      schema: {
        summary: "Register a flow: a new version unless the newest one has the same content hash",
        tags: ["flows"],
        body: FlowCreate.strict(),
        response: withErrors({ 200: FlowRegistered, 201: FlowRegistered }),
      },
    },
    async (request, reply) => {
      checkSchedule(request.body);
      checkTaskGraph(request.body);
      // The store refuses a version naming a build context it does not keep (an agent could not build it).
      const registered = await ctx.store.registerFlow(request.body);
      if (registered.created) {
        request.log.info({ flowId: registered.flow.id, version: registered.flow.version }, "flow registered");
        // The new version's schedule (or its end) takes effect at once.
        await ctx.scheduler.tickOnce();
      }
      return reply.code(registered.created ? 201 : 200).send(registered);
    },
  );

  app.get(
    "/api/flows",
    { schema: { summary: "Every version of every flow, newest version first per name", tags: ["flows"], response: withErrors({ 200: FlowList }) } },
    async () => ({ flows: await ctx.store.listFlows() }),
  );

  app.get(
    "/api/flows/:id",
    { config: { access: "flow-read" }, schema: { summary: "One flow version", tags: ["flows"], params: IdParams, response: withErrors({ 200: FlowRecord }) } },
    async (request) => requireFlow(ctx.store, request.params.id),
  );
}

/** A task's `upstream` may name only the flow's own tasks, and never itself. */
function checkTaskGraph(flow: FlowCreate): void {
  const slugs = new Set(flow.tasks.map((t) => t.slug));
  flow.tasks.forEach((task, i) => {
    for (const upstream of task.upstream ?? []) {
      if (slugs.has(upstream) && upstream !== task.slug) continue;
      const problem = upstream === task.slug ? `task "${task.slug}" waits for itself` : `task "${task.slug}" waits for "${upstream}", which is not a task of this flow`;
      throw new BerthError("BERTH_E_VALIDATION", `invalid body for POST /api/flows: tasks.${i}.upstream: ${problem}`, {
        details: { issues: [{ in: "body", path: `tasks.${i}.upstream`, message: problem }] },
      });
    }
  });
}

/** Each clock must make runs that could run: a valid cron or interval, and parameters the flow takes. */
function checkSchedule(flow: FlowCreate): void {
  flow.schedule.forEach((clock, i) => {
    const problem = validateClockSpec(clock);
    if (problem !== undefined) {
      throw new BerthError("BERTH_E_VALIDATION", `invalid body for POST /api/flows: schedule.${i}: ${problem}`, {
        details: { issues: [{ in: "body", path: `schedule.${i}`, message: problem }] },
      });
    }
    checkParameters(flow, clock.parameters, `schedule clock ${i + 1}`);
  });
}

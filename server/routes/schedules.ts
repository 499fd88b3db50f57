/** Schedules as the scheduler follows them (the newest version's clocks), their slot history, pause and resume. */
import { z } from "zod";
import { clockKey, describeClock, nextSlot } from "../../flows/schedules.js";
import { BerthError } from "../../wire/errors.js";
import { ScheduleList, ScheduleView, type FlowRecord } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { TICKS_KEPT } from "../scheduler.js";
import { withErrors, type ZodApp } from "./shared.js";

const FlowNameParams = z.strictObject({ flowName: z.string().min(1).max(200) });
/** Slots shown per schedule, unless asked for more (up to the history the scheduler keeps). */
const TICKS_SHOWN = 20;
const ScheduleQuery = z.strictObject({
  ticks: z.coerce.number().int().min(0).max(TICKS_KEPT).optional().describe(`newest slots to show (default ${TICKS_SHOWN}, at most ${TICKS_KEPT})`),
});

export function registerScheduleRoutes(app: ZodApp, ctx: ServerContext): void {
  app.get(
    "/api/schedules",
    { schema: { summary: "Every flow's schedule, with its next slots and newest history", tags: ["schedules"], response: withErrors({ 200: ScheduleList }) } },
    async () => {
      const flows = await ctx.store.listScheduledFlows();
      return { schedules: await Promise.all(flows.map((flow) => view(ctx, flow))) };
    },
  );

  app.get(
    "/api/schedules/:flowName",
    {
      schema: {
        summary: "One flow's schedule: its clocks, next slots, and the slots handled (created, missed, paused), newest first",
        tags: ["schedules"],
        params: FlowNameParams,
        querystring: ScheduleQuery,
        response: withErrors({ 200: ScheduleView }),
      },
    },
    async (request) => view(ctx, await scheduledFlow(ctx, request.params.flowName), request.query.ticks),
  );

  for (const action of ["pause", "resume"] as const) {
    app.post(
      `/api/schedules/:flowName/${action}`,
      {
        schema: {
          summary:
            action === "pause"
              ? "Pause a flow's schedule at once: its runs made ahead are dropped, and its slots pass as paused"
              : "Resume a flow's schedule: runs are made again from now on",
          tags: ["schedules"],
          params: FlowNameParams,
          response: withErrors({ 200: ScheduleView }),
        },
      },
      async (request) => {
        const flow = await scheduledFlow(ctx, request.params.flowName);
        const { dropped } = await ctx.store.setSchedulePaused(flow.name, action === "pause");
        request.log.info({ flow: flow.name, dropped: dropped.length }, `schedule ${action === "pause" ? "paused" : "resumed"}`);
        if (action === "resume") await ctx.scheduler.tickOnce();
        return view(ctx, flow);
      },
    );
  }
}

async function scheduledFlow(ctx: ServerContext, name: string): Promise<FlowRecord> {
  const flow = await ctx.store.getFlowByName(name);
  if (!flow) throw new BerthError("BERTH_E_FLOW_NOT_FOUND", `no flow named "${name}" is registered: list flows with \`berth flows\``);
  if (flow.schedule.length === 0) {
    throw new BerthError("BERTH_E_NOT_FOUND", `flow "${name}" (version ${flow.version}) has no schedule: give its Flow a schedule and register it again`);
  }
  return flow;
}

async function view(ctx: ServerContext, flow: FlowRecord, shown = TICKS_SHOWN): Promise<ScheduleView> {
  const [state, ticks] = await Promise.all([ctx.store.getScheduleState(flow.name), ctx.store.listScheduleTicks(flow.name, shown)]);
  const now = new Date(ctx.presence.now());
  return {
    flowName: flow.name,
    flowVersion: flow.version,
    paused: state.paused,
    catchUp: flow.catchUp,
    clocks: flow.schedule.map((spec) => ({
      key: clockKey(spec),
      spec,
      description: describeClock(spec),
      next: state.paused ? null : (nextSlot(spec, now)?.toISOString() ?? null),
    })),
    ticks,
  };
}

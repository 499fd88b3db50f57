import { FlowRunStateHistory, Ok, TaskRunList, TaskRunsUpdate } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { IdParams, recordTaskRuns, requireFlowRun, redactionScope, withErrors, type ZodApp } from "./shared.js";

export function registerTaskRunRoutes(app: ZodApp, ctx: ServerContext): void {
  app.get(
    "/api/flow-runs/:id/states",
    { config: { access: "run-read" }, schema: { summary: "Every state of a flow run, oldest first", tags: ["flow runs"], params: IdParams, response: withErrors({ 200: FlowRunStateHistory }) } },
    async (request) => {
      await requireFlowRun(ctx.store, request.params.id);
      return { states: await ctx.store.listFlowRunStates(request.params.id) };
    },
  );

  app.get(
    "/api/flow-runs/:id/task-runs",
    { config: { access: "run-read" }, schema: { summary: "The latest state of each task of a flow run", tags: ["task runs"], params: IdParams, response: withErrors({ 200: TaskRunList }) } },
    async (request) => {
      await requireFlowRun(ctx.store, request.params.id);
      return { taskRuns: await ctx.store.listTaskRuns(request.params.id) };
    },
  );

  app.post(
    "/api/flow-runs/:id/task-runs",
    {
      config: { access: "run-write" },
      schema: {
        summary: "Record task-run states (insert or replace by task slug), fenced by epoch when given",
        tags: ["task runs"],
        params: IdParams,
        body: TaskRunsUpdate.strict(),
        response: withErrors({ 200: Ok }),
      },
    },
    async (request) => {
      await recordTaskRuns(ctx, request.params.id, request.body.taskRuns, request.body.epoch, await redactionScope(ctx, request, request.params.id));
      return { ok: true as const };
    },
  );
}

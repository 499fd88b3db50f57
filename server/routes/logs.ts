import { LogsAppend, LogsPage, LogsQuery, Ok, type StoredLog } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { disconnectSignal, longPoll } from "../long-poll.js";
import { logsTopic } from "../notifier.js";
import { isFinalState } from "../states.js";
import { IdParams, recordLogs, requireFlowRun, redactionScope, withErrors, type ZodApp } from "./shared.js";

export function registerLogRoutes(app: ZodApp, ctx: ServerContext): void {
  app.get(
    "/api/flow-runs/:id/logs",
    {
      config: { access: "run-read" },
      schema: {
        summary: "Logs after an id, oldest first; with waitMs, waits for the next log or the end of the run",
        tags: ["logs"],
        params: IdParams,
        querystring: LogsQuery,
        response: withErrors({ 200: LogsPage }),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { after, limit, waitMs } = request.query;
      await requireFlowRun(ctx.store, id);
      const logs = await longPoll<StoredLog[]>({
        notifier: ctx.notifier,
        topic: logsTopic(id),
        waitMs,
        signals: [disconnectSignal(reply), ctx.closing],
        attempt: async () => {
          const page = await ctx.store.listLogs(id, after, limit);
          if (page.length > 0) return page;
          // A finished run will log no more: answer now rather than hold a follower for the whole wait.
          const run = await ctx.store.getFlowRun(id);
          return run === undefined || isFinalState(run.state) ? page : undefined;
        },
      });
      const page = logs ?? [];
      return { logs: page, next: page.at(-1)?.id ?? after };
    },
  );

  app.post(
    "/api/flow-runs/:id/logs",
    {
      config: { access: "run-logs" },
      schema: {
        summary: "Append log lines to a flow run, fenced by epoch when given",
        tags: ["logs"],
        params: IdParams,
        body: LogsAppend.strict(),
        response: withErrors({ 200: Ok }),
      },
    },
    async (request) => {
      await recordLogs(ctx, request.params.id, request.body.logs, request.body.epoch, await redactionScope(ctx, request, request.params.id));
      return { ok: true as const };
    },
  );
}

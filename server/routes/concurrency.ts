/** Concurrency limits by label: at most N runs carrying the label Submitted, Running or Cancelling at once. */
import { z } from "zod";
import { BerthError } from "../../wire/errors.js";
import { ConcurrencyLimit, ConcurrencyLimitList, ConcurrencyLimitSet, Label, Ok } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { RUNS_TOPIC } from "../notifier.js";
import { withErrors, type ZodApp } from "./shared.js";

const LabelParams = z.strictObject({ label: Label });

export function registerConcurrencyRoutes(app: ZodApp, ctx: ServerContext): void {
  app.get(
    "/api/concurrency-limits",
    {
      schema: {
        summary: "Every concurrency limit, with the runs holding its slots",
        tags: ["concurrency"],
        response: withErrors({ 200: ConcurrencyLimitList }),
      },
    },
    async () => ({ limits: await ctx.store.listConcurrencyLimits() }),
  );

  app.put(
    "/api/concurrency-limits/:label",
    {
      schema: {
        summary: "Set a label's limit: at most `max` runs carrying it Submitted, Running or Cancelling at once, across every agent",
        tags: ["concurrency"],
        params: LabelParams,
        body: ConcurrencyLimitSet,
        response: withErrors({ 200: ConcurrencyLimit }),
      },
    },
    async (request) => {
      const limit = await ctx.store.setConcurrencyLimit(request.params.label, request.body.max);
      request.log.info({ label: limit.label, max: limit.max }, "concurrency limit set");
      // A raised limit frees slots: parked claims look again.
      ctx.notifier.notify(RUNS_TOPIC);
      return limit;
    },
  );

  app.delete(
    "/api/concurrency-limits/:label",
    {
      schema: {
        summary: "Remove a label's limit",
        tags: ["concurrency"],
        params: LabelParams,
        response: withErrors({ 200: Ok }),
      },
    },
    async (request) => {
      const { label } = request.params;
      if (!(await ctx.store.deleteConcurrencyLimit(label))) {
        throw new BerthError("BERTH_E_NOT_FOUND", `label ${label} has no concurrency limit: list them with \`berth concurrency ls\``);
      }
      request.log.info({ label }, "concurrency limit removed");
      ctx.notifier.notify(RUNS_TOPIC);
      return { ok: true as const };
    },
  );
}

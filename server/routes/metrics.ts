import type { ServerContext } from "../context.js";
import type { ZodApp } from "./shared.js";

export function registerMetricsRoute(app: ZodApp, ctx: ServerContext): void {
  app.get(
    "/metrics",
    {
      // Admins and agents: a scrape reads flow names and labels, which an open port should not give away.
      config: { access: "agents" },
      schema: {
        summary: "Prometheus metrics in the text exposition format (see the README for each metric)",
        tags: ["server"],
        produces: ["text/plain"],
      },
    },
    async (_request, reply) => {
      const text = await ctx.metrics.render();
      return reply.type(ctx.metrics.registry.contentType).send(text);
    },
  );
}

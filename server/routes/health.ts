import { Health } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { withErrors, type ZodApp } from "./shared.js";

export function registerHealthRoutes(app: ZodApp, ctx: ServerContext): void {
  app.get(
    "/health",
    { schema: { summary: "Liveness, version and store", tags: ["server"], response: withErrors({ 200: Health }) } },
    async () => ({ status: "ok" as const, version: ctx.version, store: ctx.store.description }),
  );
}

import { Health } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { withErrors, type ZodApp } from "./shared.js";

export function registerHealthRoutes(app: ZodApp, ctx: ServerContext): void {
  app.get(
    "/health",
    { config: { access: "public" }, schema: { summary: "Liveness, version and store", tags: ["server"], response: withErrors({ 200: Health }) } },
    // The kind of store only: where its file is, or its URL, is not for anyone who can reach the port.
    async () => ({ status: "ok" as const, version: ctx.version, store: ctx.store.description.split(":")[0]! }),
  );
}

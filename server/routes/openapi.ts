import type { ZodApp } from "./shared.js";

export function registerOpenApiRoute(app: ZodApp): void {
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
}

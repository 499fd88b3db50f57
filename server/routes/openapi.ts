import type { ZodApp } from "./shared.js";

export function registerOpenApiRoute(app: ZodApp): void {
  app.get("/openapi.json", { config: { access: "public" }, schema: { hide: true } }, async () => app.swagger());
}

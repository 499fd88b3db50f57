/**
 * The web UI: the page built by `npm run build` (Vite, from ui/) into dist/ui, served at / and /ui/. It is
 * public, as a page must be before anyone has typed a token; everything it shows comes from the API, with
 * the token the user gives it, like the CLI.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import fastifyStatic from "@fastify/static";
import { packageRoot } from "../../shared/package.js";
import type { ZodApp } from "./shared.js";

export const UI_PREFIX = "/ui/";

export async function registerUiRoutes(app: ZodApp, root = path.join(packageRoot(), "dist", "ui")): Promise<void> {
  const built = existsSync(path.join(root, "index.html"));
  if (built) await app.register(fastifyStatic, { root, serve: false });
  const notBuilt = `the web UI is not built (no ${path.join(root, "index.html")}): run npm run build\n`;
  const page = { config: { access: "public" as const }, schema: { hide: true } };

  app.get("/", page, async (_request, reply) => (built ? reply.type("text/html").sendFile("index.html") : reply.code(503).type("text/plain").send(notBuilt)));
  app.get(`${UI_PREFIX}*`, page, async (request, reply) => {
    if (!built) return reply.code(503).type("text/plain").send(notBuilt);
    const file = (request.params as { "*": string })["*"];
    // Hashed assets never change under their name; the page itself is always asked for afresh.
    if (file.startsWith("assets/")) return reply.sendFile(file, { maxAge: 365 * 24 * 3600 * 1000, immutable: true });
    return reply.sendFile(file === "" ? "index.html" : file);
  });
}

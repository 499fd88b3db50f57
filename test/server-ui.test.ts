/** The web UI's files, served by the server itself: public (the page asks for a token), cached by hash. */
import Fastify from "fastify";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { registerUiRoutes } from "../server/routes/ui.js";
import { REPO } from "./support/processes.js";
import { startTestServer } from "./support/server.js";

let s: Awaited<ReturnType<typeof startTestServer>> | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

describe("the web UI's files", () => {
  it("serves the page at / and its hashed assets under /ui/, to anyone, on a server that requires a token", async () => {
    const server = (s = await startTestServer({ config: { apiToken: "berth_admin_secret_for_ui_test" } }));
    const page = await server.app.inject({ method: "GET", url: "/" });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.body).toContain('<div id="app">');
    const [script] = (await readdir(path.join(REPO, "dist", "ui", "assets"))).filter((f) => f.endsWith(".js"));
    expect(page.body).toContain(`/ui/assets/${script}`);
    const asset = await server.app.inject({ method: "GET", url: `/ui/assets/${script}` });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers["content-type"]).toMatch(/javascript/);
    expect(asset.headers["cache-control"]).toContain("immutable");
    expect((await server.app.inject({ method: "GET", url: "/ui/assets/nope.js" })).statusCode).toBe(404);
    expect((await server.app.inject({ method: "GET", url: "/ui/../package.json" })).statusCode).not.toBe(200);
    // The API behind it still wants the token.
    expect((await server.app.inject({ method: "GET", url: "/api/flows" })).statusCode).toBe(401);
  });

  it("says how to build it when it is not built", async () => {
    const app = Fastify();
    await registerUiRoutes(app as never, path.join(REPO, "no-such-ui"));
    const page = await app.inject({ method: "GET", url: "/" });
    expect(page.statusCode).toBe(503);
    expect(page.body).toMatch(/the web UI is not built .*run npm run build/);
    await app.close();
  });
});

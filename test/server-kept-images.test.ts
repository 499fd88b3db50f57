/** GET /api/agents/:id/kept-images: what an agent's image garbage collection must never remove. */
import { afterEach, describe, expect, it } from "vitest";
import { call, expectError } from "./support/api.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;
let s: TestServer | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

describe("kept images", () => {
  it("keeps every flow's current image, and an older version's while its runs are not over or are recent", async () => {
    let clock = Date.parse("2030-01-01T00:00:00.000Z");
    const server = (s = await startTestServer({ now: () => clock, config: { reaperIntervalMs: 0 } }));
    const post = (url: string, payload: object) => call(server.app, { method: "POST", url, payload });
    const name = uniqueName();
    const image = (tag: string) => ({ type: "docker" as const, image: `registry.test/${name}:${tag}`, flows: { [name]: `/opt/berth/flows/${name}.mjs` } });
    const v1 = (await post("/api/flows", flowBody({ name, storage: image("v1") }))).body.flow;
    const other = (await post("/api/flows", flowBody({ storage: { type: "local", directory: "/srv/flows", flows: {} } as never }))).body.flow;
    const run = (await post("/api/flow-runs", { flowId: v1.id })).body.flowRun;
    await post("/api/flows", flowBody({ name, storage: image("v2") }));
    const agent = (await post("/api/agents", { name: uniqueName("agent") })).body;
    const kept = async () => (await call(server.app, { method: "GET", url: `/api/agents/${agent.id}/kept-images` })).body.images as string[];
    // v1 has a run waiting for it; v2 is current. A flow kept in local storage has no image to keep.
    expect(await kept()).toEqual([`registry.test/${name}:v1`, `registry.test/${name}:v2`]);
    expect(other.storage.type).toBe("local");
    await post(`/api/flow-runs/${run.id}/cancel`, {});
    expect(await kept()).toContain(`registry.test/${name}:v1`);
    // Over, and created more than an hour ago: v1's image may go.
    clock += 61 * 60_000;
    expect(await kept()).toEqual([`registry.test/${name}:v2`]);
    await expectError(server.app, { method: "GET", url: "/api/agents/nope/kept-images" }, 404, "BERTH_E_AGENT_NOT_FOUND");
  });
});

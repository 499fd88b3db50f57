/** POST /api/agents/:id/orphans: which containers other agents left on an engine may be removed. */
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

describe("orphaned containers", () => {
  it("may go once their agent is gone for good and their run is over; never another berth's, a live agent's or a run's not over", async () => {
    let clock = Date.parse("2030-01-01T00:00:00.000Z");
    const server = (s = await startTestServer({ now: () => clock, config: { reaperIntervalMs: 0, agentGoneAfterMs: 10 * 60_000 } }));
    const post = (url: string, payload: object) => call(server.app, { method: "POST", url, payload });
    const flow = (await post("/api/flows", flowBody())).body.flow;
    const run = async () => (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun.id as string;
    const over = await run();
    await post(`/api/flow-runs/${over}/cancel`, {});
    const waiting = await run();
    const gone = (await post("/api/agents", { name: uniqueName("gone") })).body;
    const alive = (await post("/api/agents", { name: uniqueName("alive") })).body;
    const me = (await post("/api/agents", { name: uniqueName("me") })).body;
    const ask = async (containers: { container: string; agentId: string; flowRunId: string }[]) =>
      (await post(`/api/agents/${me.id}/orphans`, { containers })).body.remove as { container: string; reason: string }[];
    const all = [
      { container: "c-gone-over", agentId: gone.id, flowRunId: over },
      { container: "c-gone-waiting", agentId: gone.id, flowRunId: waiting },
      { container: "c-alive-over", agentId: alive.id, flowRunId: over },
      { container: "c-mine-over", agentId: me.id, flowRunId: over },
      { container: "c-other-berth", agentId: "agent-of-another-server", flowRunId: over },
      { container: "c-gone-unknown-run", agentId: gone.id, flowRunId: "run-of-another-server" },
    ];
    // Nobody has been quiet for ten minutes yet.
    expect(await ask(all)).toEqual([]);
    clock += 11 * 60_000;
    await post(`/api/agents/${alive.id}/heartbeat`, {});
    expect(await ask(all)).toEqual([{ container: "c-gone-over", reason: expect.stringMatching(new RegExp(`agent ${gone.name} was last heard 11m.* ago and its run ${over} is Cancelled`)) }]);
    expect(await ask([])).toEqual([]);
    await expectError(server.app, { method: "POST", url: "/api/agents/nope/orphans", payload: { containers: [] } }, 404, "BERTH_E_AGENT_NOT_FOUND");
    await expectError(server.app, { method: "POST", url: `/api/agents/${me.id}/orphans`, payload: { containers: [{ container: "x" }] } }, 400, "BERTH_E_VALIDATION");
  });
});

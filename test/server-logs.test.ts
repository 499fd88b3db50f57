/** The server's bounds on logs: a per-run limit with a visible truncation line, and retention by the reaper. */
import { afterEach, describe, expect, it } from "vitest";
import { call } from "./support/api.js";
import { flowBody } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;
let s: TestServer | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

const line = (message: string) => ({ at: new Date().toISOString(), level: "info", message });

describe("log bounds", () => {
  it("keeps a run's logs within server.runLogLimit and says where they were cut", async () => {
    const server = (s = await startTestServer({ config: { reaperIntervalMs: 0, runLogLimitBytes: 1024 } }));
    const post = (url: string, payload: object) => call(server.app, { method: "POST", url, payload });
    const flow = (await post("/api/flows", flowBody())).body.flow;
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    for (let i = 0; i < 5; i++) expect((await post(`/api/flow-runs/${run.id}/logs`, { logs: [line(`${i}`.repeat(300))] })).status).toBe(200);
    const logs = (await call(server.app, { method: "GET", url: `/api/flow-runs/${run.id}/logs` })).body.logs as { message: string; level: string }[];
    expect(logs.map((l) => l.message.slice(0, 3))).toEqual(["000", "111", "222", "log"]);
    expect(logs[3]).toMatchObject({ level: "warn", message: "logs truncated: this run's logs reached the server's limit of 1.0 KiB (server.runLogLimit); later lines were dropped" });
  });

  it("removes the logs of runs that ended longer ago than server.logRetention, and no others", async () => {
    let clock = Date.parse("2030-01-01T00:00:00.000Z");
    const server = (s = await startTestServer({ now: () => clock, config: { reaperIntervalMs: 0, logRetentionMs: 24 * 3600_000 } }));
    const post = (url: string, payload: object) => call(server.app, { method: "POST", url, payload });
    const flow = (await post("/api/flows", flowBody())).body.flow;
    const old = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    await post(`/api/flow-runs/${old.id}/logs`, { logs: [line("old news")] });
    await post(`/api/flow-runs/${old.id}/cancel`, {});
    clock += 12 * 3600_000;
    const recent = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    await post(`/api/flow-runs/${recent.id}/logs`, { logs: [line("fresh")] });
    await post(`/api/flow-runs/${recent.id}/cancel`, {});
    clock += 13 * 3600_000;
    expect((await server.app.reaper.reapOnce(clock)).logsRemoved).toBe(1);
    const logsOf = async (id: string) => (await call(server.app, { method: "GET", url: `/api/flow-runs/${id}/logs` })).body.logs as unknown[];
    expect(await logsOf(old.id)).toEqual([]);
    expect(await logsOf(recent.id)).toHaveLength(1);
    expect((await server.app.reaper.reapOnce(clock)).logsRemoved).toBe(0);
  });
});

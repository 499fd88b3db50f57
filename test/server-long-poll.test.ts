import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RUNS_TOPIC, cancelsTopic, logsTopic } from "../server/notifier.js";
import { call } from "./support/api.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";
import { until } from "./support/wait.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;

let s: TestServer;
let closed = false;
beforeEach(async () => {
  s = await startTestServer();
  closed = false;
});
afterEach(async () => {
  if (!closed) await s.close();
});

const post = (url: string, payload?: object) => call(s.app, { method: "POST", url, ...(payload ? { payload } : {}) });
const get = (url: string) => call(s.app, { method: "GET", url });

async function setup(flowLabels: string[] = [], agentLabels: string[] = []) {
  const flow = (await post("/api/flows", flowBody({ labels: flowLabels }))).body.flow;
  const agent = (await post("/api/agents", { name: uniqueName("agent"), labels: agentLabels })).body;
  return { flow, agent };
}

const parked = (n = 1, topic = RUNS_TOPIC) => until(`${n} parked on ${topic}`, () => s.notifier.waiting(topic) === n, { timeoutMs: 5000 });

describe("claim long-poll", () => {
  it("wakes a parked claim the moment a run is created", async () => {
    const { flow, agent } = await setup();
    const claim = post(`/api/agents/${agent.id}/claim`, { waitMs: 30_000 });
    await parked();
    const createdAt = Date.now();
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const reply = await claim;
    expect(Date.now() - createdAt).toBeLessThan(5_000);
    expect(reply.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([run.id]);
    expect(s.notifier.waiting(RUNS_TOPIC)).toBe(0);
  });

  it("answers with no claims after waitMs", async () => {
    const { agent } = await setup();
    const started = Date.now();
    expect((await post(`/api/agents/${agent.id}/claim`, { waitMs: 150 })).body).toEqual({ claims: [], startTimeoutMs: 60_000 });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(5_000);
    expect(s.notifier.waiting(RUNS_TOPIC)).toBe(0);
  });

  it("keeps waiting through runs it cannot take", async () => {
    const { flow, agent } = await setup([], ["gpu"]);
    const claim = post(`/api/agents/${agent.id}/claim`, { waitMs: 300 });
    await parked();
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    expect((await claim).body).toEqual({ claims: [], startTimeoutMs: 60_000 });
    expect((await get(`/api/flow-runs/${run.id}`)).body.state).toBe("Scheduled");
  });

  it("wakes when a run goes back to Scheduled", async () => {
    const { flow, agent } = await setup();
    const other = (await post("/api/agents", { name: "other" })).body;
    await post("/api/flow-runs", { flowId: flow.id });
    const taken = (await post(`/api/agents/${other.id}/claim`, { waitMs: 0 })).body.claims[0].flowRun;
    const claim = post(`/api/agents/${agent.id}/claim`, { waitMs: 30_000 });
    await parked();
    await post(`/api/flow-runs/${taken.id}/state`, { state: "Scheduled", expectedVersion: taken.version });
    const reply = await claim;
    expect(reply.body.claims[0].flowRun).toMatchObject({ id: taken.id, agentId: agent.id, state: "Submitted" });
  });

  it("hands one run to exactly one of many parked agents", async () => {
    const { flow } = await setup();
    const agents = await Promise.all(Array.from({ length: 5 }, (_, i) => post("/api/agents", { name: `a${i}` })));
    const claims = agents.map((a) => post(`/api/agents/${a.body.id}/claim`, { waitMs: 400 }));
    await parked(5);
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const replies = await Promise.all(claims);
    const got = replies.flatMap((r) => r.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id));
    expect(got).toEqual([run.id]);
  });

  it("lets app.close() finish promptly with claims parked", async () => {
    const { agent } = await setup();
    const claims = [post(`/api/agents/${agent.id}/claim`, { waitMs: 60_000 }), post(`/api/agents/${agent.id}/claim`, { waitMs: 60_000 })];
    await parked(2);
    const started = Date.now();
    closed = true;
    await s.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    for (const reply of await Promise.all(claims)) expect(reply).toEqual({ status: 200, body: { claims: [], startTimeoutMs: 60_000 } });
    expect(s.notifier.waiting(RUNS_TOPIC)).toBe(0);
  });

  it("counts a parked agent as online", async () => {
    const { flow, agent } = await setup([], ["gpu"]);
    const run = (await post("/api/flow-runs", { flowId: flow.id, labels: ["tpu"] })).body.flowRun;
    const claim = post(`/api/agents/${agent.id}/claim`, { waitMs: 300 });
    await parked();
    expect((await get(`/api/flow-runs/${run.id}`)).body.pickup).toContain(`${agent.name} [gpu]`);
    await claim;
  });
});

describe("cancel watch", () => {
  async function runningRun() {
    const { flow, agent } = await setup();
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const claimed = (await post(`/api/agents/${agent.id}/claim`, { waitMs: 0 })).body.claims[0].flowRun;
    await post(`/api/flow-runs/${run.id}/state`, { state: "Running", expectedVersion: claimed.version, epoch: claimed.epoch });
    return { agent, run };
  }

  it("answers a parked watch the moment one of the agent's runs is cancelled, then parks again while told of it", async () => {
    const { agent, run } = await runningRun();
    // Parked for a minute: only the cancel's wake-up answers it before the test's own timeout.
    const watch = post(`/api/agents/${agent.id}/cancels`, { waitMs: 60_000 });
    await parked(1, cancelsTopic(agent.id));
    expect((await post(`/api/flow-runs/${run.id}/cancel`)).body.state).toBe("Cancelling");
    expect((await watch).body).toEqual({ cancelRunIds: [run.id] });
    expect(s.notifier.waiting(cancelsTopic(agent.id))).toBe(0);

    // Known: not news. The watch waits (here its short waitMs) and answers with it still listed.
    const again = post(`/api/agents/${agent.id}/cancels`, { known: [run.id], waitMs: 300 });
    await parked(1, cancelsTopic(agent.id));
    expect((await again).body).toEqual({ cancelRunIds: [run.id] });
  }, 15_000);

  it("is not woken by another agent's cancels, and refuses an unknown agent", async () => {
    const mine = await runningRun();
    const theirs = await runningRun();
    const watch = post(`/api/agents/${mine.agent.id}/cancels`, { waitMs: 400 });
    await parked(1, cancelsTopic(mine.agent.id));
    await post(`/api/flow-runs/${theirs.run.id}/cancel`);
    expect((await watch).body).toEqual({ cancelRunIds: [] });
    expect((await post("/api/agents/nope/cancels", { waitMs: 0 })).status).toBe(404);
  });
});

describe("log long-poll", () => {
  it("wakes a follower when logs arrive", async () => {
    const { flow } = await setup();
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const follow = get(`/api/flow-runs/${run.id}/logs?after=0&waitMs=30000`);
    await parked(1, logsTopic(run.id));
    await post(`/api/flow-runs/${run.id}/logs`, { logs: [{ at: new Date().toISOString(), level: "info", message: "hello" }] });
    const page = (await follow).body;
    expect(page.logs.map((l: { message: string }) => l.message)).toEqual(["hello"]);
    expect(page.next).toBe(page.logs[0].id);
  });

  it("ends the wait when the run finishes, and does not wait for a finished run", async () => {
    const { flow } = await setup();
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const follow = get(`/api/flow-runs/${run.id}/logs?after=7&waitMs=30000`);
    await parked(1, logsTopic(run.id));
    await post(`/api/flow-runs/${run.id}/cancel`);
    expect((await follow).body).toEqual({ logs: [], next: 7 });
    const started = Date.now();
    expect((await get(`/api/flow-runs/${run.id}/logs?waitMs=30000`)).body).toEqual({ logs: [], next: 0 });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("answers an empty page after waitMs", async () => {
    const { flow } = await setup();
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    expect((await get(`/api/flow-runs/${run.id}/logs?after=3&waitMs=100`)).body).toEqual({ logs: [], next: 3 });
    expect(s.notifier.waiting(logsTopic(run.id))).toBe(0);
  });
});

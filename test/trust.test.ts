/**
 * Roles, tokens and secrets through the real server (inject): what each role may do, what it may not, and
 * that every refusal says which role was needed.
 */
import { createHash } from "node:crypto";
import { describe, expect, vi } from "vitest";
import { call, expectError } from "./support/api.js";
import { flowBody } from "./support/fixtures.js";
import { test, type TestServer } from "./support/server.js";

const ADMIN = "admin-secret-token";
const auth = (token: string) => ({ authorization: `Bearer ${token}` });

/** A server that requires tokens, with helpers that call it as one role or another. */
async function secured(startServer: (o?: object) => Promise<TestServer>) {
  let clock = Date.parse("2026-06-01T12:00:00Z");
  const s = await startServer({ config: { apiToken: ADMIN }, now: () => clock });
  const as = (token: string | undefined) => ({
    get: (url: string) => call(s.app, { method: "GET", url, ...(token ? { headers: auth(token) } : {}) }),
    post: (url: string, payload?: object) => call(s.app, { method: "POST", url, ...(payload ? { payload } : {}), ...(token ? { headers: auth(token) } : {}) }),
    put: (url: string, payload: object) => call(s.app, { method: "PUT", url, payload, ...(token ? { headers: auth(token) } : {}) }),
    refused: (method: "GET" | "POST" | "PUT" | "DELETE", url: string, status: number, code: string, payload?: object) =>
      expectError(s.app, { method, url, ...(payload ? { payload } : {}), ...(token ? { headers: auth(token) } : {}) }, status, code),
  });
  const admin = as(ADMIN);
  const agentToken = async (name: string) => {
    const created = await admin.post("/api/tokens", { role: "agent", name });
    expect(created.status).toBe(201);
    return created.body as { id: string; token: string };
  };
  /** A flow with a secret task, a run of it claimed by an agent with its own token: the run's token. */
  const claimedRun = async (agentName: string, labels: string[] = [], tasks = [{ slug: "key", name: "secret:API_KEY", secret: "API_KEY" }]) => {
    const flow = (await admin.post("/api/flows", flowBody({ labels, tasks }))).body.flow;
    const run = (await admin.post("/api/flow-runs", { flowId: flow.id, labels })).body.flowRun;
    const token = await agentToken(agentName);
    const agent = as(token.token);
    const registered = await agent.post("/api/agents", { name: agentName, labels });
    expect(registered.status).toBe(201);
    const claim = await agent.post(`/api/agents/${registered.body.id}/claim`, { waitMs: 0 });
    expect(claim.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([run.id]);
    return { flow, run: claim.body.claims[0].flowRun, runToken: claim.body.claims[0].runToken as string, agent, agentId: registered.body.id as string, token };
  };
  return { s, as, admin, agentToken, claimedRun, tick: (ms: number) => (clock += ms) };
}

describe("tokens and roles", () => {
  test("admin tokens are made once, kept only as a hash, listed without their secret, and revoked at once", async ({ startServer }) => {
    const { s, admin, as } = await secured(startServer);
    await as(undefined).refused("GET", "/api/flows", 401, "BERTH_E_UNAUTHORIZED");
    await as("wrong").refused("GET", "/api/flows", 401, "BERTH_E_UNAUTHORIZED");
    const created = await admin.post("/api/tokens", { role: "admin", name: "ci" });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^berth_admin_[A-Za-z0-9_-]{43}$/);
    const stored = await s.store.findToken(createHash("sha256").update(created.body.token).digest("hex"));
    expect(stored).toMatchObject({ id: created.body.id, role: "admin", name: "ci", revokedAt: null });
    expect(JSON.stringify(await s.store.listTokens())).not.toContain(created.body.token);
    const listed = await admin.get("/api/tokens");
    expect(listed.body.tokens).toEqual([{ id: created.body.id, role: "admin", name: "ci", labels: null, createdAt: expect.any(String), revokedAt: null }]);

    const ci = as(created.body.token);
    expect((await ci.get("/api/flows")).status).toBe(200);
    expect((await ci.post(`/api/tokens/${created.body.id}/revoke`)).body.revokedAt).toEqual(expect.any(String));
    const refused = await ci.refused("GET", "/api/flows", 401, "BERTH_E_UNAUTHORIZED");
    expect(refused.message).toContain(`token ${created.body.id}, revoked at`);
    await admin.refused("POST", "/api/tokens/nope/revoke", 404, "BERTH_E_NOT_FOUND");
    const nameless = await admin.refused("POST", "/api/tokens", 400, "BERTH_E_VALIDATION", { role: "agent" });
    expect(nameless.message).toContain("an agent token is bound to one agent");
    await admin.refused("POST", "/api/tokens", 400, "BERTH_E_VALIDATION", { role: "run", name: "x" });
  });

  test("an agent token acts only as its own agent and writes only the runs that agent holds", async ({ startServer }) => {
    const { admin, as, agentToken, claimedRun } = await secured(startServer);
    const { run, agent, agentId } = await claimedRun("builder");

    // As another agent: refused, naming the role needed and the one it has.
    const other = await agent.refused("POST", "/api/agents", 403, "BERTH_E_FORBIDDEN", { name: "someone-else" });
    expect(other.message).toBe("POST /api/agents as agent someone-else needs admin or agent (as itself); the request has the agent token of builder");
    expect(other.details).toEqual({ needed: ["admin", "agent (as itself)"], role: "agent" });
    const second = await agentToken("second");
    const secondAgent = as(second.token);
    const secondId = (await secondAgent.post("/api/agents", { name: "second" })).body.id;
    await agent.refused("POST", `/api/agents/${secondId}/heartbeat`, 403, "BERTH_E_FORBIDDEN", {});
    await agent.refused("POST", `/api/agents/${secondId}/claim`, 403, "BERTH_E_FORBIDDEN", { waitMs: 0 });
    expect((await agent.post(`/api/agents/${agentId}/heartbeat`, { runs: [{ id: run.id, epoch: run.epoch }] })).status).toBe(200);

    // Its own run: it may write it; the other agent may read it but not write it.
    const submitted = await agent.post(`/api/flow-runs/${run.id}/state`, { state: "Running", expectedVersion: run.version, epoch: run.epoch });
    expect(submitted.status).toBe(200);
    expect((await secondAgent.get(`/api/flow-runs/${run.id}`)).status).toBe(200);
    const notHeld = await secondAgent.refused("POST", `/api/flow-runs/${run.id}/logs`, 403, "BERTH_E_FORBIDDEN", {
      logs: [{ at: new Date().toISOString(), level: "info", message: "forged" }],
    });
    expect(notHeld.message).toContain("agent second does not hold flow run");
    await secondAgent.refused("POST", `/api/flow-runs/${run.id}/state`, 403, "BERTH_E_FORBIDDEN", { state: "Success", expectedVersion: 2 });

    // What only admins do.
    for (const [method, url, payload] of [
      ["POST", "/api/flows", flowBody()],
      ["POST", "/api/flow-runs", { flowId: run.flowId }],
      ["POST", `/api/flow-runs/${run.id}/cancel`, undefined],
      ["GET", "/api/secrets", undefined],
      ["POST", "/api/tokens", { role: "admin" }],
      ["PUT", "/api/concurrency-limits/x", { max: 1 }],
    ] as const) {
      const error = await agent.refused(method, url, 403, "BERTH_E_FORBIDDEN", payload);
      expect(error.details.needed).toEqual(["admin"]);
    }
    expect((await admin.get(`/api/flow-runs/${run.id}`)).body.state).toBe("Running");
  });

  test("an agent token bound to labels registers its agent with those labels only", async ({ startServer }) => {
    const { admin, as } = await secured(startServer);
    const created = await admin.post("/api/tokens", { role: "agent", name: "gpu-1", labels: ["gpu", "team-a"] });
    expect(created.body.labels).toEqual(["gpu", "team-a"]);
    const agent = as(created.body.token);
    const id = (await agent.post("/api/agents", { name: "gpu-1", labels: ["gpu"] })).body.id;
    expect((await agent.post(`/api/agents/${id}/heartbeat`, {})).status).toBe(200);
    expect((await agent.post(`/api/agents/${id}/claim`, { waitMs: 0 })).status).toBe(200);
    // The same name registered more widely under another token: this one may not claim with those labels.
    await admin.post("/api/agents", { name: "gpu-1", labels: ["gpu", "team-b"] });
    const widened = await agent.refused("POST", `/api/agents/${id}/claim`, 403, "BERTH_E_FORBIDDEN", { waitMs: 0 });
    expect(widened.details.refused).toEqual(["team-b"]);
    const wider = await agent.refused("POST", "/api/agents", 403, "BERTH_E_FORBIDDEN", { name: "gpu-1", labels: ["gpu", "team-b"] });
    expect(wider.message).toContain("allows the labels gpu, team-a, not team-b");
    const none = await agent.refused("POST", "/api/agents", 403, "BERTH_E_FORBIDDEN", { name: "gpu-1", labels: [] });
    expect(none.details.refused).toEqual(["(no labels)"]);
    await admin.refused("POST", "/api/tokens", 400, "BERTH_E_VALIDATION", { role: "admin", labels: ["x"] });
    expect((await admin.get("/api/tokens")).body.tokens[0].labels).toEqual(["gpu", "team-a"]);
  });

  test("a revoked agent token stops that agent's claims at once, even a claim already waiting", async ({ startServer }) => {
    const { s, admin, as, agentToken } = await secured(startServer);
    const token = await agentToken("revoked");
    const agent = as(token.token);
    const id = (await agent.post("/api/agents", { name: "revoked" })).body.id;
    const parked = s.app.inject({ method: "POST", url: `/api/agents/${id}/claim`, payload: { waitMs: 5_000 }, headers: auth(token.token) });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await admin.post(`/api/tokens/${token.id}/revoke`);
    const flow = (await admin.post("/api/flows", flowBody())).body.flow;
    const run = (await admin.post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const answer = await parked;
    expect(answer.statusCode).toBe(401);
    await agent.refused("POST", `/api/agents/${id}/claim`, 401, "BERTH_E_UNAUTHORIZED", { waitMs: 0 });
    expect((await admin.get(`/api/flow-runs/${run.id}`)).body.state).toBe("Scheduled");
  });

  test("an agent token's claim for an agent that is not registered is a 404, and claims nothing", async ({ startServer }) => {
    const { admin, as, agentToken } = await secured(startServer);
    const agent = as((await agentToken("ghost")).token);
    const flow = (await admin.post("/api/flows", flowBody())).body.flow;
    const run = (await admin.post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    await agent.refused("POST", "/api/agents/no-such-agent/claim", 404, "BERTH_E_AGENT_NOT_FOUND", { waitMs: 0 });
    expect((await admin.get(`/api/flow-runs/${run.id}`)).body.state).toBe("Scheduled");
  });

  test("an agent token's claim reads its token and its agent in one read, and is authorized against that agent", async ({ startServer }) => {
    const { s, admin, as, agentToken } = await secured(startServer);
    const token = await agentToken("reader");
    const agent = as(token.token);
    const { id } = (await agent.post("/api/agents", { name: "reader", labels: [] })).body as { id: string };
    const run = (await admin.post("/api/flow-runs", { flowId: (await admin.post("/api/flows", flowBody())).body.flow.id })).body.flowRun;
    // (A claim slower than 250 ms reads its token again, to see it unrevoked: findToken is not counted.)
    const reads = { together: vi.spyOn(s.store, "findTokenAndAgent"), agent: vi.spyOn(s.store, "getAgent") };
    const claim = await agent.post(`/api/agents/${id}/claim`, { waitMs: 0 });
    expect(claim.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([run.id]);
    expect(reads.together.mock.calls).toEqual([[createHash("sha256").update(token.token).digest("hex"), id]]);
    expect(reads.agent).not.toHaveBeenCalled();
    // Another agent's id, read with the token, is refused as before.
    const other = (await admin.post("/api/agents", { name: "someone-else", labels: [] })).body as { id: string };
    await agent.refused("POST", `/api/agents/${other.id}/claim`, 403, "BERTH_E_FORBIDDEN", { waitMs: 0 });
  });

  test("a run token reads and writes its own run only, and dies when the run ends", async ({ startServer }) => {
    const { admin, as, claimedRun, tick } = await secured(startServer);
    const mine = await claimedRun("agent-a");
    const theirs = await claimedRun("agent-b");
    const run = as(mine.runToken);
    expect(mine.runToken).toMatch(/^berth_run\./);

    expect((await run.get(`/api/flow-runs/${mine.run.id}`)).body.id).toBe(mine.run.id);
    expect((await run.get(`/api/flows/${mine.flow.id}`)).body.id).toBe(mine.flow.id);
    const running = await run.post(`/api/flow-runs/${mine.run.id}/state`, { state: "Running", expectedVersion: mine.run.version });
    expect(running.body).toMatchObject({ state: "Running", epoch: 1 });
    expect((await run.post(`/api/flow-runs/${mine.run.id}/heartbeat`)).body).toEqual({ state: "Running", epoch: 1 });

    // Everything else: refused with the role it needed.
    const refusals: [string, string, object | undefined][] = [
      ["POST", `/api/flow-runs/${theirs.run.id}/cancel`, undefined],
      ["POST", "/api/flows", flowBody()],
      ["POST", `/api/agents/${mine.agentId}/heartbeat`, {}],
      ["POST", `/api/agents/${mine.agentId}/claim`, { waitMs: 0 }],
      ["POST", `/api/flow-runs/${theirs.run.id}/logs`, { logs: [{ at: new Date().toISOString(), level: "info", message: "forged" }] }],
      ["POST", `/api/flow-runs/${theirs.run.id}/secrets`, { names: ["API_KEY"] }],
      ["GET", `/api/flow-runs/${theirs.run.id}`, undefined],
      ["GET", `/api/flows/${theirs.flow.id}`, undefined],
      ["GET", "/api/flow-runs", undefined],
      ["POST", `/api/flow-runs/${mine.run.id}/cancel`, undefined],
    ];
    for (const [method, url, payload] of refusals) {
      const error = await run.refused(method as "GET" | "POST", url, 403, "BERTH_E_FORBIDDEN", payload);
      expect(error.message).toContain(`the request has the run token of flow run ${mine.run.id} (epoch 1)`);
    }
    // Refused for its role before its body is read: a run cannot make the server take in a large upload.
    const upload = await run.refused("PUT", `/api/build-contexts/${"0".repeat(64)}`, 403, "BERTH_E_FORBIDDEN", { large: "x".repeat(64) });
    expect(upload.details.needed).toEqual(["admin"]);
    // A forged token is no token.
    await as(`${mine.runToken.slice(0, -4)}AAAA`).refused("GET", `/api/flow-runs/${mine.run.id}`, 401, "BERTH_E_UNAUTHORIZED");
    await as(mine.runToken.replace(".1.", ".2.")).refused("GET", `/api/flow-runs/${mine.run.id}`, 401, "BERTH_E_UNAUTHORIZED");

    const done = await run.post(`/api/flow-runs/${mine.run.id}/state`, { state: "Success", expectedVersion: running.body.version });
    expect(done.body.state).toBe("Success");
    // For a minute its last lines and reads still arrive; its state can no longer change, its secrets not be read.
    expect((await run.post(`/api/flow-runs/${mine.run.id}/logs`, { logs: [{ at: new Date().toISOString(), level: "info", message: "bye" }] })).status).toBe(200);
    expect((await run.get(`/api/flow-runs/${mine.run.id}`)).body.state).toBe("Success");
    await run.refused("POST", `/api/flow-runs/${mine.run.id}/state`, 409, "BERTH_E_INVALID_TRANSITION", { state: "Failed", expectedVersion: done.body.version });
    await run.refused("POST", `/api/flow-runs/${mine.run.id}/secrets`, 401, "BERTH_E_UNAUTHORIZED", { names: ["API_KEY"] });
    tick(61_000);
    const dead = await run.refused("GET", `/api/flow-runs/${mine.run.id}`, 401, "BERTH_E_UNAUTHORIZED");
    expect(dead.message).toBe(`the run token of flow run ${mine.run.id} no longer works: the run is Success`);
    await run.refused("POST", `/api/flow-runs/${mine.run.id}/logs`, 401, "BERTH_E_UNAUTHORIZED", { logs: [{ at: new Date().toISOString(), level: "info", message: "late" }] });
    expect((await admin.get(`/api/flow-runs/${theirs.run.id}`)).body.state).toBe("Submitted");
  });

  test("a run token of epoch 1 is refused once the run is claimed again at epoch 2", async ({ startServer }) => {
    const { s, admin, as, agentToken, claimedRun, tick } = await secured(startServer);
    const first = await claimedRun("lost-agent", ["again"]);
    const old = as(first.runToken);
    expect((await old.post(`/api/flow-runs/${first.run.id}/heartbeat`)).status).toBe(200);
    // The agent goes silent: its lease runs out, the reaper gives the run back, another agent claims it.
    await s.app.reaper.reapOnce(tick(10 * 60_000));
    expect((await admin.get(`/api/flow-runs/${first.run.id}`)).body.state).toBe("Scheduled");
    // Given back, before anyone claims it: that attempt is already over.
    const givenBack = await old.refused("POST", `/api/flow-runs/${first.run.id}/secrets`, 409, "BERTH_E_STALE_LEASE", { names: ["API_KEY"] });
    expect(givenBack.message).toContain("was given back to be claimed again");
    // The agent that lost it learns the same when it writes as that attempt.
    await first.agent.refused("POST", `/api/flow-runs/${first.run.id}/state`, 409, "BERTH_E_STALE_LEASE", { state: "Failed", expectedVersion: 99, epoch: 1 });
    const next = as((await agentToken("next-agent")).token);
    const nextId = (await next.post("/api/agents", { name: "next-agent", labels: ["again"] })).body.id;
    const claim = (await next.post(`/api/agents/${nextId}/claim`, { waitMs: 0 })).body.claims[0];
    expect(claim.flowRun).toMatchObject({ id: first.run.id, epoch: 2 });

    const stale = await old.refused("POST", `/api/flow-runs/${first.run.id}/heartbeat`, 409, "BERTH_E_STALE_LEASE");
    expect(stale.message).toContain("is at epoch 2, not 1");
    await old.refused("POST", `/api/flow-runs/${first.run.id}/logs`, 409, "BERTH_E_STALE_LEASE", { logs: [{ at: new Date().toISOString(), level: "info", message: "late" }] });
    await old.refused("GET", `/api/flow-runs/${first.run.id}`, 409, "BERTH_E_STALE_LEASE");
    const fresh = as(claim.runToken);
    expect((await fresh.post(`/api/flow-runs/${first.run.id}/heartbeat`)).body).toEqual({ state: "Submitted", epoch: 2 });
    // A body claiming another epoch than its token's is refused too.
    await fresh.refused("POST", `/api/flow-runs/${first.run.id}/logs`, 409, "BERTH_E_STALE_LEASE", { epoch: 1, logs: [{ at: new Date().toISOString(), level: "info", message: "x" }] });
  });
});

describe("secrets", () => {
  test("are stored sealed, listed by name only, read only by runs of flows that declare them, and redacted from what runs write", async ({ startServer }) => {
    const { s, admin, as, claimedRun } = await secured(startServer);
    const value = `s3cr3t-"v4lue"-Ω`;
    expect((await admin.put("/api/secrets/API_KEY", { value })).status).toBe(201);
    expect((await admin.put("/api/secrets/API_KEY", { value })).status).toBe(200);
    expect((await admin.put("/api/secrets/OTHER", { value: "other-value" })).status).toBe(201);
    const short = await admin.refused("PUT", "/api/secrets/PIN", 400, "BERTH_E_VALIDATION", { value: "123" });
    expect(short.message).toContain("cannot be redacted from logs");
    await admin.refused("PUT", "/api/secrets/bad%20name", 400, "BERTH_E_VALIDATION", { value: "long enough" });
    const sealed = await s.store.getSecrets();
    expect(sealed.map((x) => x.name)).toEqual(["API_KEY", "OTHER"]);
    expect(JSON.stringify(sealed)).not.toContain("s3cr3t");
    expect((await admin.get("/api/secrets")).body.secrets.map((x: { name: string }) => x.name)).toEqual(["API_KEY", "OTHER"]);
    expect(JSON.stringify((await admin.get("/api/secrets")).body)).not.toContain(value);

    const { run, runToken, agent } = await claimedRun("secret-agent");
    const mine = as(runToken);
    expect((await mine.post(`/api/flow-runs/${run.id}/secrets`, { names: ["API_KEY"] })).body).toEqual({ secrets: { API_KEY: value } });
    const undeclared = await mine.refused("POST", `/api/flow-runs/${run.id}/secrets`, 403, "BERTH_E_FORBIDDEN", { names: ["OTHER"] });
    expect(undeclared.message).toContain("reads no secret named OTHER");
    await agent.refused("POST", `/api/flow-runs/${run.id}/secrets`, 403, "BERTH_E_FORBIDDEN", { names: ["API_KEY"] });

    // Whatever a run writes is stored with the values replaced, also inside JSON.
    const at = new Date().toISOString();
    await mine.post(`/api/flow-runs/${run.id}/logs`, { logs: [{ at, level: "info", message: `key=${value} json=${JSON.stringify({ value })}` }] });
    await mine.post(`/api/flow-runs/${run.id}/task-runs`, { taskRuns: [{ taskSlug: "key", taskName: "k", state: "Failed", message: `bad ${value}`, attempt: 1 }] });
    const failed = await mine.post(`/api/flow-runs/${run.id}/state`, { state: "Failed", message: `oops ${value}`, expectedVersion: run.version });
    expect(failed.body.stateMessage).toBe("oops [redacted]");
    // Another flow's secret is not redacted from a run's lines: redaction must not tell a run what it guessed.
    await mine.post(`/api/flow-runs/${run.id}/logs`, { logs: [{ at, level: "info", message: "guess: other-value" }] });
    // An admin's lines lose every secret.
    await admin.post(`/api/flow-runs/${run.id}/logs`, { logs: [{ at, level: "info", message: "admin: other-value" }] });
    const logs = (await admin.get(`/api/flow-runs/${run.id}/logs`)).body.logs;
    expect(logs.map((l: { message: string }) => l.message)).toEqual([`key=[redacted] json={"value":"[redacted]"}`, "guess: other-value", "admin: [redacted]"]);
    expect((await admin.get(`/api/flow-runs/${run.id}/task-runs`)).body.taskRuns[0].message).toBe("bad [redacted]");
    expect(JSON.stringify(s.lines)).not.toContain("s3cr3t");

    expect((await call(s.app, { method: "DELETE", url: "/api/secrets/API_KEY", headers: auth(ADMIN) })).status).toBe(200);
    await admin.refused("DELETE", "/api/secrets/API_KEY", 404, "BERTH_E_NOT_FOUND");
  });

  test("a secret the run's flow declares but nobody set is a clear 404", async ({ startServer }) => {
    const { as, claimedRun } = await secured(startServer);
    const { run, runToken } = await claimedRun("unset-agent");
    const missing = await as(runToken).refused("POST", `/api/flow-runs/${run.id}/secrets`, 404, "BERTH_E_NOT_FOUND", { names: ["API_KEY"] });
    expect(missing.message).toBe("secret API_KEY is not set: set it with `berth secret set API_KEY`");
    // A name that objects inherit is a name like any other.
    const inherited = await claimedRun("inherited-agent", [], [{ slug: "c", name: "c", secret: "constructor" }]);
    await as(inherited.runToken).refused("POST", `/api/flow-runs/${inherited.run.id}/secrets`, 404, "BERTH_E_NOT_FOUND", { names: ["constructor"] });
  });
});

describe("a server without a token (--insecure, or embedded)", () => {
  test("takes a request without a token as an admin's, and still scopes a run token", async ({ server }) => {
    const open = async (method: "GET" | "POST", url: string, payload?: object, token?: string) =>
      call(server.app, { method, url, ...(payload ? { payload } : {}), ...(token ? { headers: auth(token) } : {}) });
    const flow = (await open("POST", "/api/flows", flowBody())).body.flow;
    const run = (await open("POST", "/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const other = (await open("POST", "/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const agentId = (await open("POST", "/api/agents", { name: "open-agent" })).body.id;
    const claim = (await open("POST", `/api/agents/${agentId}/claim`, { waitMs: 0, max: 1 })).body.claims[0];
    expect(claim.runToken).toMatch(/^berth_run\./);
    const refused = await expectError(server.app, { method: "POST", url: `/api/flow-runs/${other.id}/cancel`, headers: auth(claim.runToken) }, 403, "BERTH_E_FORBIDDEN");
    expect(refused.details.role).toBe("run");
    expect(claim.flowRun.id).toBe(run.id);
    expect((await open("GET", `/api/flow-runs/${run.id}`, undefined, claim.runToken)).status).toBe(200);
    await expectError(server.app, { method: "GET", url: `/api/flow-runs/${other.id}`, headers: auth(claim.runToken) }, 403, "BERTH_E_FORBIDDEN");
  });
});

/**
 * Every route of the OpenAPI document, driven with malformed, oversized, wrongly typed and hostile input,
 * with no token, a forged one and each role's (fast-check). Whatever comes in: no 5xx, every error in the one
 * error shape, the server still answering, and every stored flow, run, log, token and secret as it was.
 *
 * BERTH_FUZZ_RUNS sets how many requests (default 3000, which takes seconds); the note of a release reports
 * a longer run.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import { ErrorBodySchema } from "../wire/schema.js";
import { flowBody } from "./support/fixtures.js";
import { test } from "./support/server.js";

const RUNS = Number(process.env.BERTH_FUZZ_RUNS ?? 3000);
const ADMIN = "fuzz-admin-token";

interface Route {
  method: string;
  path: string;
}

describe("the API under hostile input", () => {
  test(`answers ${RUNS} malformed, oversized and hostile requests on every route without a 5xx or a changed record`, async ({ startServer }) => {
    const s = await startServer({ config: { apiToken: ADMIN, bodyLimitBytes: 256 * 1024 } });
    const inject = (method: string, url: string, headers: Record<string, string> = {}, payload?: string | object) =>
      s.app.inject({ method: method as "GET", url, headers: { authorization: `Bearer ${ADMIN}`, ...headers }, ...(payload === undefined ? {} : { payload }) });

    // What is stored before: a flow with a secret task, runs in several states, an agent holding one of them.
    const flow = JSON.parse((await inject("POST", "/api/flows", {}, flowBody({ tasks: [{ slug: "k", name: "k", secret: "API_KEY" }] }))).body).flow;
    await inject("PUT", "/api/secrets/API_KEY", {}, { value: "fuzz-secret-value" });
    const runIds: string[] = [];
    // Only the first is unlabelled, so that the agent claims it below and no fuzzed claim (an agent may claim)
    // can take the others.
    for (let i = 0; i < 3; i++) {
      const labels = i === 0 ? [] : ["no-agent-has-this"];
      runIds.push(JSON.parse((await inject("POST", "/api/flow-runs", {}, { flowId: flow.id, labels })).body).flowRun.id);
    }
    const agentToken = JSON.parse((await inject("POST", "/api/tokens", {}, { role: "agent", name: "fuzz-agent" })).body).token as string;
    const agentId = JSON.parse((await inject("POST", "/api/agents", { authorization: `Bearer ${agentToken}` }, { name: "fuzz-agent" })).body).id as string;
    const claim = JSON.parse((await inject("POST", `/api/agents/${agentId}/claim`, { authorization: `Bearer ${agentToken}` }, { waitMs: 0 })).body).claims[0];
    const runToken = claim.runToken as string;
    await inject("POST", `/api/flow-runs/${runIds[2]}/cancel`);
    await inject("POST", `/api/flow-runs/${claim.flowRun.id}/logs`, {}, { logs: [{ at: new Date().toISOString(), level: "info", message: "before" }] });

    const snapshot = async () => {
      const runs = await s.store.listFlowRuns({ limit: 10_000 });
      return {
        flows: await s.store.listFlows(),
        // A run's own token may heartbeat it (an empty body is a valid heartbeat), and report its phases: that
        // moves only these.
        runs: runs.filter((r) => runIds.includes(r.id)).map(({ lastHeartbeatAt: _h, leaseExpiresAt: _l, phases: _p, ...run }) => run),
        logs: await Promise.all(runIds.map((id) => s.store.listLogs(id, 0, 1000))),
        states: await Promise.all(runIds.map((id) => s.store.listFlowRunStates(id))),
        taskRuns: await Promise.all(runIds.map((id) => s.store.listTaskRuns(id))),
        tokens: await s.store.listTokens(),
        secrets: await s.store.getSecrets(),
      };
    };
    const before = await snapshot();
    const flowsBefore = before.flows.map((f) => f.id);

    const doc = JSON.parse((await inject("GET", "/openapi.json")).body) as { paths: Record<string, Record<string, unknown>> };
    const routes: Route[] = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => ({ method: method.toUpperCase(), path })));
    expect(routes.length).toBeGreaterThanOrEqual(30);

    const hostile = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom("..", "../../etc/passwd", "%00", "%2e%2e%2f", "a".repeat(5000), "💥", "null", "-1", "1e309", "__proto__", "constructor", " "),
      fc.stringMatching(/^[A-Za-z0-9._~-]{1,120}$/),
    );
    // Admins may change anything, so their requests never name a stored record; the other roles' do.
    const realIds = fc.constantFrom(...runIds, flow.id, agentId, "API_KEY", claim.flowRun.id);
    const jsonish = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      fc.dictionary(fc.constantFrom("state", "expectedVersion", "epoch", "logs", "taskRuns", "name", "labels", "value", "names", "max", "waitMs", "runs", "role", "flowId", "parameters", "__proto__"), fc.jsonValue({ maxDepth: 3 })),
      fc.record({ logs: fc.array(fc.record({ at: fc.string(), level: fc.string(), message: fc.string() }), { maxLength: 3 }) }),
    );
    const body = fc.oneof(
      jsonish.map((v) => ({ raw: JSON.stringify(v), type: "application/json" })),
      fc.string({ maxLength: 200 }).map((raw) => ({ raw, type: "application/json" })),
      fc.constantFrom(
        { raw: "{", type: "application/json" },
        { raw: `{"__proto__":{"admin":true}}`, type: "application/json" },
        { raw: `${"[".repeat(5000)}${"]".repeat(5000)}`, type: "application/json" },
        { raw: JSON.stringify({ value: "x".repeat(300 * 1024) }), type: "application/json" },
        { raw: "a=b", type: "application/x-www-form-urlencoded" },
        { raw: "\u0000\u0001binary", type: "application/octet-stream" },
        { raw: "", type: "application/json" },
      ),
      fc.constant(undefined),
    );
    const who = fc.constantFrom("none", "admin", "agent", "run", "forged-run", "garbage", "basic");
    const tokenOf: Record<string, string | undefined> = {
      none: undefined,
      admin: ADMIN,
      agent: agentToken,
      run: runToken,
      "forged-run": `${runToken.slice(0, -6)}AAAAAA`,
      garbage: "x".repeat(3000),
      basic: undefined,
    };

    let requests = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), who, fc.array(fc.oneof(hostile, realIds), { minLength: 3, maxLength: 3 }), body, fc.option(fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 30 }), { maxKeys: 3 })), async (route, role, params, payload, query) => {
        let i = 0;
        const path = route.path.replace(/\{[^}]+\}/g, () => {
          const value = params[i++] ?? "x";
          const id = role === "admin" && [...runIds, flow.id, agentId, "API_KEY"].includes(value) ? `fuzz-${value}` : value;
          return encodeURIComponent(id);
        });
        const search = query ? `?${new URLSearchParams(query).toString()}` : "";
        const headers: Record<string, string> = {};
        const token = tokenOf[role];
        if (token !== undefined) headers.authorization = `Bearer ${token}`;
        if (role === "basic") headers.authorization = "Basic YWRtaW46YWRtaW4=";
        if (payload) headers["content-type"] = payload.type;
        const res = await s.app.inject({ method: route.method as "GET", url: `${path}${search}`, headers, ...(payload ? { payload: payload.raw } : {}) });
        requests++;
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        const what = `${route.method} ${path}${search} as ${role} → ${res.statusCode} ${res.body.slice(0, 300)}`;
        expect(res.statusCode, what).toBeLessThan(500);
        if (res.statusCode >= 400 && route.method !== "HEAD" && res.body !== "") {
          expect(ErrorBodySchema.safeParse(JSON.parse(res.body)).success, what).toBe(true);
        }
      }),
      { numRuns: RUNS, seed: process.env.BERTH_FUZZ_SEED ? Number(process.env.BERTH_FUZZ_SEED) : undefined },
    );

    expect(requests).toBe(RUNS);
    expect((await inject("GET", "/health")).statusCode).toBe(200);
    const after = await snapshot();
    expect(after.flows.filter((f) => flowsBefore.includes(f.id))).toEqual(before.flows);
    expect({ ...after, flows: before.flows }).toEqual(before);
    // Refusals dominate, but every route was reached: some answers were not refusals.
    expect([...statuses.keys()].some((status) => status < 300)).toBe(true);
    console.log(`api fuzz: ${requests} requests, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`);
  }, 600_000);
});

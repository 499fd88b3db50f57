import pino from "pino";
import { describe, expect } from "vitest";
import { buildServer } from "../server/app.js";
import { openSqliteStore } from "../store/sqlite.js";
import type { StateStore } from "../store/port.js";
import { call, expectError } from "./support/api.js";
import { flowBody, flowInput } from "./support/fixtures.js";
import { test as it, testServerOptions } from "./support/server.js";

describe("bad input gets a 4xx with the error shape, and changes nothing", () => {
  it("rejects malformed JSON, wrong content types, empty and poisoned bodies", async ({ server }) => {
    const { app, store } = server;
    const json = { "content-type": "application/json" };
    const cases: [unknown, Record<string, string>, number, string][] = [
      ["{not json", json, 400, "BERTH_E_BAD_REQUEST"],
      ["", json, 400, "BERTH_E_BAD_REQUEST"],
      ['{"__proto__": {"admin": true}, "name": "x"}', json, 400, "BERTH_E_BAD_REQUEST"],
      ["<flow/>", { "content-type": "application/xml" }, 415, "BERTH_E_UNSUPPORTED_MEDIA_TYPE"],
      ["name=x", { "content-type": "application/x-www-form-urlencoded" }, 415, "BERTH_E_UNSUPPORTED_MEDIA_TYPE"],
      ["just text", { "content-type": "text/plain" }, 400, "BERTH_E_VALIDATION"],
      ["[1, 2]", json, 400, "BERTH_E_VALIDATION"],
      ["null", json, 400, "BERTH_E_VALIDATION"],
    ];
    for (const [payload, headers, status, code] of cases) {
      await expectError(app, { method: "POST", url: "/api/flows", payload: payload as string, headers }, status, code);
    }
    expect(await store.listFlows()).toEqual([]);
  });

  it("rejects wrong types and unknown fields, naming each problem", async ({ server }) => {
    const { app, store } = server;
    const err = await expectError(app, { method: "POST", url: "/api/flows", payload: { ...flowBody(), name: 42, labels: ["ok", "not ok"] } }, 400, "BERTH_E_VALIDATION");
    expect(err.details.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ in: "body", path: "name" }),
        expect.objectContaining({ in: "body", path: "labels.1", message: "labels have no spaces, commas or control characters" }),
      ]),
    );
    expect(err.message).toContain("labels.1");
    const unknown = await expectError(app, { method: "POST", url: "/api/flows", payload: { ...flowBody(), colour: "red" } }, 400, "BERTH_E_VALIDATION");
    expect(unknown.message).toContain("colour");
    const flow = (await call(app, { method: "POST", url: "/api/flows", payload: flowBody() })).body.flow;
    const typo = await expectError(app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, parameter: { x: 1 } } }, 400, "BERTH_E_VALIDATION");
    expect(typo.message).toContain("parameter");
    await expectError(app, { method: "POST", url: "/api/flow-runs", payload: {} }, 400, "BERTH_E_VALIDATION");
    await expectError(app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, parameters: [1] } }, 400, "BERTH_E_VALIDATION");
    await expectError(app, { method: "POST", url: "/api/flow-runs", payload: { flowName: "  " } }, 400, "BERTH_E_VALIDATION");
    await expectError(app, { method: "POST", url: `/api/flows/${flow.id}` }, 404, "BERTH_E_NOT_FOUND");
    expect(await store.listFlows()).toHaveLength(1);
    expect(await store.listFlowRuns({})).toEqual([]);
  });

  it("rejects a body over the limit with 413", async ({ startServer }) => {
    const { app, store } = await startServer({ config: { bodyLimitBytes: 64 * 1024 } });
    const huge = { ...flowBody(), contentHash: "x".repeat(100 * 1024) };
    await expectError(app, { method: "POST", url: "/api/flows", payload: huge }, 413, "BERTH_E_PAYLOAD_TOO_LARGE");
    expect(await store.listFlows()).toEqual([]);
  });

  it("accepts large log batches under the default limit, refuses beyond it", async ({ server }) => {
    const { app } = server;
    const flow = (await call(app, { method: "POST", url: "/api/flows", payload: flowBody() })).body.flow;
    const run = (await call(app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id } })).body.flowRun;
    const at = new Date().toISOString();
    const logs = Array.from({ length: 5000 }, (_, i) => ({ at, level: "info", message: `line ${i} ${"x".repeat(200)}` }));
    expect((await call(app, { method: "POST", url: `/api/flow-runs/${run.id}/logs`, payload: { logs } })).status).toBe(200);
    const tooBig = Array.from({ length: 200 }, () => ({ at, level: "info", message: "y".repeat(99_000) }));
    await expectError(app, { method: "POST", url: `/api/flow-runs/${run.id}/logs`, payload: { logs: tooBig } }, 413, "BERTH_E_PAYLOAD_TOO_LARGE");
  });

  it("bounds free-form JSON in depth and size, naming the field, so nothing stored can break a later read", async ({ server }) => {
    const { app, store } = server;
    const nested = (depth: number): string => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    const flowText = (metadata: string) => {
      const body = flowBody();
      return JSON.stringify({ ...body, environment: { ...body.environment, metadata: "METADATA" } }).replace('"METADATA"', metadata);
    };
    const json = { "content-type": "application/json" };
    // 4,106 levels was once accepted and then broke every GET /api/flows; 5,000 broke the write itself.
    for (const depth of [65, 4_106, 5_000, 200_000]) {
      const err = await expectError(app, { method: "POST", url: "/api/flows", payload: flowText(nested(depth)), headers: json }, 400, "BERTH_E_VALIDATION");
      expect(err.message).toMatch(/^invalid body for POST \/api\/flows: environment\.metadata(\.a)+ is nested deeper than 64 levels$/);
      expect(err.details.issues[0]).toMatchObject({ in: "body", path: expect.stringMatching(/^environment\.metadata\.a/) });
    }
    // Within the bound (the body itself is one level, the environment another): accepted, and readable after.
    const ok = await call(app, { method: "POST", url: "/api/flows", payload: flowText(nested(62)), headers: json });
    expect(ok.status).toBe(201);
    const flow = ok.body.flow;
    const runBody = (parameters: string) => `{"flowId":"${flow.id}","parameters":${parameters}}`;
    const deepParams = await expectError(app, { method: "POST", url: "/api/flow-runs", payload: runBody(`{"p":${nested(100)}}`), headers: json }, 400, "BERTH_E_VALIDATION");
    expect(deepParams.message).toContain("parameters.p.a");
    const bigParams = await expectError(app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, parameters: { p: "x".repeat(1024 * 1024) } } }, 400, "BERTH_E_VALIDATION");
    expect(bigParams.message).toMatch(/parameters: is \d+ bytes of JSON; at most 1048576 are allowed/);
    const bigMetadata = flowBody({ environment: { type: "custom", className: "E", labels: [], metadata: { m: "x".repeat(70 * 1024) } } });
    expect((await expectError(app, { method: "POST", url: "/api/flows", payload: bigMetadata }, 400, "BERTH_E_VALIDATION")).message).toContain("environment.metadata");
    expect((await call(app, { method: "GET", url: "/api/flows" })).status).toBe(200);
    expect(await store.listFlows()).toHaveLength(1);
    expect(await store.listFlowRuns({})).toEqual([]);
  });

  it("still serves and hands out values stored before the size bounds existed", async ({ server }) => {
    const { app, store } = server;
    // Written straight to the store, as an older berth (which had no size bounds) would have.
    const big = "x".repeat(200 * 1024);
    const { flow } = await store.registerFlow(flowInput({ environment: { type: "custom", className: "E", labels: [], metadata: { big } } }));
    const { flowRun } = await store.createFlowRun({ flow, parameters: { big: big.repeat(6) }, labels: [] });
    expect((await call(app, { method: "GET", url: "/api/flows" })).status).toBe(200);
    expect((await call(app, { method: "GET", url: `/api/flows/${flow.id}` })).body.environment.metadata.big).toHaveLength(big.length);
    expect((await call(app, { method: "GET", url: `/api/flow-runs/${flowRun.id}` })).status).toBe(200);
    const agent = (await call(app, { method: "POST", url: "/api/agents", payload: { name: "old-data" } })).body;
    const claimed = await call(app, { method: "POST", url: `/api/agents/${agent.id}/claim`, payload: { waitMs: 0 } });
    expect(claimed.status).toBe(200);
    expect(claimed.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([flowRun.id]);
  });

  it("answers unknown routes and methods with BERTH_E_NOT_FOUND", async ({ server }) => {
    const { app } = server;
    const err = await expectError(app, { method: "GET", url: "/api/nothing?x=1" }, 404, "BERTH_E_NOT_FOUND");
    expect(err.message).toBe("no route GET /api/nothing");
    await expectError(app, { method: "DELETE", url: "/api/flows" }, 404, "BERTH_E_NOT_FOUND");
    await expectError(app, { method: "GET", url: "/nothing" }, 404, "BERTH_E_NOT_FOUND");
  });
});

describe("authentication", () => {
  it("requires the bearer token everywhere but /health, /openapi.json and the web UI's files", async ({ startServer }) => {
    const { app } = await startServer({ config: { apiToken: "s3cret" } });
    const err = await expectError(app, { method: "GET", url: "/api/flows" }, 401, "BERTH_E_UNAUTHORIZED");
    expect(err.message).toContain("BERTH_API_TOKEN");
    await expectError(app, { method: "GET", url: "/api/flows", headers: { authorization: "Bearer wrong" } }, 401, "BERTH_E_UNAUTHORIZED");
    await expectError(app, { method: "GET", url: "/api/flows", headers: { authorization: "s3cret" } }, 401, "BERTH_E_UNAUTHORIZED");
    await expectError(app, { method: "GET", url: "/api/nothing" }, 401, "BERTH_E_UNAUTHORIZED");
    await expectError(app, { method: "POST", url: "/api/flows", payload: flowBody() }, 401, "BERTH_E_UNAUTHORIZED");
    expect((await call(app, { method: "GET", url: "/api/flows", headers: { authorization: "Bearer s3cret" } })).status).toBe(200);
    expect((await call(app, { method: "GET", url: "/health" })).status).toBe(200);
    expect((await call(app, { method: "GET", url: "/openapi.json" })).status).toBe(200);
    expect((await app.inject({ method: "GET", url: "/" })).statusCode).toBe(200);
  });

  it("is off without a token", async ({ server }) => {
    const { app } = server;
    expect((await call(app, { method: "GET", url: "/api/flows", headers: { authorization: "Bearer anything" } })).status).toBe(200);
  });

  it("never logs the token", async ({ startServer }) => {
    const { app, lines } = await startServer({ config: { apiToken: "s3cret" } });
    app.log.info({ req: { headers: { authorization: "Bearer s3cret" } } }, "probe 1");
    app.log.info({ headers: { authorization: "Bearer s3cret" }, config: { apiToken: "s3cret" } }, "probe 2");
    await call(app, { method: "GET", url: "/api/flows", headers: { authorization: "Bearer s3cret" } });
    expect(JSON.stringify(lines)).not.toContain("s3cret");
    expect(JSON.stringify(lines.find((l) => l.msg === "probe 2"))).toContain("[redacted]");
  });
});

describe("bugs", () => {
  it("become a logged 500 BERTH_E_INTERNAL that leaks nothing", async () => {
    const real = await openSqliteStore(":memory:");
    const broken: StateStore = Object.assign(Object.create(real) as StateStore, {
      description: real.description,
      listFlows: async () => {
        throw new Error("disk on fire at /secret/path");
      },
    });
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const app = await buildServer({ store: broken, logger, options: testServerOptions(), version: "t" });
    try {
      const res = await app.inject({ method: "GET", url: "/api/flows" });
      expect(res.statusCode).toBe(500);
      expect(res.json()).toEqual({ error: { code: "BERTH_E_INTERNAL", message: "internal server error: see the server log" } });
      const logged = lines.map((l) => JSON.parse(l) as { level: number; err?: { stack?: string } }).find((l) => l.level === 50);
      expect(logged?.err?.stack).toContain("disk on fire");
    } finally {
      await app.close();
      await real.close();
    }
  });
});

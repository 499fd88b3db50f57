/**
 * (h) what authorization costs per request: the same read (GET /api/flow-runs/:id, in-process through
 * Fastify's inject) on a server without tokens, and with an admin token (configured), an admin token made
 * with `berth token create` (a store lookup), an agent token (a lookup) and a run token (an HMAC and a read of
 * the run), all in one run.
 */
import { Writable } from "node:stream";
import pino from "pino";
import { compileServerOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import { buildServer } from "../server/app.js";
import { openSqliteStore } from "../store/sqlite.js";

export interface AuthBenchResult {
  requests: number;
  /** Microseconds per request, by how the request authenticates. */
  perRequestUs: Record<"open" | "configured admin" | "stored admin" | "agent" | "run", number>;
}

const ADMIN = "bench-admin-token";

export async function runAuthBench({ requests = 7_000 } = {}): Promise<AuthBenchResult> {
  const logger = pino({ level: "silent" }, new Writable({ write: (_c, _e, done) => done() }));
  const options = compileServerOptions(defaultConfig({ server: { db: ":memory:", reaperInterval: 0 } }));
  const open = await serve(undefined);
  const secured = await serve(ADMIN);
  try {
    const setup = async (app: Awaited<ReturnType<typeof serve>>["app"], token: string | undefined) => {
      const call = async (method: "GET" | "POST", url: string, payload?: object) =>
        JSON.parse((await app.inject({ method, url, ...(payload ? { payload } : {}), ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) })).body);
      const flow = (await call("POST", "/api/flows", benchFlow())).flow;
      await call("POST", "/api/flow-runs", { flowId: flow.id });
      return call;
    };
    const openCall = await setup(open.app, undefined);
    const agentId = (await openCall("POST", "/api/agents", { name: "bench" })).id;
    const openRun = (await openCall("POST", `/api/agents/${agentId}/claim`, { waitMs: 0 })).claims[0].flowRun.id as string;

    const adminCall = await setup(secured.app, ADMIN);
    const storedAdmin = (await adminCall("POST", "/api/tokens", { role: "admin" })).token as string;
    const agentToken = (await adminCall("POST", "/api/tokens", { role: "agent", name: "bench" })).token as string;
    const agentHeaders = { authorization: `Bearer ${agentToken}` };
    const securedAgent = JSON.parse((await secured.app.inject({ method: "POST", url: "/api/agents", payload: { name: "bench" }, headers: agentHeaders })).body).id;
    const claim = JSON.parse((await secured.app.inject({ method: "POST", url: `/api/agents/${securedAgent}/claim`, payload: { waitMs: 0 }, headers: agentHeaders })).body).claims[0];
    const runId = claim.flowRun.id as string;

    const time = async (app: typeof open.app, url: string, token: string | undefined, count: number): Promise<number> => {
      const headers = token ? { authorization: `Bearer ${token}` } : {};
      const started = performance.now();
      for (let i = 0; i < count; i++) {
        const res = await app.inject({ method: "GET", url, headers });
        if (res.statusCode !== 200) throw new Error(`bench request answered ${res.statusCode}: ${res.body}`);
      }
      return ((performance.now() - started) * 1000) / count;
    };
    const cases = {
      open: [open.app, `/api/flow-runs/${openRun}`, undefined],
      "configured admin": [secured.app, `/api/flow-runs/${runId}`, ADMIN],
      "stored admin": [secured.app, `/api/flow-runs/${runId}`, storedAdmin],
      agent: [secured.app, `/api/flow-runs/${runId}`, agentToken],
      run: [secured.app, `/api/flow-runs/${runId}`, claim.runToken as string],
    } as const;
    // Rounds in turn, so that warming up and the machine's drift fall on every case alike; the median round.
    const rounds = 7;
    const samples = new Map<keyof typeof cases, number[]>();
    for (const [app, url, token] of Object.values(cases)) await time(app, url, token, 300);
    for (let round = 0; round < rounds; round++) {
      for (const [name, [app, url, token]] of Object.entries(cases) as [keyof typeof cases, (typeof cases)[keyof typeof cases]][]) {
        samples.set(name, [...(samples.get(name) ?? []), await time(app, url, token, Math.ceil(requests / rounds))]);
      }
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    return {
      requests,
      perRequestUs: {
        open: median(samples.get("open") ?? []),
        "configured admin": median(samples.get("configured admin") ?? []),
        "stored admin": median(samples.get("stored admin") ?? []),
        agent: median(samples.get("agent") ?? []),
        run: median(samples.get("run") ?? []),
      },
    };
  } finally {
    await open.close();
    await secured.close();
  }

  async function serve(apiToken: string | undefined) {
    const store = await openSqliteStore(":memory:");
    const app = await buildServer({ store, logger, options: { ...options, apiToken }, version: "bench" });
    return {
      app,
      close: async () => {
        await app.close();
        await store.close();
      },
    };
  }
}

function benchFlow() {
  return {
    name: "auth-bench",
    storage: { type: "local", directory: "/tmp", flows: {} },
    environment: { type: "LocalEnvironment", className: "LocalEnvironment", labels: [], metadata: {} },
    contentHash: "auth-bench",
  };
}

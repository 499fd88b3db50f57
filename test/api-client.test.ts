import { createServer, type Server } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { BerthError, isBerthError } from "../wire/errors.js";
import { RUNS_TOPIC } from "../server/notifier.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";
import { until } from "./support/wait.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;

async function rejection(promise: Promise<unknown>): Promise<BerthError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }
  throw new Error("expected a rejection");
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("ApiClient against a listening server", () => {
  let s: TestServer;
  let url: string;
  let client: ApiClient;
  beforeEach(async () => {
    s = await startTestServer({ config: { apiToken: "tok" } });
    await s.app.listen({ host: "127.0.0.1", port: 0 });
    url = `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}`;
    client = new ApiClient({ baseUrl: `${url}/`, token: "tok" });
  });
  afterEach(async () => s.close());

  it("drives every route", async () => {
    expect(await client.health()).toMatchObject({ status: "ok" });
    const registered = await client.registerFlow(flowBody({ labels: ["gpu"], parameters: [{ name: "who", required: false, default: "x" }] }));
    expect(registered.created).toBe(true);
    const { flow } = registered;
    expect((await client.registerFlow({ ...flowBody({ name: flow.name }), contentHash: flow.contentHash })).created).toBe(false);
    expect((await client.listFlows()).flows.map((f) => f.id)).toEqual([flow.id]);
    expect(await client.getFlow(flow.id)).toEqual(flow);

    const agent = await client.registerAgent({ name: uniqueName("agent"), labels: ["gpu"] });
    expect((await client.listAgents()).agents.map((a) => a.id)).toEqual([agent.id]);

    const { flowRun, created } = await client.createFlowRun({ flowName: flow.name, parameters: { who: "me" }, idempotencyKey: "once" });
    expect(created).toBe(true);
    expect((await client.createFlowRun({ flowName: flow.name, idempotencyKey: "once" })).flowRun.id).toBe(flowRun.id);
    expect((await client.listFlowRuns({ flowName: flow.name, state: "Scheduled", limit: 10 })).flowRuns.map((r) => r.id)).toEqual([flowRun.id]);

    const { claims } = await client.claim(agent.id, { waitMs: 0 });
    expect(claims.map((c) => [c.flowRun.id, c.flow?.id])).toEqual([[flowRun.id, flow.id]]);
    const running = await client.setFlowRunState(flowRun.id, { state: "Running", expectedVersion: 1 });
    expect(running.state).toBe("Running");
    expect(await client.heartbeatFlowRun(flowRun.id)).toEqual({ state: "Running", epoch: 1 });
    expect(await client.heartbeatFlowRun(flowRun.id, 1)).toEqual({ state: "Running", epoch: 1 });

    await client.updateTaskRuns(flowRun.id, [{ taskSlug: "t", taskName: "T", state: "Success", attempt: 1 }]);
    expect((await client.listTaskRuns(flowRun.id)).map((t) => t.state)).toEqual(["Success"]);
    await client.appendLogs(flowRun.id, [{ at: new Date().toISOString(), level: "info", message: "hi" }]);
    const page = await client.getLogs(flowRun.id, { after: 0 });
    expect(page.logs.map((l) => l.message)).toEqual(["hi"]);
    expect((await client.getLogs(flowRun.id, { after: page.next, waitMs: 50 })).logs).toEqual([]);

    expect((await client.cancelFlowRun(flowRun.id)).state).toBe("Cancelling");
    expect(await client.heartbeatAgent(agent.id, { status: "online" })).toEqual({ cancelRunIds: [flowRun.id], lostRunIds: [] });
    expect(await client.heartbeatAgent(agent.id, { runs: [{ id: flowRun.id, epoch: 1 }, { id: "gone", epoch: 1 }] })).toEqual({
      cancelRunIds: [flowRun.id],
      lostRunIds: ["gone"],
    });
    expect((await client.getFlowRun(flowRun.id)).state).toBe("Cancelling");
  });

  it("turns error bodies into BerthErrors with their code, message and details", async () => {
    const missing = await rejection(client.getFlow("nope"));
    expect(missing.code).toBe("BERTH_E_FLOW_NOT_FOUND");
    expect(missing.status).toBe(404);
    const flow = (await client.registerFlow(flowBody())).flow;
    const run = (await client.createFlowRun({ flowId: flow.id })).flowRun;
    const stale = await rejection(client.setFlowRunState(run.id, { state: "Cancelled", expectedVersion: 5 }));
    expect(stale.code).toBe("BERTH_E_STALE_VERSION");
    expect(stale.details).toEqual({ expected: 5, actual: 0 });
    const agent = await client.registerAgent({ name: uniqueName("agent") });
    expect(await client.registerAgent({ name: agent.name, concurrency: 2 })).toMatchObject({ id: agent.id, concurrency: 2 });
    const claimed = (await client.claim(agent.id, { waitMs: 0 })).claims[0]?.flowRun;
    expect(claimed).toMatchObject({ id: run.id, epoch: 1 });
    const fenced = [
      client.setFlowRunState(run.id, { state: "Running", expectedVersion: 1, epoch: 0 }),
      client.heartbeatFlowRun(run.id, 2),
      client.updateTaskRuns(run.id, [{ taskSlug: "t", taskName: "T", state: "Running", attempt: 1 }], 0),
      client.appendLogs(run.id, [{ at: new Date().toISOString(), level: "info", message: "late" }], 0),
    ];
    for (const write of fenced) {
      const err = await rejection(write);
      expect(err.code).toBe("BERTH_E_STALE_LEASE");
      expect(err.status).toBe(409);
    }
    await client.updateTaskRuns(run.id, [{ taskSlug: "t", taskName: "T", state: "Running", attempt: 1 }], 1);
    await client.appendLogs(run.id, [{ at: new Date().toISOString(), level: "info", message: "mine" }], 1);
    expect((await client.getLogs(run.id)).logs.map((l) => l.message)).toEqual(["mine"]);
    const bad = await rejection(client.registerAgent({ name: "x", labels: ["a b"] }));
    expect(bad.code).toBe("BERTH_E_VALIDATION");
    const unauthorized = await rejection(new ApiClient({ baseUrl: url }).listFlows());
    expect(unauthorized.code).toBe("BERTH_E_UNAUTHORIZED");
  });

  it("wakes a claim within milliseconds of a run's creation", async () => {
    const flow = (await client.registerFlow(flowBody())).flow;
    const agent = await client.registerAgent({ name: "fast" });
    const claim = client.claim(agent.id, { waitMs: 30_000 });
    await until("a claim to park", () => s.notifier.waiting(RUNS_TOPIC) === 1);
    const started = performance.now();
    const run = (await client.createFlowRun({ flowId: flow.id })).flowRun;
    const { claims } = await claim;
    const elapsed = performance.now() - started;
    expect(claims.map((c) => c.flowRun.id)).toEqual([run.id]);
    expect(elapsed).toBeLessThan(5_000);
  });

  it("cleans up a parked claim when the client goes away, and gives back what it claimed", async () => {
    const agent = await client.registerAgent({ name: "leaving" });
    const controller = new AbortController();
    const claim = client.claim(agent.id, { waitMs: 30_000 }, controller.signal);
    await until("a claim to park", () => s.notifier.waiting(RUNS_TOPIC) === 1);
    controller.abort();
    expect((await rejection(claim)).code).toBe("BERTH_E_ABORTED");
    await until("the waiter to be removed", () => s.notifier.waiting(RUNS_TOPIC) === 0, { timeoutMs: 5_000 });
    const flow = (await client.registerFlow(flowBody())).flow;
    const run = (await client.createFlowRun({ flowId: flow.id })).flowRun;
    expect((await client.getFlowRun(run.id)).state).toBe("Scheduled");
  });
});

describe("ApiClient failures", () => {
  const servers: { close: () => void }[] = [];
  afterEach(() => {
    for (const server of servers.splice(0)) server.close();
  });

  it("says the server is unreachable, and how to fix it", async () => {
    const probe = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const err = await rejection(new ApiClient({ baseUrl: `http://127.0.0.1:${port}` }).health());
    expect(err.code).toBe("BERTH_E_SERVER_UNREACHABLE");
    expect(err.message).toBe(
      `cannot reach the berth server at http://127.0.0.1:${port} (connect ECONNREFUSED): is \`berth server\` running? Set --api or BERTH_API_URL`,
    );
    expect(err.cause).toBeDefined();
  });

  it("fails over to the next server when one refuses the connection, and stays with the one that answers", async () => {
    const probe = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const deadPort = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    await using live = await startTestServer();
    await live.app.listen({ host: "127.0.0.1", port: 0 });
    const liveUrl = `http://127.0.0.1:${(live.app.server.address() as AddressInfo).port}`;
    const client = new ApiClient({ baseUrl: `http://127.0.0.1:${deadPort}, ${liveUrl}/` });
    expect(client.baseUrls).toEqual([`http://127.0.0.1:${deadPort}`, liveUrl]);
    expect(client.baseUrl).toBe(`http://127.0.0.1:${deadPort}`);
    const { flow } = await client.registerFlow(flowBody());
    expect(client.baseUrl).toBe(liveUrl);
    expect((await client.listFlows()).flows.map((f) => f.id)).toEqual([flow.id]);
    // Every server refusing: the error names the last one tried, and the next call starts from the other.
    await live.app.close();
    const err = await rejection(client.health());
    expect(err.code).toBe("BERTH_E_SERVER_UNREACHABLE");
  });

  it("sends a request that may have arrived (no answer in time) to no second server", async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    servers.push({ close: () => (sockets.forEach((x) => x.destroy()), silent.close()) });
    let second = 0;
    const other = createServer((_req, res) => {
      second++;
      res.end();
    });
    servers.push(other);
    const otherUrl = await listen(other);
    const client = new ApiClient({ baseUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port},${otherUrl}`, timeoutMs: 200 });
    const err = await rejection(client.createFlowRun({ flowName: "x", parameters: {} }));
    expect(err.message).toContain("no answer within 200ms");
    expect(second).toBe(0);
    // The next request goes to the other server.
    expect(client.baseUrl).toBe(otherUrl);
  });

  it("gives up after the timeout on a server that never answers", async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    servers.push({ close: () => (sockets.forEach((x) => x.destroy()), silent.close()) });
    const port = (silent.address() as AddressInfo).port;
    const err = await rejection(new ApiClient({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 200 }).health());
    expect(err.code).toBe("BERTH_E_SERVER_UNREACHABLE");
    expect(err.message).toContain("no answer within 200ms");
  });

  it("rejects answers that are not berth's", async () => {
    const other = createServer((req, res) => {
      if (req.url === "/health") {
        res.writeHead(200, { "content-type": "text/html" }).end("<html>hello</html>");
      } else if (req.url === "/api/flows") {
        res.writeHead(200, { "content-type": "application/json" }).end('{"items": []}');
      } else if (req.url === "/api/agents") {
        res.writeHead(418, { "content-type": "application/json" }).end('{"error":{"code":"BERTH_E_FROM_THE_FUTURE","message":"teapot"}}');
      } else {
        res.writeHead(500, { "content-type": "application/json" }).end('{"oops": true}');
      }
    });
    const base = await listen(other);
    servers.push(other);
    const client = new ApiClient({ baseUrl: base });
    const html = await rejection(client.health());
    expect(html.code).toBe("BERTH_E_BAD_RESPONSE");
    expect(html.message).toContain("not JSON");
    const shape = await rejection(client.listFlows());
    expect(shape.code).toBe("BERTH_E_BAD_RESPONSE");
    expect(shape.message).toContain("unexpected shape");
    const future = await rejection(client.listAgents());
    expect(future.code).toBe("BERTH_E_INTERNAL");
    expect(future.message).toBe("BERTH_E_FROM_THE_FUTURE: teapot");
    const noBody = await rejection(client.getFlow("x"));
    expect(noBody.code).toBe("BERTH_E_BAD_RESPONSE");
    expect(noBody.message).toContain("HTTP 500");
  });

  it("reads a bodiless error answer (a proxy's, or any HEAD's) by its status", async () => {
    const statuses: Record<string, number> = { "/api/flows": 413, "/api/agents": 503, "/api/flow-runs": 502 };
    const proxy = createServer((req, res) => {
      res.writeHead(statuses[(req.url ?? "").split("?")[0]!] ?? 403).end();
    });
    const base = await listen(proxy);
    servers.push(proxy);
    const client = new ApiClient({ baseUrl: base, token: "wrong" });
    const tooLarge = await rejection(client.registerFlow(flowBody()));
    expect({ code: tooLarge.code, message: tooLarge.message }).toEqual({
      code: "BERTH_E_PAYLOAD_TOO_LARGE",
      message: `the server at ${base} answered POST /api/flows with HTTP 413: the request body is too large for it (or for a proxy in front of it)`,
    });
    expect((await rejection(client.listAgents())).code).toBe("BERTH_E_UNAVAILABLE");
    const gateway = await rejection(client.listFlowRuns({}));
    expect({ code: gateway.code, message: gateway.message }).toEqual({
      code: "BERTH_E_BAD_RESPONSE",
      message: `the server at ${base} answered GET /api/flow-runs with HTTP 502 and no body: is --api pointing at a berth server?`,
    });
    const forbidden = await rejection(client.hasBuildContext("0".repeat(64)));
    expect(forbidden.code).toBe("BERTH_E_UNAUTHORIZED");
    expect(forbidden.message).toContain("it does not accept this API token; set --token or BERTH_API_TOKEN");
  });

  it("refuses an invalid base URL at construction", () => {
    let caught: unknown;
    try {
      new ApiClient({ baseUrl: "http://127.0.0.1:4200,not a url" });
    } catch (err) {
      caught = err;
    }
    expect(isBerthError(caught, "BERTH_E_CONFIG")).toBe(true);
    expect((caught as Error).message).toContain(`"not a url" is not a URL`);
  });
});

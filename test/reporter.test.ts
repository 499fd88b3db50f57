/**
 * The flow-run reporter against a real server (through inject): what it does with messages too long to
 * store, a server whose body limit is small, a reply lost after the server stored a batch, and a server
 * that is down and comes back.
 */
import { describe, expect } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { RunReporter } from "../flow-run/reporter.js";
import { RunContext } from "../flow-run/run-context.js";
import { MAX_STATE_MESSAGE_LENGTH } from "../wire/schema.js";
import { flowInput } from "./support/fixtures.js";
import { test as it, type TestServer } from "./support/server.js";

interface Transport {
  /** Fail requests while true, as an unreachable server does. */
  down: boolean;
  /** The next N log appends reach the server, but their reply is lost. */
  loseReplies: number;
  requests: number;
}

/** An ApiClient whose fetch is the server's inject(): no sockets, and faults on demand. */
function clientFor(server: TestServer, transport: Transport): ApiClient {
  const fetcher = (async (input: string | URL | Request, init?: RequestInit) => {
    transport.requests += 1;
    if (transport.down) throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
    const url = new URL(String(input));
    const res = await server.app.inject({
      method: (init?.method ?? "GET") as "GET" | "POST",
      url: `${url.pathname}${url.search}`,
      headers: init?.headers as Record<string, string>,
      ...(init?.body ? { payload: String(init.body) } : {}),
    });
    if (url.pathname.endsWith("/logs") && init?.method === "POST" && transport.loseReplies > 0) {
      transport.loseReplies -= 1;
      throw new TypeError("fetch failed", { cause: Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }) });
    }
    return new Response(res.body, { status: res.statusCode, headers: res.headers as Record<string, string> });
  }) as typeof fetch;
  return new ApiClient({ baseUrl: "http://berth.test", fetch: fetcher });
}

async function running(server: TestServer) {
  const { flow } = await server.store.registerFlow(flowInput());
  const { flowRun } = await server.store.createFlowRun({ flow, parameters: {}, labels: [] });
  const [claimed] = await server.store.claimFlowRuns("agent-1", [], 1, 30_000);
  return { id: flowRun.id, epoch: claimed!.epoch };
}

describe("the run reporter", () => {
  it("hands its queue to a state write, sends nothing while it is out, takes back what it did not deliver in order, and keeps too much for one write", async ({ server }) => {
    const transport = { down: false, loseReplies: 0, requests: 0 };
    const { id, epoch } = await running(server);
    const reporter = new RunReporter({ client: clientFor(server, transport), flowRunId: id, epoch, warn: () => {}, maxBatch: 10_000 });
    reporter.taskState({ taskSlug: "t", taskName: "t", state: "Running", attempt: 1 });
    reporter.log("info", "first");
    const report = (await reporter.takeForStateWrite())!;
    expect(report.logs.map((l) => l.message)).toEqual(["first"]);
    expect(report.taskRuns.map((t) => t.state)).toEqual(["Running"]);
    expect(reporter.empty).toBe(true);
    // Meanwhile the task moved on and another line came: held back while the state write is out, even when
    // a flush is asked for, so that nothing overtakes what the state write carries.
    reporter.taskState({ taskSlug: "t", taskName: "t", state: "Success", attempt: 1 });
    reporter.log("info", "second");
    const flushed = reporter.flush();
    await new Promise((r) => setTimeout(r, 50));
    expect(transport.requests).toBe(0);
    // The write failed: its part comes back first, and sending resumes.
    reporter.stateWriteDone(report, false);
    await flushed;
    await reporter.drain(1_000);
    expect((await server.store.listLogs(id, 0, 10)).map((l) => l.message)).toEqual(["first", "second"]);
    expect((await server.store.listTaskRuns(id)).map((t) => t.state)).toEqual(["Success"]);
    // More than one state write should carry stays queued, for drain().
    for (let i = 0; i < 2_001; i++) reporter.log("info", `line ${i}`);
    expect(await reporter.takeForStateWrite()).toBeUndefined();
    expect(reporter.empty).toBe(false);
  });

  it("records a final state whose report a server with a small body limit refuses, and the lines before it", async ({ startServer }) => {
    const server = await startServer({ config: { bodyLimitBytes: 64 * 1024 } });
    const transport = { down: false, loseReplies: 0, requests: 0 };
    const { id, epoch } = await running(server);
    const client = clientFor(server, transport);
    const reporter = new RunReporter({ client, flowRunId: id, epoch, warn: () => {}, maxBatch: 10_000 });
    const context = new RunContext(client, reporter, { id, version: 1, parameters: {} }, epoch, 1_000);
    expect(await context.setState("Running")).toBe(true);
    // About 75 KB: small enough to travel with the state, too large for this server's limit.
    for (let i = 1; i <= 15; i++) reporter.log("info", `line ${i} ${"y".repeat(5_000)}`);
    expect(await context.setState("Success")).toBe(true);
    expect((await server.store.getFlowRun(id))?.state).toBe("Success");
    const logs = await server.store.listLogs(id, 0, 100);
    expect(logs.map((l) => l.message.split(" ").slice(0, 2).join(" "))).toEqual(Array.from({ length: 15 }, (_, i) => `line ${i + 1}`));
    expect(reporter.dropped).toBe(0);
  });

  it("records a final state whose report the server failed to store, and the lines once the server takes them", async ({ server }) => {
    const transport = { down: false, loseReplies: 0, requests: 0 };
    const { id, epoch } = await running(server);
    const client = clientFor(server, transport);
    const reporter = new RunReporter({ client, flowRunId: id, epoch, warn: () => {} });
    const context = new RunContext(client, reporter, { id, version: 1, parameters: {} }, epoch, 2_000);
    expect(await context.setState("Running")).toBe(true);
    reporter.log("info", "one");
    reporter.log("info", "two");
    // The store fails the first append (a line its database cannot hold, a full disk): a 500 for the state write.
    const append = server.store.appendLogs.bind(server.store);
    let failures = 1;
    server.store.appendLogs = async (...args: Parameters<typeof append>) => {
      if (failures-- > 0) throw new Error("disk I/O error");
      return append(...args);
    };
    expect(await context.setState("Success")).toBe(true);
    expect((await server.store.getFlowRun(id))?.state).toBe("Success");
    expect((await server.store.listLogs(id, 0, 10)).map((l) => l.message)).toEqual(["one", "two"]);
  });

  it("cuts a message too long to store, and loses no log line over it", async ({ server }) => {
    const transport = { down: false, loseReplies: 0, requests: 0 };
    const { id, epoch } = await running(server);
    const warnings: string[] = [];
    const reporter = new RunReporter({ client: clientFor(server, transport), flowRunId: id, epoch, warn: (w) => warnings.push(w) });
    reporter.taskState({ taskSlug: "t", taskName: "t", state: "Failed", message: "e".repeat(25_000), attempt: 1 });
    reporter.log("error", "the task failed", "t");
    reporter.log("info", "x".repeat(150_000));
    await reporter.drain(1_000);
    const [taskRun] = await server.store.listTaskRuns(id);
    expect(taskRun?.message).toHaveLength(MAX_STATE_MESSAGE_LENGTH);
    expect(taskRun?.message).toMatch(/… \[cut: 25000 characters\]$/);
    const logs = await server.store.listLogs(id, 0, 10);
    expect(logs.map((l) => l.message.slice(0, 15))).toEqual(["the task failed", "x".repeat(15)]);
    expect(logs[1]?.message).toMatch(/\[cut: 150000 characters\]$/);
    expect({ dropped: reporter.dropped, warnings }).toEqual({ dropped: 0, warnings: [] });
  });

  it("splits batches a server with a small body limit cannot take, dropping only a line that can never fit", async ({ startServer }) => {
    const server = await startServer({ config: { bodyLimitBytes: 64 * 1024 } });
    const transport = { down: false, loseReplies: 0, requests: 0 };
    const { id, epoch } = await running(server);
    const warnings: string[] = [];
    const reporter = new RunReporter({ client: clientFor(server, transport), flowRunId: id, epoch, warn: (w) => warnings.push(w), maxBatch: 10_000 });
    for (let i = 1; i <= 40; i++) reporter.log("info", `line ${i} ${"y".repeat(5_000)}`);
    reporter.log("info", `huge ${"z".repeat(90_000)}`);
    reporter.log("info", "after the huge one");
    await reporter.drain(1_000);
    const messages = (await server.store.listLogs(id, 0, 100)).map((l) => l.message.split(" ").slice(0, 2).join(" "));
    expect(messages).toEqual([...Array.from({ length: 40 }, (_, i) => `line ${i + 1}`), "after the"]);
    expect(reporter.dropped).toBe(1);
    expect(warnings.join("\n")).toMatch(/refused 1 log line/);
  });

  it("stores each line once when a reply is lost after the server took the batch", async ({ server }) => {
    const transport = { down: false, loseReplies: 1, requests: 0 };
    const { id, epoch } = await running(server);
    const reporter = new RunReporter({ client: clientFor(server, transport), flowRunId: id, epoch, warn: () => {} });
    for (const line of ["one", "two", "three"]) reporter.log("info", line);
    await reporter.drain(5_000);
    expect((await server.store.listLogs(id, 0, 10)).map((l) => l.message)).toEqual(["one", "two", "three"]);
    expect(transport.requests).toBeGreaterThan(1);
  });

  it("keeps everything while the server is down and delivers it when it is back", async ({ server }) => {
    const transport = { down: true, loseReplies: 0, requests: 0 };
    const { id, epoch } = await running(server);
    const reporter = new RunReporter({ client: clientFor(server, transport), flowRunId: id, epoch, warn: () => {} });
    reporter.taskState({ taskSlug: "t", taskName: "t", state: "Success", attempt: 1 });
    for (let i = 1; i <= 5; i++) reporter.log("info", `line ${i}`);
    await reporter.flush();
    expect(reporter.empty).toBe(false);
    setTimeout(() => (transport.down = false), 300);
    await reporter.drain(10_000);
    expect(reporter.empty).toBe(true);
    expect((await server.store.listLogs(id, 0, 10)).map((l) => l.message)).toEqual(["line 1", "line 2", "line 3", "line 4", "line 5"]);
    expect((await server.store.listTaskRuns(id)).map((t) => t.state)).toEqual(["Success"]);
    expect(reporter.dropped).toBe(0);
  });
});

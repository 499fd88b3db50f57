/**
 * The flow-run process as a container runs it (`berth execute flow-run`, here on the host against a real
 * server): it runs the flow from what its agent told it, asking the server for neither the run nor the flow,
 * and it loads no zod, no command-line parser and no undici (global fetch), whose loading cost more CPU than
 * a whole trivial run. A container from an agent that did not describe the run still reads it from the
 * server.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { RUN_VARIABLES, flowRunEnvironment, type RunDescription } from "../config/flow-run-env.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { CLI, REPO } from "./support/processes.js";
import { startTestServer, type TestServer } from "./support/server.js";

let dir: string;
let server: TestServer;
let client: ApiClient;
let flowModule: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "berth-flow-run-"));
  const { bundleFlowFile } = (await import(pathToFileURL(path.join(REPO, "dist", "storage", "bundle.js")).href)) as typeof import("../storage/bundle.js");
  flowModule = path.join(dir, "trivial-flow.mjs");
  await writeFile(flowModule, await bundleFlowFile(path.join(REPO, "test", "fixtures", "trivial-flow.ts"), { target: "host" }));
  // Records every module the process loads: ES modules through a resolve hook, Node's own from moduleLoadList.
  await writeFile(
    path.join(dir, "hooks.mjs"),
    `export async function resolve(specifier, context, next) { const r = await next(specifier, context); process._rawDebug("LOADED " + r.url); return r; }\n`,
  );
  await writeFile(
    path.join(dir, "record.mjs"),
    [
      `import { register } from "node:module";`,
      `register(${JSON.stringify(pathToFileURL(path.join(dir, "hooks.mjs")).href)});`,
      `process.on("exit", () => { for (const m of process.moduleLoadList) process._rawDebug("LOADED " + m); });`,
    ].join("\n"),
  );
  server = await startTestServer();
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  client = new ApiClient({ baseUrl: `http://127.0.0.1:${(server.app.server.address() as { port: number }).port}` });
});

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A run of a trivial flow whose storage lists `flowModule`, claimed by an agent: what its container gets. */
async function claimedRun() {
  const { flow } = await client.registerFlow(
    flowBody({ name: "Trivial Flow", storage: { type: "docker", image: "berth-test/none:1", flows: { "Trivial Flow": flowModule } }, tasks: [{ slug: "one", name: "one" }] }),
  );
  const agent = await client.registerAgent({ name: uniqueName("flow-run-process") });
  const { flowRun } = await client.createFlowRun({ flowId: flow.id, parameters: {} });
  const { claims } = await client.claim(agent.id, { waitMs: 0 });
  const claim = claims.find((c) => c.flowRun.id === flowRun.id);
  if (!claim) throw new Error("the run was not claimed");
  return { flow, claim };
}

async function requests(method: string, route: string): Promise<number> {
  const text = (await server.app.inject({ method: "GET", url: "/metrics" })).body;
  let count = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("berth_http_request_duration_seconds_count{") && line.includes(`method="${method}"`) && line.includes(`route="${route}"`)) {
      count += Number(line.split(" ").pop());
    }
  }
  return count;
}

async function executeFlowRun(env: Record<string, string>): Promise<{ code: number | null; output: string; loaded: string[] }> {
  const child = spawn(process.execPath, ["--import", pathToFileURL(path.join(dir, "record.mjs")).href, CLI, "execute", "flow-run"], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  const loaded = output.split("\n").flatMap((line) => (line.startsWith("LOADED ") ? [line.slice(7)] : []));
  return { code, output: output.split("\n").filter((line) => !line.startsWith("LOADED ")).join("\n"), loaded };
}

const settings = (claim: Awaited<ReturnType<typeof claimedRun>>["claim"], run?: RunDescription) =>
  flowRunEnvironment({
    apiUrl: client.baseUrl,
    apiToken: claim.runToken,
    flowRunId: claim.flowRun.id,
    epoch: claim.flowRun.epoch,
    heartbeatIntervalMs: 10_000,
    serverDownForMs: 5_000,
    run,
  });

describe("berth execute flow-run", () => {
  it("as a warm container, says what is wrong with a run it cannot read from its input, and runs nothing", { timeout: 60_000 }, async () => {
    const child = spawn(process.execPath, [CLI, "execute", "flow-run"], {
      env: { PATH: process.env.PATH ?? "", BERTH_API_URL: client.baseUrl, BERTH_WARM_TTL_MS: "30000" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.stdin.end("{not json\n");
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(1);
    expect(output).toMatch(/^berth: a warm container's run must come as one line of JSON on its standard input: /m);
    expect(output).not.toContain("unexpected error");
  });


  it("as a warm container, opens its connection to the server and loads berth while it waits, printing nothing, and exits quietly when its input ends empty", { timeout: 60_000 }, async () => {
    const before = await requests("GET", "/health");
    const child = spawn(process.execPath, ["--import", pathToFileURL(path.join(dir, "record.mjs")).href, CLI, "execute", "flow-run"], {
      env: { PATH: process.env.PATH ?? "", BERTH_API_URL: client.baseUrl, BERTH_WARM_TTL_MS: "30000" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const exited = once(child, "exit");
    const deadline = Date.now() + 20_000;
    while ((await requests("GET", "/health")) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await requests("GET", "/health")).toBe(before + 1);
    expect(child.exitCode).toBeNull();
    child.stdin.end();
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    const lines = output.split("\n").filter((line) => line !== "");
    expect(lines.filter((line) => !line.startsWith("LOADED "))).toEqual([]);
    // berth's entry point, as a flow imports it ("berth"): loaded before any run came.
    expect(lines).toContain(`LOADED ${pathToFileURL(path.join(REPO, "dist", "index.js")).href}`);
  });

  it("as a warm container, runs the run its input gives it with the run's variables in its environment, as a cold one does", { timeout: 60_000 }, async () => {
    const { bundleFlowFile } = (await import(pathToFileURL(path.join(REPO, "dist", "storage", "bundle.js")).href)) as typeof import("../storage/bundle.js");
    const source = path.join(dir, "env-flow.ts");
    await writeFile(
      source,
      [
        `import { Flow, task } from "berth";`,
        `import { cachedDataVersionTag } from "node:v8";`,
        // Changes with V8's flags: lazy compiling must be back on, as in any process, once the flow loads.
        `console.log(\`v8 tag \${cachedDataVersionTag()}\`);`,
        `const say = task(() => console.log(\`env id=\${process.env.BERTH_FLOW_RUN_ID} epoch=\${process.env.BERTH_FLOW_RUN_EPOCH}\`), { name: "say" });`,
        `const flow = new Flow("Env Flow");`,
        `say.bind({}, { flow });`,
        `export default flow;`,
      ].join("\n"),
    );
    const module = path.join(dir, "env-flow.mjs");
    await writeFile(module, await bundleFlowFile(source, { target: "host" }));
    const storage = { type: "docker" as const, image: "berth-test/none:1", flows: { "Env Flow": module } };
    const { flow } = await client.registerFlow(flowBody({ name: "Env Flow", storage, tasks: [{ slug: "say", name: "say" }] }));
    const agent = await client.registerAgent({ name: uniqueName("flow-run-warm") });
    const { flowRun } = await client.createFlowRun({ flowId: flow.id, parameters: {} });
    const claim = (await client.claim(agent.id, { waitMs: 0 })).claims.find((c) => c.flowRun.id === flowRun.id)!;
    const env = settings(claim, { flowId: flow.id, flowName: flow.name, version: claim.flowRun.version, parameters: {}, storage });
    // As an agent hands a run to a warm container: its own variables on standard input, the rest in the environment.
    const given = Object.fromEntries(Object.entries(env).filter(([name]) => RUN_VARIABLES.includes(name)));
    const rest = Object.fromEntries(Object.entries(env).filter(([name]) => !RUN_VARIABLES.includes(name)));
    const logWrites = await requests("POST", "/api/flow-runs/:id/logs");
    const child = spawn(process.execPath, [CLI, "execute", "flow-run"], {
      env: { PATH: process.env.PATH ?? "", ...rest, BERTH_WARM_TTL_MS: "30000" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.stdin.end(`${JSON.stringify(given)}\n`);
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code, output).toBe(0);
    expect((await client.getFlowRun(flowRun.id)).state).toBe("Success");
    const lines = (await client.getLogs(flowRun.id, { after: 0, limit: 100 })).logs.map((l) => l.message);
    expect(lines).toContain(`env id=${flowRun.id} epoch=${claim.flowRun.epoch}`);
    // The flow's module loaded with V8's flags as a plain process has them: a warm container compiles berth
    // eagerly while it waits (cli/main.ts), but not the run's flow.
    const plain = spawn(process.execPath, ["-e", `console.log(require("node:v8").cachedDataVersionTag())`], { stdio: ["ignore", "pipe", "inherit"] });
    let tag = "";
    plain.stdout.on("data", (d: Buffer) => (tag += d.toString()));
    await once(plain, "exit");
    expect(tag.trim()).toMatch(/^\d+$/);
    expect(lines).toContain(`v8 tag ${tag.trim()}`);
    // The lines the flow printed came with its final state, not in a request of its own.
    expect(await requests("POST", "/api/flow-runs/:id/logs")).toBe(logWrites);
  });

  it("runs the flow its agent described, without asking for the run or the flow, and loads no zod, commander or undici", { timeout: 60_000 }, async () => {
    const { flow, claim } = await claimedRun();
    const runsRead = await requests("GET", "/api/flow-runs/:id");
    const flowsRead = await requests("GET", "/api/flows/:id");
    const writes = async () => [await requests("POST", "/api/flow-runs/:id/state"), await requests("POST", "/api/flow-runs/:id/task-runs"), await requests("POST", "/api/flow-runs/:id/logs")];
    const [statesBefore, taskRunsBefore, logsBefore] = await writes();
    const description: RunDescription = {
      flowId: flow.id,
      flowName: flow.name,
      version: claim.flowRun.version,
      parameters: claim.flowRun.parameters,
      storage: { type: "docker", image: "berth-test/none:1", flows: { [flow.name]: flowModule } },
    };
    const { code, output, loaded } = await executeFlowRun(settings(claim, description));
    expect(code, output).toBe(0);
    const run = await client.getFlowRun(claim.flowRun.id);
    expect(run.state, run.stateMessage ?? "").toBe("Success");
    expect((await client.listTaskRuns(run.id)).map((t) => [t.taskSlug, t.state])).toEqual([["one", "Success"]]);
    expect(await requests("GET", "/api/flow-runs/:id")).toBe(runsRead + 1); // this test's own read, just above
    expect(await requests("GET", "/api/flows/:id")).toBe(flowsRead);
    // Two requests in all: Running, then Success with the task's states.
    expect(await writes()).toEqual([statesBefore! + 2, taskRunsBefore, logsBefore]);

    // It did load the flow and berth (the check below would pass for a process that loaded nothing).
    expect(loaded.some((url) => url.endsWith("/dist/flow-run/execute.js"))).toBe(true);
    expect(loaded.some((url) => url === pathToFileURL(flowModule).href)).toBe(true);
    const heavy = loaded.filter((url) => /node_modules\/(zod|commander)\/|undici/.test(url));
    expect(heavy).toEqual([]);
  });

  it("reads the run and its flow from the server when its agent did not describe them", { timeout: 60_000 }, async () => {
    const { claim } = await claimedRun();
    const flowsRead = await requests("GET", "/api/flows/:id");
    const { code, output } = await executeFlowRun(settings(claim));
    expect(code, output).toBe(0);
    expect((await client.getFlowRun(claim.flowRun.id)).state).toBe("Success");
    expect(await requests("GET", "/api/flows/:id")).toBe(flowsRead + 1);
  });

  it("says what is wrong with a description it cannot read, and runs nothing", { timeout: 60_000 }, async () => {
    const { claim } = await claimedRun();
    const { code, output } = await executeFlowRun({ ...settings(claim), BERTH_FLOW_RUN: "{not json" });
    expect(code).toBe(1);
    expect(output).toMatch(/^berth: berth execute flow-run: its environment is not what an agent sets \(BERTH_FLOW_RUN: not JSON/m);
    expect((await client.getFlowRun(claim.flowRun.id)).state).toBe("Submitted");
  });
});

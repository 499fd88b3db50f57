/**
 * Warm containers (`berth agent --warm-pool N`), for real: a server and agents as processes, the real
 * engine, and the engine's own events as the record of what each container did.
 *
 * - A warm container serves exactly one run and is removed after it; no container ever starts twice.
 * - A new flow version's runs never get a container of the former version's image, and the former one's idle
 *   containers are removed.
 * - A run started warm is cancelled, logged and adopted after an agent restart as one started cold.
 * - The pool never holds more than N idle containers per shape, also across a restart (kill -9) of its agent.
 */
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { AGENT_LABEL, OWNER_LABEL } from "../engine/port.js";
import { WARM_LABEL } from "../agent/warm-pool.js";
import { ContainerTimeline } from "./support/container-timeline.js";
import { containerGone, dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { tearDown, waitFinal, waitState } from "./support/runs.js";
import { until } from "./support/wait.js";

const fixture = (name: string) => path.join(REPO, "test", "fixtures", name);

describe.skipIf(!dockerAvailable)("warm containers on the local Docker engine", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let client: ApiClient;
  let timeline: ContainerTimeline;
  const agents: BerthProcess[] = [];
  /** The most idle warm containers any agent of this suite had at once, sampled every 50 ms. */
  const most = new Map<string, number>();
  let sampling: NodeJS.Timeout | undefined;

  const cli = (args: string[]) => berth([...args, "--api", server.url]);
  const register = async (file: string) => {
    const result = await cli(["register", file]);
    expect(result.code, result.stderr).toBe(0);
  };
  const agent = async (name: string, label: string) => {
    const proc = await startAgent(server.url, [label], name, ["--warm-pool", "1"]);
    agents.push(proc);
    return proc;
  };
  const agentId = async (name: string) => (await client.listAgents()).agents.find((a) => a.name === name)!.id;
  const idle = async (id: string) =>
    (await engine.listContainers({ [OWNER_LABEL]: "true", [AGENT_LABEL]: id })).filter((c) => c.labels[WARM_LABEL] !== undefined && c.name.startsWith("berth-warm-") && c.state === "running");
  const logs = async (runId: string) => (await client.getLogs(runId, { after: 0, limit: 1000 })).logs.map((l) => l.message);
  /** The warm container a run started in, from its log (undefined: it started cold). */
  const warmLine = async (runId: string) => (await logs(runId)).find((m) => m.startsWith("started in warm container "));
  /** The warm container a run was handed to, from its run log (the agent writes that line a moment after). */
  const warmContainerOf = async (runId: string) => {
    let line: string | undefined;
    await until("the run's warm container in its log", async () => (line = await warmLine(runId)) !== undefined, { timeoutMs: 10_000 }).catch(() => undefined);
    return line?.slice("started in warm container ".length);
  };
  const run = async (flowName: string, label: string, parameters: Record<string, unknown> = {}) =>
    (await client.createFlowRun({ flowName, labels: [label], parameters })).flowRun;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-warm-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    timeline = new ContainerTimeline(engine);
    sampling = setInterval(() => {
      void (async () => {
        for (const a of (await client.listAgents()).agents) {
          const n = (await idle(a.id)).length;
          most.set(a.name, Math.max(most.get(a.name) ?? 0, n));
        }
      })().catch(() => undefined);
    }, 50);
  }, 900_000);

  afterAll(async () => {
    clearInterval(sampling);
    await timeline?.stop();
    // Every container of this suite's agents, their idle warm ones included: stopping agents removed them all.
    expect(await tearDown({ agents, server, client, dir })).toEqual([]);
  });

  it("a warm container serves one run only, is removed after it, and the pool stays within its size", { timeout: 300_000 }, async () => {
    const label = `warm-one-${process.pid}`;
    await register(fixture("trivial-flow.ts"));
    await agent(`warm-one-${process.pid}`, label);
    const id = await agentId(`warm-one-${process.pid}`);

    const cold = await run("Trivial Flow", label);
    expect((await waitFinal(client, cold.id)).state).toBe("Success");
    expect(await warmLine(cold.id)).toBeUndefined();
    // The run made its shape hot: one idle container waits for the next.
    await until("a warm container to wait", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });

    const served: string[] = [];
    for (let i = 0; i < 3; i++) {
      await until("a warm container to wait", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });
      const warm = await run("Trivial Flow", label);
      const final = await waitFinal(client, warm.id);
      expect(final.state, final.stateMessage ?? "").toBe("Success");
      const container = await warmContainerOf(warm.id);
      expect(container, (await logs(warm.id)).join("\n")).toBeDefined();
      served.push(container!);
      await containerGone(container!);
    }
    // Three runs, three containers: none served two.
    expect(new Set(served).size).toBe(3);
    await until("the destroy events", () => served.every((c) => timeline.events.some((e) => e.id.startsWith(c) && e.action === "destroy")), { timeoutMs: 10_000 });
    for (const c of served) {
      const events = timeline.events.filter((e) => e.id.startsWith(c)).map((e) => e.action);
      // Started once (idle), died once (its run over), destroyed once.
      expect(events).toEqual(["start", "die", "destroy"]);
    }
    expect(timeline.failure).toBeUndefined();
    expect(most.get(`warm-one-${process.pid}`)).toBe(1);
  });

  it("a new flow version never gets the former version's warm container, which is removed", { timeout: 300_000 }, async () => {
    const label = `warm-version-${process.pid}`;
    const name = `Warm Version ${process.pid}`;
    const source = (await readFile(fixture("trivial-flow.ts"), "utf8")).replace('"Trivial Flow"', JSON.stringify(name));
    const file = path.join(dir, "warm-version.ts");
    await writeFile(file, source);
    await register(file);
    await agent(`warm-version-${process.pid}`, label);
    const id = await agentId(`warm-version-${process.pid}`);
    expect((await waitFinal(client, (await run(name, label)).id)).state).toBe("Success");
    await until("a warm container of version 1", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });
    const former = (await idle(id))[0]!;

    // Version 2: other code, so another storage image.
    await writeFile(file, source.replace("task(() => 1", "task(() => 2"));
    await register(file);
    const next = await run(name, label);
    const final = await waitFinal(client, next.id);
    expect(final.state, final.stateMessage ?? "").toBe("Success");
    expect(final.flowVersion).toBe(2);
    const used = (await warmLine(next.id))?.slice("started in warm container ".length);
    expect(used === undefined || !former.id.startsWith(used)).toBe(true);
    await until("version 1's idle container to be removed", () => timeline.events.some((e) => e.id === former.id && e.action === "destroy"), { timeoutMs: 30_000 });
    // It never ran anything: started once, as it was made.
    expect(timeline.events.filter((e) => e.id === former.id && e.action === "start")).toHaveLength(1);
    expect(await logs(next.id)).not.toContain(`started in warm container ${former.id.slice(0, 12)}`);
  });

  it("a tag that moves (a flow registered again under a fixed imageTag) never gets the former image's warm container", { timeout: 300_000 }, async () => {
    const label = `warm-moving-${process.pid}`;
    const name = `Warm Moving ${process.pid}`;
    const image = `warm-moving-${process.pid}`;
    // One reference for every version: the agent learns that it names another image only from the engine.
    const source = (says: string) =>
      [
        'import { DockerStorage, Flow, task } from "berth";',
        `const flow = new Flow(${JSON.stringify(name)}, { storage: new DockerStorage({ imageName: ${JSON.stringify(image)}, imageTag: "moving" }) });`,
        `flow.addTask(task(() => console.log(${JSON.stringify(says)}), { name: "say" }));`,
        "export default flow;",
      ].join("\n");
    const file = path.join(dir, "warm-moving.ts");
    await writeFile(file, source("code of version 1"));
    await register(file);
    await agent(label, label);
    const id = await agentId(label);
    const first = await run(name, label);
    expect((await waitFinal(client, first.id)).state).toBe("Success");
    await until("a warm container of the first image", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });
    const former = (await idle(id))[0]!;
    // Warm, the first image's code runs from its warm container.
    const again = await run(name, label);
    expect((await waitFinal(client, again.id)).state).toBe("Success");
    expect(await warmContainerOf(again.id)).toBe(former.id.slice(0, 12));
    await until("a warm container of the first image", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });

    // Version 2 is built under the same reference: the tag moves to a new image.
    await writeFile(file, source("code of version 2"));
    await register(file);
    const next = await run(name, label);
    const final = await waitFinal(client, next.id);
    expect(final.state, final.stateMessage ?? "").toBe("Success");
    expect(final.flowVersion).toBe(2);
    const lines = await logs(next.id);
    expect(lines, lines.join("\n")).toContain("code of version 2");
    expect(lines).not.toContain("code of version 1");
    expect(await warmContainerOf(next.id)).not.toBe(former.id.slice(0, 12));
    // Out of date, the former image's idle container is removed, having run nothing.
    await until("the former image's idle container to be removed", () => timeline.events.some((e) => e.id === former.id && e.action === "destroy"), { timeoutMs: 30_000 });
    expect(timeline.events.filter((e) => e.id === former.id && e.action === "start")).toHaveLength(1);
  });

  it("a run started warm is cancelled, logged and adopted after a restart like any other; a restart empties the pool", { timeout: 300_000 }, async () => {
    const label = `warm-sleepy-${process.pid}`;
    const name = `warm-sleepy-${process.pid}`;
    await register(fixture("sleepy-flow.ts"));
    const first = await agent(name, label);
    const id = await agentId(name);
    expect((await waitFinal(client, (await run("Sleepy Flow", label, { seconds: 0 })).id)).state).toBe("Success");

    // Cancelled while Running in a warm container: Cancelled, its container stopped and removed.
    await until("a warm container", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });
    const cancelled = await run("Sleepy Flow", label, { seconds: 120 });
    await waitState(client, cancelled.id, "Running");
    const cancelledIn = await warmContainerOf(cancelled.id);
    expect(cancelledIn).toBeDefined();
    expect((await cli(["cancel", cancelled.id])).code).toBe(0);
    expect((await waitFinal(client, cancelled.id, 15_000)).state).toBe("Cancelled");
    await containerGone(cancelledIn!);

    // Started warm, then its agent is killed: the restarted agent adopts it, and it ends once, Success.
    await until("a warm container", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });
    const adopted = await run("Sleepy Flow", label, { seconds: 6 });
    await waitState(client, adopted.id, "Running");
    const adoptedIn = await warmContainerOf(adopted.id);
    expect(adoptedIn).toBeDefined();
    // Handed the run, the container took its run's name: how the restarted agent will know it.
    expect((await engine.inspectContainer(`berth-run-${adopted.id}`))?.id.startsWith(adoptedIn!)).toBe(true);
    await until("the next warm container", async () => (await idle(id)).length === 1, { timeoutMs: 60_000 });
    const leftIdle = (await idle(id))[0]!;
    await first.signal("SIGKILL");
    agents.splice(agents.indexOf(first), 1);
    await agent(name, label);
    // The idle one from before the restart is removed: nobody would send it a run.
    await until("the idle container from before the restart to go", () => timeline.events.some((e) => e.id === leftIdle.id && e.action === "destroy"), { timeoutMs: 30_000 });
    const final = await waitFinal(client, adopted.id, 60_000);
    expect(final.state, final.stateMessage ?? "").toBe("Success");
    expect(final.epoch).toBe(1);
    const lines = await logs(adopted.id);
    expect(lines.some((m) => m.includes("sleeping 6s"))).toBe(true);
    await containerGone(`berth-run-${adopted.id}`);
    expect(most.get(name)).toBe(1);
  });
});

/**
 * How runs end when things go wrong or are stopped, for real: containers that die without reporting, flows
 * that cannot be loaded, images that are missing, cancellation of a running container, agent drain on
 * SIGTERM, concurrency, every byte a container prints (and keeps printing as it is killed), and storage pushed
 * to and pulled from a real registry.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { containerGone, dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, freePort, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { tearDown, waitFinal, waitState } from "./support/runs.js";
import { httpAnswers, until } from "./support/wait.js";
import type { StoredLog } from "../wire/schema.js";

const fixture = (name: string) => path.join(REPO, "test", "fixtures", name);

describe.skipIf(!dockerAvailable)("flow-run lifecycle on the local Docker engine", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let client: ApiClient;
  const agents: BerthProcess[] = [];
  const cli = (args: string[], env?: Record<string, string>) => berth([...args, "--api", server.url], env ? { env } : {});
  const agent = async (labels: string[], extra: string[] = [], env: Record<string, string> = {}) => {
    const proc = await startAgent(server.url, labels, `${labels.join("-")}-${process.pid}`, extra, env);
    agents.push(proc);
    return proc;
  };
  const register = async (file: string, env?: Record<string, string>) => {
    const result = await cli(["register", fixture(file)], env);
    expect(result.code, result.stderr).toBe(0);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-lifecycle-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
  }, 900_000);

  afterAll(async () => {
    expect(await tearDown({ agents, server, client, dir })).toEqual([]);
  });

  it("a container that exits without reporting a final state fails the run with its exit code and output", async () => {
    await register("exits-abruptly.ts");
    await agent(["abrupt"]);
    const { flowRun } = await client.createFlowRun({ flowName: "Exits Abruptly", labels: ["abrupt"], parameters: {} });
    const run = await waitFinal(client, flowRun.id);
    expect(run.state).toBe("Failed");
    expect(run.stateMessage).toContain("exited with code 3 without reporting a final state");
    expect(run.stateMessage).toContain("about to exit without a word");
  });

  it("a flow that cannot be loaded in its container ends Failed, saying why", async () => {
    await register("unloadable-in-container.ts");
    await agent(["unloadable"]);
    const { flowRun } = await client.createFlowRun({ flowName: "Unloadable In Container", labels: ["unloadable"], parameters: {} });
    const run = await waitFinal(client, flowRun.id);
    expect(run.state).toBe("Failed");
    expect(run.stateMessage).toMatch(/could not load flow "Unloadable In Container" from storage at \/opt\/berth\/flows\/unloadable-in-container\.mjs: .*this flow refuses to load in a container/);
  });

  it("an image it can neither pull nor build fails the run, naming the image and why", async () => {
    await agent(["never"], ["--pull-policy", "never"]);
    // As an older berth registered flows: an image, and no build context to build it from.
    const image = `berth-test-absent-${process.pid}:1`;
    const { flow } = await client.registerFlow({
      name: `Absent Image ${process.pid}`,
      storage: { type: "docker", image, flows: { [`Absent Image ${process.pid}`]: "/opt/berth/flows/absent.mjs" } },
      environment: { type: "LocalEnvironment", className: "LocalEnvironment", labels: [], metadata: {} },
      contentHash: `absent-${process.pid}`,
    });
    const { flowRun } = await client.createFlowRun({ flowId: flow.id, labels: ["never"], parameters: {} });
    const run = await waitFinal(client, flowRun.id);
    expect(run.state).toBe("Failed");
    expect(run.stateMessage).toContain(`image ${image} is not on this host and the pull policy is "never", and its flow was registered without a build context`);
  });

  it("cancelling a Running run stops its container and ends it Cancelled, through the cancel watch, not the heartbeat", async () => {
    await register("sleepy-flow.ts");
    // The agent's and the container's heartbeats 25 s apart (within the lease, and the run heartbeat timeout): a
    // cancel that waited for either would miss the 15 s below.
    await agent(["cancel"], [], { BERTH_AGENT_HEARTBEAT_INTERVAL: "25s", BERTH_AGENT_RUN_HEARTBEAT_INTERVAL: "25s" });
    const { flowRun } = await client.createFlowRun({ flowName: "Sleepy Flow", labels: ["cancel"], parameters: { seconds: 120 } });
    await waitState(client, flowRun.id, "Running");
    const cancelled = await cli(["cancel", flowRun.id]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toContain("Cancelling");
    const run = await waitFinal(client, flowRun.id, 15_000);
    expect(run.state).toBe("Cancelled");
    const tasks = await client.listTaskRuns(flowRun.id);
    expect(tasks.find((t) => t.taskName === "sleep")?.state).toBe("Cancelled");
    await containerGone(`berth-run-${flowRun.id}`);
  });

  it("every line the flow writes becomes run logs once: console, stdout and stderr writes, a child process", async () => {
    await register("output-flow.ts");
    await agent(["output"]);
    const { flowRun } = await client.createFlowRun({ flowName: "Output Flow", labels: ["output"], parameters: {} });
    expect((await waitFinal(client, flowRun.id)).state).toBe("Success");
    // The agent ships the container's own output just after the exit.
    const expected = ["console line from the task", "raw stdout line", "raw stderr line", "child process echo"];
    let logs: StoredLog[] = [];
    await until("every line in the run's logs", async () => {
      logs = (await client.getLogs(flowRun.id, { after: 0, limit: 1000 })).logs;
      return expected.every((text) => logs.some((l) => l.message === text));
    });
    for (const text of expected) expect(logs.filter((l) => l.message === text), text).toHaveLength(1);
    const byText = new Map(logs.map((l) => [l.message, l]));
    expect(byText.get("console line from the task")).toMatchObject({ task: "speak", stream: null, level: "info" });
    expect(byText.get("raw stdout line")).toMatchObject({ task: null, stream: "stdout" });
    expect(byText.get("raw stderr line")).toMatchObject({ task: null, stream: "stderr", level: "warn" });
    expect(byText.get("child process echo")).toMatchObject({ stream: "stdout" });
    // No framing reaches a log line.
    expect(logs.filter((l) => l.message.includes("\u001b"))).toEqual([]);
    const shown = await cli(["logs", flowRun.id]);
    expect(shown.stdout).toMatch(/info {2}\[stdout\] raw stdout line/);
    // run --watch waits for the agent to send the last of the output (it says so by its cleanup) before it ends.
    const watched = await cli(["run", "Output Flow", "--label", "output", "--watch"]);
    expect(watched.code, watched.stderr).toBe(0);
    for (const text of ["[speak] console line from the task", "[stdout] raw stdout line", "[stderr] raw stderr line", "[stdout] child process echo"]) {
      expect(watched.stdout.split("\n").filter((l) => l.endsWith(text)), text).toHaveLength(1);
    }
  });

  it("a container killed mid-run loses nothing it printed: the agent ships what the runtime could not", async () => {
    await register("output-flow.ts");
    await agent(["killed"]);
    const { flowRun } = await client.createFlowRun({ flowName: "Output Flow", labels: ["killed"], parameters: { mode: "hang" } });
    // The raw line comes through the agent; by then the console line before it is in the container's output.
    await until("the last raw words in the logs", async () => (await client.getLogs(flowRun.id, { after: 0, limit: 1000 })).logs.some((l) => l.message === "last raw words before the kill"), { timeoutMs: 60_000 });
    const before = (await client.getLogs(flowRun.id, { after: 0, limit: 1000 })).logs;
    expect(before.some((l) => l.message === "last console words before the kill"), "the runtime, blocked, cannot have shipped it").toBe(false);
    await promisify(execFile)("docker", ["kill", `berth-run-${flowRun.id}`]);
    expect((await waitFinal(client, flowRun.id)).state).toBe("Failed");
    let logs: StoredLog[] = [];
    await until("the recovered console line", async () => {
      logs = (await client.getLogs(flowRun.id, { after: 0, limit: 1000 })).logs;
      return logs.some((l) => l.message === "last console words before the kill");
    });
    for (const text of ["console line from the task", "raw stdout line", "child process echo", "last console words before the kill", "last raw words before the kill"]) {
      expect(logs.filter((l) => l.message === text), text).toHaveLength(1);
    }
    expect(logs.find((l) => l.message === "last console words before the kill")).toMatchObject({ task: "speak", level: "info" });
  });

  it("a run over its flow's run timeout is failed by the agent, which stops its container", async () => {
    await register("timeout-flow.ts");
    await agent(["timeout"]);
    const { flowRun } = await client.createFlowRun({ flowName: "Timeout Flow", labels: ["timeout"], parameters: {} });
    const run = await waitFinal(client, flowRun.id, 60_000);
    expect(run.state).toBe("Failed");
    expect(run.stateMessage).toContain("exceeded its run timeout of 2 s");
    expect(Date.parse(run.endedAt!) - Date.parse(run.startedAt!)).toBeLessThan(15_000);
    await containerGone(`berth-run-${flowRun.id}`);
  });

  it("on SIGTERM an agent stops claiming and lets its running flow run finish, then exits 0", async () => {
    await register("sleepy-flow.ts");
    const draining = await agent(["drain"]);
    const { flowRun } = await client.createFlowRun({ flowName: "Sleepy Flow", labels: ["drain"], parameters: { seconds: 3 } });
    await waitState(client, flowRun.id, "Running");
    const exit = draining.stop(60_000);
    await draining.waitFor(/agent draining/);
    const late = await client.createFlowRun({ flowName: "Sleepy Flow", labels: ["drain"], parameters: { seconds: 1 } });
    expect(await exit).toBe(0);
    expect((await client.getFlowRun(flowRun.id)).state).toBe("Success");
    expect((await client.getFlowRun(late.flowRun.id)).state).toBe("Scheduled");
    await client.cancelFlowRun(late.flowRun.id);
  });

  it("an agent with --concurrency 2 runs two flow runs at once", async () => {
    await register("sleepy-flow.ts");
    await agent(["pair"], ["--concurrency", "2"]);
    const created = await Promise.all(
      [0, 1].map(() => client.createFlowRun({ flowName: "Sleepy Flow", labels: ["pair"], parameters: { seconds: 2 } })),
    );
    const [a, b] = await Promise.all(created.map((c) => waitFinal(client, c.flowRun.id)));
    expect([a!.state, b!.state]).toEqual(["Success", "Success"]);
    // Each ran while the other was running.
    expect(Date.parse(a!.startedAt!)).toBeLessThan(Date.parse(b!.endedAt!));
    expect(Date.parse(b!.startedAt!)).toBeLessThan(Date.parse(a!.endedAt!));
  });

  it("runs a flow kept in LocalStorage: the agent mounts the directory into the berth image", async () => {
    const localDir = path.join(dir, "local-flows");
    const registered = await cli(["register", fixture("local-storage-flow.ts")], { BERTH_TEST_LOCAL_DIR: localDir });
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stdout).toContain(`storage: ${localDir}`);
    await agent(["local"], ["--allow-local-dir", localDir]);
    const { flowRun } = await client.createFlowRun({ flowName: "Local Storage Flow", labels: ["local"], parameters: {} });
    const run = await waitFinal(client, flowRun.id);
    expect(run.state, run.stateMessage ?? "").toBe("Success");
    const { logs } = await client.getLogs(flowRun.id, { after: 0, limit: 100 });
    expect(logs.map((l) => l.message)).toContain("ran from local storage as process 1");

    // A version kept somewhere the agent does not allow (here through a symlink inside the allowed
    // directory) fails at once, saying why, and nothing is mounted or started.
    const elsewhere = path.join(dir, "elsewhere");
    await mkdir(elsewhere, { recursive: true });
    await symlink(elsewhere, path.join(localDir, "escape"));
    const sneaky = await cli(["register", fixture("local-storage-flow.ts")], { BERTH_TEST_LOCAL_DIR: path.join(localDir, "escape") });
    expect(sneaky.code, sneaky.stderr).toBe(0);
    const refused = await client.createFlowRun({ flowName: "Local Storage Flow", labels: ["local"], parameters: {} });
    const failed = await waitFinal(client, refused.flowRun.id);
    expect(failed.state).toBe("Failed");
    expect(failed.stateMessage).toContain(`the flow's LocalStorage directory ${path.join(localDir, "escape")} (${elsewhere}, after symlinks) is not allowed`);
    expect(failed.stateMessage).toContain("--allow-local-dir");
    expect(await engine.inspectContainer(`berth-run-${refused.flowRun.id}`)).toBeUndefined();
    expect((await client.listFlowRunStates(refused.flowRun.id)).map((s) => s.state)).toEqual(["Scheduled", "Submitted", "Failed"]);
  });

  describe("with a real registry on 127.0.0.1", () => {
    let registry: ChildProcess;
    let registryUrl: string;

    beforeAll(async () => {
      const port = await freePort();
      registryUrl = `127.0.0.1:${port}/`;
      const config = path.join(dir, "registry.yml");
      await writeFile(
        config,
        `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(dir, "registry")}\nhttp:\n  addr: 127.0.0.1:${port}\n`,
      );
      registry = spawn("docker-registry", ["serve", config], { stdio: "ignore" });
      await httpAnswers(`http://127.0.0.1:${port}/v2/`);
    });

    afterAll(async () => {
      if (registry && registry.exitCode === null) {
        registry.kill("SIGTERM");
        await once(registry, "exit");
      }
    });

    it("register pushes the storage image; an agent with pull policy always pulls and runs it", async () => {
      const registered = await cli(["register", fixture("registry-flow.ts")], { BERTH_TEST_REGISTRY: registryUrl });
      expect(registered.code, registered.stderr).toBe(0);
      expect(registered.stdout).toContain("pushed");
      const { flows } = await client.listFlows();
      const flow = flows.find((f) => f.name === "Registry Flow")!;
      const image = flow.storage.type === "docker" ? flow.storage.image : "";
      expect(image.startsWith(registryUrl)).toBe(true);
      await engine.removeImage(image);
      expect(await engine.imageExists(image)).toBe(false);

      await agent(["pull"], ["--pull-policy", "always"]);
      const { flowRun } = await client.createFlowRun({ flowName: "Registry Flow", labels: ["pull"], parameters: {} });
      const run = await waitFinal(client, flowRun.id);
      expect(run.state, run.stateMessage ?? "").toBe("Success");
      expect(await engine.imageExists(image)).toBe(true);
      const { logs } = await client.getLogs(flowRun.id, { after: 0, limit: 100 });
      expect(logs.map((l) => l.message)).toContain("pulled and ran");
      // The agent removes the container just after the run ends; only then can the image go.
      await containerGone(`berth-run-${flowRun.id}`);
      await engine.removeImage(image);
    });

    it("a push to an unreachable registry fails registration with an error naming the registry", async () => {
      const deadRegistry = `127.0.0.1:${await freePort()}/`;
      const result = await cli(["register", fixture("registry-flow.ts")], { BERTH_TEST_REGISTRY: deadRegistry });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(deadRegistry.replace(/\/$/, ""));
      expect(result.stderr.trim().split("\n").at(-1)).toMatch(/^berth: /);
    });
  });
});

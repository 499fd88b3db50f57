/**
 * The whole path, for real: a berth server and Docker agents as processes, flows registered with the CLI
 * (storage images built on the local engine, healthchecked), runs executed in containers.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import type { FlowRun } from "../wire/schema.js";
import { dockerAvailable } from "./support/docker.js";
import { BerthProcess, REPO, berth, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { flowBody } from "./support/fixtures.js";
import { tearDown, waitFinal } from "./support/runs.js";
import { until } from "./support/wait.js";

const fixture = (name: string) => path.join(REPO, "test", "fixtures", name);
const execFileAsync = promisify(execFile);

describe.skipIf(!dockerAvailable)("berth end to end on the local Docker engine", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let plain: BerthProcess;
  let client: ApiClient;
  const cli = (args: string[]) => berth([...args, "--api", server.url]);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-e2e-"));
    // The berth image is built once, up front, so individual tests are not charged for it.
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    plain = await startAgent(server.url, [], `plain-${process.pid}`);
  }, 900_000);

  afterAll(async () => {
    // Every agent drains first: no container berth created may remain.
    expect(await tearDown({ agents: plain ? [plain] : [], server, client, dir })).toEqual([]);
  });

  it("runs flows in hardened containers: an unprivileged user, no capabilities, no new privileges, bounded", async () => {
    const registered = await cli(["register", fixture("hardening-flow.ts"), "--no-push"]);
    expect(registered.code, registered.stderr).toBe(0);
    const agent = await startAgent(server.url, ["hardening"], `hardening-${process.pid}`, ["--keep-containers", "--memory", "256m", "--cpus", "0.5", "--pids-limit", "200"]);
    try {
      const { flowRun } = await client.createFlowRun({ flowName: "Hardening Flow", labels: ["hardening"], parameters: {} });
      const run = await waitFinal(client, flowRun.id);
      expect(run.state, run.stateMessage ?? "").toBe("Success");
      const messages = (await client.getLogs(flowRun.id, { after: 0, limit: 100 })).logs.map((l) => l.message);
      expect(messages).toContain("uid 10001 gid 10001");
      expect(messages).toContain("CapEff 0000000000000000 CapBnd 0000000000000000 NoNewPrivs 1");
      const inspected = JSON.parse((await execFileAsync("docker", ["inspect", `berth-run-${flowRun.id}`])).stdout)[0];
      expect(inspected.Config.User).toBe("10001:10001");
      expect(inspected.HostConfig).toMatchObject({
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges"],
        PidsLimit: 200,
        Memory: 256 * 1024 * 1024,
        MemorySwap: 256 * 1024 * 1024,
        NanoCpus: 500_000_000,
        Privileged: false,
      });
      // Never the Docker socket, nor any other host path, for a flow in an image.
      expect(inspected.HostConfig.Binds ?? []).toEqual([]);
      expect(JSON.stringify(inspected.Mounts)).not.toContain("docker.sock");
      await execFileAsync("docker", ["rm", "-f", `berth-run-${flowRun.id}`]);

      // A flow that asks for root fails on an agent that does not allow it, saying so, and nothing starts.
      const rootFlow = await berth(["register", fixture("hardening-flow.ts"), "--no-push", "--api", server.url], {
        env: { BERTH_TEST_FLOW_NAME: "Root Flow", BERTH_TEST_RUN_AS: "root" },
      });
      expect(rootFlow.code, rootFlow.stderr).toBe(0);
      const refused = await client.createFlowRun({ flowName: "Root Flow", labels: ["hardening"], parameters: {} });
      const failed = await waitFinal(client, refused.flowRun.id);
      expect(failed.state).toBe("Failed");
      expect(failed.stateMessage).toContain('flow "Root Flow" asks to run as root (runAs: "root"), which this agent does not allow: start an agent with --allow-root');
      await expect(execFileAsync("docker", ["inspect", `berth-run-${refused.flowRun.id}`])).rejects.toThrow(/No such object/);
    } finally {
      await agent.stop();
    }
    // An agent that allows root runs it as root, still without capabilities, with the flow's own limits.
    const rooted = await startAgent(server.url, ["hardening"], `rooted-${process.pid}`, ["--keep-containers", "--allow-root", "--memory", "256m"]);
    try {
      const { flowRun } = await client.createFlowRun({ flowName: "Root Flow", labels: ["hardening"], parameters: {} });
      const run = await waitFinal(client, flowRun.id);
      expect(run.state, run.stateMessage ?? "").toBe("Success");
      const messages = (await client.getLogs(flowRun.id, { after: 0, limit: 100 })).logs.map((l) => l.message);
      expect(messages).toContain("uid 0 gid 0");
      expect(messages).toContain("CapEff 0000000000000000 CapBnd 0000000000000000 NoNewPrivs 1");
      const inspected = JSON.parse((await execFileAsync("docker", ["inspect", `berth-run-${flowRun.id}`])).stdout)[0];
      expect(inspected.Config.User).toBe("0:0");
      expect(inspected.HostConfig).toMatchObject({ CapDrop: ["ALL"], PidsLimit: 100, Memory: 128 * 1024 * 1024 });
      await execFileAsync("docker", ["rm", "-f", `berth-run-${flowRun.id}`]);
    } finally {
      await rooted.stop();
    }
  });

  it("a flow's code, with the run token it holds, can touch nothing but its own run; secrets reach it and no log", async () => {
    const secret = `probe-secret-${process.pid}-value`;
    await client.setSecret("PROBE_KEY", secret);
    await client.setSecret("TARGET_KEY", `target-secret-${process.pid}`);
    const target = await client.registerFlow(flowBody({ name: `Probe Target ${process.pid}`, labels: ["nobody"], tasks: [{ slug: "k", name: "k", secret: "TARGET_KEY" }] }));
    const targetRun = (await client.createFlowRun({ flowId: target.flow.id, labels: ["nobody"], parameters: {} })).flowRun;
    const registered = await cli(["register", fixture("probe-flow.ts"), "--no-push"]);
    expect(registered.code, registered.stderr).toBe(0);
    // The agent runs with its own agent token, not the admin's.
    const agentName = `probe-${process.pid}`;
    const agentToken = (await client.createToken({ role: "agent", name: agentName })).token;
    const agent = await startAgent(server.url, ["probe"], agentName, [], { BERTH_API_TOKEN: agentToken });
    try {
      const { flowRun } = await client.createFlowRun({ flowName: "Probe Flow", labels: ["probe"], parameters: { target: targetRun.id } });
      let messages: string[] = [];
      await until("the probe to finish its attempts", async () => {
        messages = (await client.getLogs(flowRun.id, { after: 0, limit: 1000 })).logs.map((l) => l.message);
        return messages.includes("probe done");
      }, { timeoutMs: 120_000 });
      // While it runs: hardened, and holding only its run token.
      const inspected = JSON.parse((await execFileAsync("docker", ["inspect", `berth-run-${flowRun.id}`])).stdout)[0];
      expect(inspected.State.Running).toBe(true);
      expect(inspected.Config.User).toBe("10001:10001");
      expect(inspected.HostConfig).toMatchObject({ CapDrop: ["ALL"], SecurityOpt: ["no-new-privileges"], Privileged: false });
      const env = (inspected.Config.Env as string[]).join("\n");
      expect(env).toMatch(new RegExp(`^BERTH_API_TOKEN=berth_run\\.`, "m"));
      for (const leaked of [TEST_TOKEN, agentToken, secret]) expect(env).not.toContain(leaked);

      const run = await waitFinal(client, flowRun.id);
      expect(run.state, run.stateMessage ?? "").toBe("Success");
      expect(messages).toEqual(
        expect.arrayContaining([
          "probe cancel another run: 403 BERTH_E_FORBIDDEN",
          "probe register a flow: 403 BERTH_E_FORBIDDEN",
          "probe heartbeat as its agent: 403 BERTH_E_FORBIDDEN",
          "probe claim as its agent: 403 BERTH_E_FORBIDDEN",
          "probe write another run's logs: 403 BERTH_E_FORBIDDEN",
          "probe read another run's secrets: 403 BERTH_E_FORBIDDEN",
          "probe read a secret its flow does not declare: 403 BERTH_E_FORBIDDEN",
          "probe list runs: 403 BERTH_E_FORBIDDEN",
          "probe call without its token: 401 BERTH_E_UNAUTHORIZED",
          "the key is [redacted]",
          "the key is in the environment: false",
        ]),
      );
      // Nothing it tried took effect, and the secret is in no log: the run's, the server's or the agent's.
      expect((await client.getFlowRun(targetRun.id)).state).toBe("Scheduled");
      expect((await client.getLogs(targetRun.id, { after: 0, limit: 10 })).logs).toEqual([]);
      expect((await client.listFlows()).flows.map((f) => f.name)).not.toContain("Probe Takeover");
      expect((await client.listAgents()).agents.find((a) => a.name === agentName)?.status).toBe("online");
      const allLogs = JSON.stringify((await client.getLogs(flowRun.id, { after: 0, limit: 1000 })).logs);
      for (const output of [allLogs, server.proc.output, agent.output]) expect(output).not.toContain(secret);
    } finally {
      await agent.stop();
      await client.cancelFlowRun(targetRun.id).catch(() => undefined);
    }
  }, 240_000);

  it("an agent runs only the images its --allow-image patterns allow, and says so for the others", async () => {
    const registered = await berth(["register", fixture("hardening-flow.ts"), "--no-push", "--api", server.url], {
      env: { BERTH_TEST_FLOW_NAME: "Image Flow", BERTH_TEST_LABEL: "images" },
    });
    expect(registered.code, registered.stderr).toBe(0);
    const flow = (await client.listFlows()).flows.find((f) => f.name === "Image Flow")!;
    expect(flow.storage.type).toBe("docker");
    const image = flow.storage.type === "docker" ? flow.storage.image : "";
    const repository = image.slice(0, image.lastIndexOf(":"));
    const strict = await startAgent(server.url, ["images"], `strict-${process.pid}`, ["--allow-image", "registry.example/**", "--allow-image", "node:*"]);
    try {
      const { flowRun } = await client.createFlowRun({ flowName: "Image Flow", labels: ["images"], parameters: {} });
      const failed = await waitFinal(client, flowRun.id);
      expect(failed.state).toBe("Failed");
      expect(failed.stateMessage).toContain(`image ${image} is not allowed on this agent: it matches none of its --allow-image patterns (registry.example/**, node:*)`);
    } finally {
      await strict.stop();
    }
    const fitting = await startAgent(server.url, ["images"], `fitting-${process.pid}`, ["--allow-image", `${repository}:*`]);
    try {
      const { flowRun } = await client.createFlowRun({ flowName: "Image Flow", labels: ["images"], parameters: {} });
      const run = await waitFinal(client, flowRun.id);
      expect(run.state, run.stateMessage ?? "").toBe("Success");
    } finally {
      await fitting.stop();
    }
  });

  it("runs the seed's custom-environment example in a container, ending Success", async () => {
    const registered = await cli(["register", path.join(REPO, "examples", "custom-environment.ts"), "--no-push"]);
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stdout).toMatch(/flow "Custom Environment Example" (version 1|is unchanged)/);

    const run = await cli(["run", "Custom Environment Example", "--watch"]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const states = [...run.stdout.matchAll(/^state: (\w+)/gm)].map((m) => m[1]);
    expect(states).toEqual(["Scheduled", "Submitted", "Running", "Success"]);
    expect(run.stdout).toMatch(/flow run \S+: Success/);
    expect(run.stdout).toMatch(/\[output_value\] Example!/);
    // Where the run's time went: every step up to the flow's end is known when the watch ends.
    expect(run.stdout).toMatch(/^phases: queued \d+ ms · image \d+ ms \(present\) · create \d+ ms · start \d+ ms · runtime [\d.]+ m?s · flow [\d.]+ m?s/m);

    const runId = /flow run (\S+): Success/.exec(run.stdout)![1]!;
    const { logs } = await client.getLogs(runId, { after: 0, limit: 1000 });
    const messages = logs.map((l) => l.message);
    // setup and execute ran in the container: berth's flow-run process there is process 1 of the container's own
    // PID namespace, which no process on the host (where init is process 1) can be.
    expect(messages.find((m) => m.startsWith("setup ran as process "))).toMatch(/^setup ran as process 1 on /);
    expect(messages.find((m) => m.startsWith("execute ran as process "))).toMatch(/^execute ran as process 1 on /);
    // The inspection commands show the same run.
    const runs = await cli(["runs", "--flow", "Custom Environment Example"]);
    expect(runs.code, runs.stderr).toBe(0);
    expect(runs.stdout).toMatch(new RegExp(`${runId}\\s+Custom Environment Example v1\\s+Success`));
    const runsJson = await cli(["runs", "--json", "--state", "Success"]);
    const listed = (JSON.parse(runsJson.stdout) as FlowRun[]).find((r) => r.id === runId);
    expect(listed?.phases).toMatchObject({ imageSource: "present", claimed: expect.any(String), containerStarted: expect.any(String), runtimeUp: expect.any(String) });
    const flowsOut = await cli(["flows"]);
    expect(flowsOut.stdout).toMatch(/Custom Environment Example\s+1\s+\S+\s+-\s+MyCustomEnvironment \(custom\)/);
    for (const args of [["logs", runId], ["logs", runId, "--follow"]]) {
      const logsOut = await cli(args);
      expect(logsOut.code, logsOut.stderr).toBe(0);
      expect(logsOut.stdout).toMatch(/info  \[output_value\] Example!/);
    }
    const unknown = await cli(["logs", "no-such-run"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^berth: .*no-such-run/);

    const tasks = await client.listTaskRuns(runId);
    expect(tasks.map((t) => [t.taskName, t.state]).sort()).toEqual([
      ["get_value", "Success"],
      ["output_value", "Success"],
    ]);
    const flows = await client.listFlows();
    const flow = flows.flows.find((f) => f.name === "Custom Environment Example")!;
    // Only the serialized environment reaches the server, never its code.
    expect(flow.environment).toEqual({ type: "custom", className: "MyCustomEnvironment", labels: [], metadata: {} });
    expect(flow.storage).toMatchObject({ type: "docker", image: "localhost:5000/dev/custom-env-flow:0.1.0" });
  });

  it("re-registering an unchanged flow rebuilds nothing and makes no new version", async () => {
    const first = await cli(["register", fixture("trivial-flow.ts")]);
    expect(first.code, first.stderr).toBe(0);
    const again = await cli(["register", fixture("trivial-flow.ts")]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/is unchanged: version 1/);
    expect(again.stdout).toContain("(reused)");
  });

  it("calls onStart before and onExit after the flow, in the container, for a custom class named like a built-in", async () => {
    const outside = await mkdtemp(path.join(os.tmpdir(), "berth-flow-elsewhere-"));
    const file = path.join(outside, "callbacks.ts");
    await copyFile(fixture("callbacks-flow.ts"), file);
    const registered = await cli(["register", file]);
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stderr).toMatch(/warning: .*LocalEnvironment/);
    await rm(outside, { recursive: true, force: true });

    const { flows } = await client.listFlows();
    const flow = flows.find((f) => f.name === "Callbacks Flow")!;
    expect(flow.environment).toEqual({ type: "custom", className: "LocalEnvironment", labels: ["callbacks"], metadata: { team: "platform" } });
    expect(flow.labels).toEqual(["callbacks"]);

    const agent = await startAgent(server.url, ["callbacks"], `callbacks-${process.pid}`);
    try {
      const run = await cli(["run", "Callbacks Flow", "--param", "greeting=ahoy", "--watch"]);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      const runId = /flow run (\S+): Success/.exec(run.stdout)![1]!;
      const messages = (await client.getLogs(runId, { after: 0, limit: 1000 })).logs.map((l) => l.message);
      const index = (prefix: string) => messages.findIndex((m) => m.startsWith(prefix));
      expect(messages.find((m) => m.startsWith("custom setup on"))).toContain("as process 1");
      expect(index("onStart called")).toBeGreaterThanOrEqual(0);
      expect(index("onStart called")).toBeLessThan(index("shouting AHOY!"));
      expect(index("shouting AHOY!")).toBeLessThan(index("onExit called"));
    } finally {
      await agent.stop();
    }
  });

  it("a failing task shows its error and stack in the logs and the watch, and the run names it", async () => {
    const registered = await cli(["register", fixture("failing-flow.ts")]);
    expect(registered.code, registered.stderr).toBe(0);
    const run = await cli(["run", "Failing Flow", "--watch"]);
    // 1: the run ended Failed (berth itself did what it was asked).
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/^berth: flow run \S+ ended Failed: Task "first" failed: boom-7/m);
    const runId = /flow run (\S+): Failed/.exec(run.stdout)![1]!;
    // The cause, not the downstream task it kept from running.
    expect(run.stdout).toMatch(/^state: Failed \(Task "first" failed: boom-7; reference tasks that did not succeed: "second" \(TriggerFailed\)/m);
    const tasksLine = /^tasks: (.*)$/m.exec(run.stdout)?.[1]?.split(", ").sort();
    expect(tasksLine).toEqual(["first=Failed", "flaky=Failed", "second=TriggerFailed"]);
    for (const out of [run.stdout, (await cli(["logs", runId])).stdout]) {
      expect(out).toMatch(/ error \[first\] Task "first" failed: boom-7\n\s+at /);
      expect(out).toMatch(/ warn  \[flaky\] Task "flaky" failed \(attempt 1 of 2\); retrying: flaky\n\s+at /);
      expect(out).toMatch(/ error \[flaky\] Task "flaky" failed \(attempt 2 of 2\): flaky\n\s+at /);
    }
    const tasks = Object.fromEntries((await client.listTaskRuns(runId)).map((t) => [t.taskSlug, t]));
    expect(tasks.first).toMatchObject({ taskName: "first", state: "Failed", message: "boom-7" });
    expect(tasks.second?.state).toBe("TriggerFailed");
    expect(tasks.flaky).toMatchObject({ state: "Failed", attempt: 2 });
  });

  it("two agents with different labels each get only their runs", async () => {
    const registered = await cli(["register", fixture("trivial-flow.ts")]);
    expect(registered.code, registered.stderr).toBe(0);
    const red = await startAgent(server.url, ["red"], `red-${process.pid}`);
    const blue = await startAgent(server.url, ["blue"], `blue-${process.pid}`);
    try {
      const { agents } = await client.listAgents();
      const id = (name: string) => agents.find((a) => a.name === name)!.id;
      const created = await Promise.all(
        ["red", "blue", "red", "blue"].map((label) => client.createFlowRun({ flowName: "Trivial Flow", labels: [label], parameters: {} })),
      );
      const finals = await Promise.all(created.map((c) => waitFinal(client, c.flowRun.id)));
      finals.forEach((run, i) => {
        expect(run.state).toBe("Success");
        expect(run.agentId).toBe(id(`${run.labels[0]}-${process.pid}`));
        expect(run.labels).toEqual([["red", "blue", "red", "blue"][i]]);
      });
    } finally {
      await Promise.all([red.stop(), blue.stop()]);
    }
  });

  it("a Scheduled run no agent can take says why, and cancelling it makes it Cancelled", async () => {
    await cli(["register", fixture("trivial-flow.ts")]);
    const { flowRun } = await client.createFlowRun({ flowName: "Trivial Flow", labels: ["nobody-has-this"], parameters: {} });
    const view = await client.getFlowRun(flowRun.id);
    expect(view.state).toBe("Scheduled");
    expect(view.pickup).toContain("nobody-has-this");
    const cancelled = await cli(["cancel", flowRun.id]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toContain("Cancelled");
    expect((await client.getFlowRun(flowRun.id)).state).toBe("Cancelled");
  });

  it("bad flow files get clear one-line errors", async () => {
    const syntax = await cli(["register", fixture("bad-syntax.ts")]);
    expect(syntax.code).toBe(2);
    expect(syntax.stderr).toMatch(/bad-syntax\.ts:3:\d+: error: Expected/);
    const noExport = await cli(["register", fixture("no-export.ts")]);
    expect(noExport.code).toBe(2);
    expect(noExport.stderr).toContain("exports no Flow");
    const throws = await cli(["register", fixture("throws-on-load.ts")]);
    expect(throws.code).toBe(2);
    expect(throws.stderr).toContain("the flow's module failed on purpose");
    const missing = await cli(["register", path.join(os.tmpdir(), "no-such-flow-file.ts")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("flow file not found");
    for (const r of [syntax, noExport, throws, missing]) expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it("the build-time healthcheck names the failing check and its cause", async () => {
    const result = await cli(["register", fixture("missing-dependency.ts")]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/healthcheck .*failed/);
    expect(result.stderr).toContain('environment dependency "berth-test-module-that-does-not-exist"');
    const { flows } = await client.listFlows();
    expect(flows.some((f) => f.name === "Missing Dependency Flow")).toBe(false);
  });

  it("client commands against a dead server say so in one line", async () => {
    const result = await berth(["flows", "--api", "http://127.0.0.1:9"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot reach the berth server at http:\/\/127\.0\.0\.1:9/);
  });

});

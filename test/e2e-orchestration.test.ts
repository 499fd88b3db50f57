/**
 * Orchestration on the real Docker engine: a schedule's runs start at their slots and reach Success, pause
 * and resume take effect at once, concurrency limits hold across two agents (proved from the state
 * history, not from a sample), and a cleanup task with trigger "allFinished" runs after a failure.
 */
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import type { FlowRun } from "../wire/schema.js";
import { dockerAvailable } from "./support/docker.js";
import { BerthProcess, REPO, berth, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { tearDown, waitFinal } from "./support/runs.js";
import { until } from "./support/wait.js";

const fixture = (name: string) => path.join(REPO, "test", "fixtures", name);

/** Each run's [claimed, ended] span, from its state history. */
async function spans(client: ApiClient, runs: readonly FlowRun[]): Promise<{ id: string; from: number; to: number }[]> {
  return Promise.all(
    runs.map(async (run) => {
      const states = await client.listFlowRunStates(run.id);
      const claimed = states.find((s) => s.state === "Submitted");
      const ended = states.find((s) => s.state === "Success" || s.state === "Failed" || s.state === "Cancelled");
      if (!claimed || !ended) throw new Error(`run ${run.id} has no claim or no end in its history: ${JSON.stringify(states)}`);
      return { id: run.id, from: Date.parse(claimed.at), to: Date.parse(ended.at) };
    }),
  );
}

/** Pairs of runs whose spans overlap: two holding a slot at the same time. */
function overlaps(all: readonly { id: string; from: number; to: number }[]): string[] {
  const found: string[] = [];
  for (const a of all) for (const b of all) if (a.id < b.id && a.from < b.to && b.from < a.to) found.push(`${a.id} and ${b.id}`);
  return found;
}

describe.skipIf(!dockerAvailable)("orchestration on the local Docker engine", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let client: ApiClient;
  const agents: BerthProcess[] = [];
  const tag = process.pid;
  const cli = (args: string[], env?: Record<string, string>) => berth([...args, "--api", server.url], env ? { env } : {});
  const agent = async (labels: string[], name: string, extra: string[] = []) => {
    const proc = await startAgent(server.url, labels, `${name}-${tag}`, extra);
    agents.push(proc);
    return proc;
  };
  const register = async (file: string, env: Record<string, string>) => {
    const result = await cli(["register", fixture(file)], env);
    expect(result.code, result.stderr).toBe(0);
    return result;
  };
  const runsOf = async (flowName: string) => (await client.listFlowRuns({ flowName, limit: 1000 })).flowRuns;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-orchestration-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
  }, 900_000);

  afterAll(async () => {
    expect(await tearDown({ agents, server, client, dir })).toEqual([]);
  });

  it("runs an interval schedule's runs at their slots; pause stops new runs at once and resume starts them again", async () => {
    const name = `Every Three ${tag}`;
    const label = `every-three-${tag}`;
    const registered = await register("scheduled-flow.ts", { BERTH_TEST_FLOW_NAME: name, BERTH_TEST_LABEL: label, BERTH_TEST_EVERY: "3s" });
    expect(registered.stderr, "no agent could take its runs yet: register says so").toMatch(
      new RegExp(`warning: (no agent is online|no online agent can take runs with labels \\[${label}\\])`),
    );
    await agent([label], "every-three");
    const scheduled = (await runsOf(name)).filter((r) => r.state === "Scheduled").sort((a, b) => a.scheduledStart.localeCompare(b.scheduledStart));
    expect(scheduled.length).toBeGreaterThan(3);
    const slots = scheduled.slice(0, 3).map((r) => Date.parse(r.scheduledStart));
    expect([slots[1]! - slots[0]!, slots[2]! - slots[1]!]).toEqual([3_000, 3_000]);
    const done = await Promise.all(scheduled.slice(0, 3).map((r) => waitFinal(client, r.id, 60_000)));
    for (const run of done) {
      expect(run.state, run.stateMessage ?? "").toBe("Success");
      // Never before its slot.
      expect(Date.parse(run.startedAt!)).toBeGreaterThanOrEqual(Date.parse(run.scheduledStart));
    }

    const paused = await cli(["schedule", "pause", name]);
    expect(paused.code, paused.stderr).toBe(0);
    expect((await runsOf(name)).filter((r) => r.state === "Scheduled")).toEqual([]);
    const before = (await runsOf(name)).length;
    // Two slots pass while paused: no run is made for them.
    await new Promise((resolve) => setTimeout(resolve, 6_500));
    expect((await runsOf(name)).length).toBe(before);
    const shown = await cli(["schedule", "show", name]);
    expect(shown.stdout).toContain("paused");

    const resumed = await cli(["schedule", "resume", name]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const next = (await runsOf(name)).filter((r) => r.state === "Scheduled").sort((a, b) => a.scheduledStart.localeCompare(b.scheduledStart))[0];
    expect(next).toBeDefined();
    expect((await waitFinal(client, next!.id, 60_000)).state).toBe("Success");
    // Leave nothing running for the other tests.
    expect((await cli(["schedule", "pause", name])).code).toBe(0);
  });

  it("maxConcurrentRuns: 1 holds a flow to one run at a time across two agents", async () => {
    const name = `Limited ${tag}`;
    const label = `limited-${tag}`;
    await register("limited-flow.ts", { BERTH_TEST_FLOW_NAME: name, BERTH_TEST_LABEL: label, BERTH_TEST_MAX_CONCURRENT: "1" });
    await agent([label], "limited-a", ["--concurrency", "2"]);
    await agent([label], "limited-b", ["--concurrency", "2"]);
    const created: FlowRun[] = [];
    for (let i = 0; i < 4; i++) created.push((await client.createFlowRun({ flowName: name, parameters: { seconds: 1 } })).flowRun);
    await until("a run to be held by the limit", async () => {
      const views = await Promise.all(created.map((r) => client.getFlowRun(r.id)));
      return views.some((v) => v.state === "Scheduled" && (v.pickup ?? "").includes(`held by flow "${name}"'s maxConcurrentRuns (1 of 1 slot taken`));
    }, { timeoutMs: 60_000 });
    const finals = await Promise.all(created.map((r) => waitFinal(client, r.id, 120_000)));
    expect(finals.map((r) => r.state)).toEqual(["Success", "Success", "Success", "Success"]);
    expect(overlaps(await spans(client, finals))).toEqual([]);
  });

  it("a label's concurrency limit holds its runs to N at a time across two agents, and says which runs hold the slots", async () => {
    const name = `Label Limited ${tag}`;
    const label = `gpu-${tag}`;
    await register("limited-flow.ts", { BERTH_TEST_FLOW_NAME: name, BERTH_TEST_LABEL: label, BERTH_TEST_MAX_CONCURRENT: "100" });
    const set = await cli(["concurrency", "set", label, "1"]);
    expect(set.code, set.stderr).toBe(0);
    await agent([label], "gpu-a", ["--concurrency", "2"]);
    await agent([label], "gpu-b", ["--concurrency", "2"]);
    const created: FlowRun[] = [];
    for (let i = 0; i < 3; i++) created.push((await client.createFlowRun({ flowName: name, parameters: { seconds: 1 } })).flowRun);
    await until("a run to be held by the label's limit", async () => {
      const views = await Promise.all(created.map((r) => client.getFlowRun(r.id)));
      return views.some((v) => v.state === "Scheduled" && (v.pickup ?? "").includes(`held by the concurrency limit of label ${label} (1 of 1 slot taken, by `));
    }, { timeoutMs: 60_000 });
    const listed = await cli(["concurrency", "ls"]);
    expect(listed.stdout).toContain(label);
    const finals = await Promise.all(created.map((r) => waitFinal(client, r.id, 120_000)));
    expect(finals.map((r) => r.state)).toEqual(["Success", "Success", "Success"]);
    expect(overlaps(await spans(client, finals))).toEqual([]);
    expect((await cli(["concurrency", "rm", label])).code).toBe(0);
    expect((await cli(["concurrency", "rm", label])).stderr).toContain(`label ${label} has no concurrency limit`);
  });

  it('runs a cleanup task with trigger "allFinished" after its upstream failed, and the run ends as its reference task did', async () => {
    await register("cleanup-flow.ts", {});
    await agent([], "unlabelled");
    const { flowRun } = await client.createFlowRun({ flowName: "Cleanup Flow", parameters: {} });
    const run = await waitFinal(client, flowRun.id, 120_000);
    expect(run.state, run.stateMessage ?? "").toBe("Success");
    const tasks = Object.fromEntries((await client.listTaskRuns(flowRun.id)).map((t) => [t.taskName, t.state]));
    expect(tasks).toEqual({ work: "Failed", cleanup: "Success" });
    const logs = (await client.getLogs(flowRun.id, { limit: 1000 })).logs.map((l) => l.message);
    expect(logs.some((m) => m.includes("the work failed"))).toBe(true);
    expect(logs).toContain("cleaning up after the work");
  });
});

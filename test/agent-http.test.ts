/**
 * `berth agent --http`: the agent's /health and /metrics, on real processes and the real Docker engine. The
 * engine stopping and returning is covered by chaos-dockerd.test.ts, which restarts dockerd anyway.
 */
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { dockerAvailable } from "./support/docker.js";
import { BerthProcess, REPO, TEST_TOKEN, berth, freePort, startAgent, startServer } from "./support/processes.js";
import { promtoolProblems, sample, samples } from "./support/prometheus.js";
import { tearDown, waitFinal } from "./support/runs.js";
import { until } from "./support/wait.js";

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

describe.skipIf(!dockerAvailable)("agent /health and /metrics", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let client: ApiClient;
  const agents: BerthProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-agent-http-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    const registered = await berth(["register", path.join(REPO, "test", "fixtures", "chaos-flow.ts"), "--api", server.url]);
    expect(registered.code, registered.stderr).toBe(0);
  }, 900_000);

  afterAll(async () => {
    if (server) expect(await tearDown({ agents, server, client, dir })).toEqual([]);
  });

  it("is healthy while it claims, and its metrics follow a run from image to outcome", async () => {
    const port = await freePort();
    const agent = await startAgent(server.url, ["http"], `http-${process.pid}`, ["--http", `127.0.0.1:${port}`]);
    agents.push(agent);
    const base = `http://127.0.0.1:${port}`;
    const health = await get(`${base}/health`);
    expect(health.status, health.text).toBe(200);
    expect(JSON.parse(health.text)).toMatchObject({
      status: "ok",
      reasons: [],
      state: "running",
      engine: { up: true },
      slots: { used: 0, total: 1 },
      disk: { freeBytes: expect.any(Number), lowWatermarkBytes: 2 * 1024 ** 3 },
    });

    // The agent says the same to the server with its heartbeats: berth agents shows its slots, disk and health.
    const name = `http-${process.pid}`;
    await until("the agent's first health report", async () => (await client.listAgents()).agents.find((a) => a.name === name)?.health != null);
    const listed = await berth(["agents", "--api", server.url]);
    expect(listed.stdout).toMatch(new RegExp(`${name}\\s+\\S+\\s+http\\s+online(?: \\(idle\\))?\\s+0/1\\s+[\\d.]+ [KMGT]iB\\s+ok\\s`));

    const created = await client.createFlowRun({ flowName: "Chaos Flow", labels: ["http"], parameters: { millis: 50 } });
    expect((await waitFinal(client, created.flowRun.id)).state).toBe("Success");
    // The container records Success; the agent counts the outcome once it has seen the container exit.
    let text = "";
    await until("the agent to count the run", async () => {
      text = (await get(`${base}/metrics`)).text;
      return sample(samples(text), "berth_agent_runs_finished_total", { outcome: "Success" }) === 1;
    });
    expect(promtoolProblems(text)).toEqual([]);
    const m = samples(text);
    expect(sample(m, "berth_agent_image_ready_seconds_count")).toBe(1);
    expect(sample(m, "berth_agent_container_create_seconds_count")).toBe(1);
    expect(sample(m, "berth_agent_container_start_seconds_count")).toBe(1);
    expect(sample(m, "berth_agent_slots")).toBe(1);
    expect(sample(m, "berth_agent_engine_up")).toBe(1);
    expect(sample(m, "berth_agent_disk_free_bytes")).toBeGreaterThan(0);
    expect((await get(`${base}/nothing`)).status).toBe(404);

    // The run's timeline: every step, in order, the last once the agent has removed the container.
    await until("the agent to report the cleanup", async () => (await client.getFlowRun(created.flowRun.id)).phases?.cleanedUp !== null);
    const { phases } = await client.getFlowRun(created.flowRun.id);
    const steps = ["queued", "claimed", "imageReady", "containerCreated", "containerStarted", "runtimeUp", "flowFinished", "cleanedUp"] as const;
    const times = steps.map((step) => Date.parse(phases![step]!));
    expect(times.every((t) => Number.isFinite(t)), JSON.stringify(phases)).toBe(true);
    // In order, allowing for the agent's and the server's clocks (one host here) to disagree by a millisecond.
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!, `${steps[i - 1]} → ${steps[i]}`).toBeGreaterThanOrEqual(-1);
    expect(phases!.imageSource).toBe("present");
    const serverMetrics = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } }).then((r) => r.text());
    for (const phase of ["queue", "image", "container_create", "container_start", "runtime_start", "flow", "cleanup"]) {
      expect(sample(samples(serverMetrics), "berth_flow_run_phase_seconds_count", { phase }), phase).toBe(1);
    }
  }, 300_000);

  it("answers 503 with the reason when free disk is under the low watermark", async () => {
    const port = await freePort();
    const agent = await startAgent(server.url, ["disk"], `disk-${process.pid}`, ["--http", `127.0.0.1:${port}`], {
      BERTH_AGENT_DISK_LOW_WATERMARK: "1000t",
    });
    agents.push(agent);
    const health = await get(`http://127.0.0.1:${port}/health`);
    expect(health.status, health.text).toBe(503);
    const body = JSON.parse(health.text) as { status: string; reasons: string[] };
    expect(body.status).toBe("unhealthy");
    expect(body.reasons).toEqual([expect.stringMatching(/^free disk on .+ is .+, under the low watermark of 1000 TiB$/)]);
    await until("the agent's health report", async () => (await client.listAgents()).agents.find((a) => a.name === `disk-${process.pid}`)?.health != null);
    const listed = await berth(["agents", "--api", server.url]);
    expect(listed.stdout).toMatch(new RegExp(`disk-${process.pid}.*under the low watermark of 1000 TiB`));
  }, 300_000);

  it("fails at once, saying why, when it cannot listen where it is told", async () => {
    const taken = new URL(server.url).port;
    const agent = new BerthProcess(["agent", "--api", server.url, "--name", `taken-${process.pid}`, "--http", `127.0.0.1:${taken}`]);
    agents.push(agent);
    await agent.waitFor(/cannot serve \/health and \/metrics on 127\.0\.0\.1:\d+ \(agent\.http\): listen EADDRINUSE/);
    expect(await agent.stop()).not.toBe(0);
    const bad = await berth(["agent", "--api", server.url, "--http", "localhost"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('"localhost" is not an address to listen on: write it like 127.0.0.1:9464');
  }, 120_000);
});

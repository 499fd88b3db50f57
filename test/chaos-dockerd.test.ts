/**
 * Restarting the Docker engine under running flow runs: the agent stays up, stops claiming and reports
 * itself unhealthy while the engine is gone (to the server, and on its own /health with a 503), resumes when it returns, and fails the runs whose containers
 * the restart stopped, saying so. This restarts dockerd itself, so it runs under CI=true (where .ci/run
 * started dockerd) or when BERTH_TEST_RESTART_DOCKERD=1; elsewhere it is skipped with that reason.
 */
import { execFile, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { FINAL_FLOW_RUN_STATES } from "../wire/schema.js";
import { dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, freePort, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { tearDown, waitFinal, waitState } from "./support/runs.js";
import { until } from "./support/wait.js";

const mayRestartDockerd = process.env.CI === "true" || process.env.BERTH_TEST_RESTART_DOCKERD === "1";
if (dockerAvailable && !mayRestartDockerd) process.stderr.write("skipping the dockerd restart test: set BERTH_TEST_RESTART_DOCKERD=1 to let it restart your Docker engine\n");

const engineAnswers = () => engine.ping().then(() => true, () => false);

const dockerdRunning = () => promisify(execFile)("pgrep", ["-x", "dockerd"]).then(() => true, () => false);

/** Starts dockerd once the previous one has exited: it stops answering at SIGTERM but lives on while it stops containers. */
async function startDockerd(): Promise<void> {
  await until("the old dockerd to exit", async () => !(await dockerdRunning()), { timeoutMs: 60_000, everyMs: 200 });
  const log = openSync("/var/log/berth-dockerd.log", "a");
  spawn("dockerd", [], { detached: true, stdio: ["ignore", log, log] }).unref();
}

describe.skipIf(!dockerAvailable || !mayRestartDockerd)("restarting dockerd during flow runs", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let client: ApiClient;
  let agent: BerthProcess;
  /** The agent's /health and /metrics port (--http). */
  let healthPort: number;
  const health = async () => {
    const res = await fetch(`http://127.0.0.1:${healthPort}/health`);
    return { status: res.status, body: (await res.json()) as { reasons: string[]; engine: { up: boolean } } };
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-dockerd-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    const registered = await berth(["register", path.join(REPO, "test", "fixtures", "chaos-flow.ts"), "--api", server.url]);
    expect(registered.code, registered.stderr).toBe(0);
    healthPort = await freePort();
    agent = await startAgent(server.url, ["engine"], `engine-${process.pid}`, ["--concurrency", "2", "--http", `127.0.0.1:${healthPort}`], {
      BERTH_AGENT_HEARTBEAT_INTERVAL: "500ms",
    });
  }, 900_000);

  afterAll(async () => {
    if (!(await engineAnswers())) {
      await startDockerd();
      await until("dockerd to come back", engineAnswers, { timeoutMs: 60_000, everyMs: 200 });
    }
    expect(await tearDown({ agents: agent ? [agent] : [], server, client, dir })).toEqual([]);
  });

  it("the agent survives, pauses claiming while unhealthy, resumes, and fails the runs the restart stopped", async () => {
    const running = await Promise.all(
      [0, 1].map(() => client.createFlowRun({ flowName: "Chaos Flow", labels: ["engine"], parameters: { millis: 60_000 } })),
    );
    await Promise.all(running.map((r) => waitState(client, r.flowRun.id, "Running", 60_000)));
    expect((await health()).status).toBe(200);

    const step = (what: string) => process.stdout.write(`dockerd restart: ${what}\n`);
    step("both runs Running; stopping dockerd");
    await promisify(execFile)("pkill", ["-TERM", "-x", "dockerd"]);
    const downAfter = await until("dockerd to stop", async () => !(await engineAnswers()), { timeoutMs: 60_000, everyMs: 200 });
    step(`engine down after ${downAfter} ms`);
    const agentId = (await client.listAgents()).agents.find((a) => a.name === `engine-${process.pid}`)!.id;
    const unhealthyAfter = await until("the agent to report itself unhealthy", async () => {
      const { agents } = await client.listAgents();
      return agents.find((a) => a.id === agentId)?.status === "unhealthy";
    }, { timeoutMs: 60_000, everyMs: 200 });
    // The agent's own /health says why, for the compose healthcheck and a load balancer.
    const down = await health();
    expect(down.status).toBe(503);
    expect(down.body.engine.up).toBe(false);
    expect(down.body.reasons.join("; ")).toMatch(/the container engine (is not answering|did not answer within)/);
    // A run created now is not started while the engine is away.
    const waiting = await client.createFlowRun({ flowName: "Chaos Flow", labels: ["engine"], parameters: { millis: 200 } });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(["Scheduled", "Submitted"]).toContain((await client.getFlowRun(waiting.flowRun.id)).state);

    step(`agent unhealthy after ${unhealthyAfter} ms; starting dockerd`);
    await startDockerd();
    const backAfter = await until("dockerd to come back", engineAnswers, { timeoutMs: 60_000, everyMs: 200 });
    const resumed = await waitFinal(client, waiting.flowRun.id, 120_000).catch((err: Error) => {
      throw new Error(`${err.message}\nagent output:\n${agent.output.split("\n").slice(-40).join("\n")}`);
    });
    expect(resumed.state).toBe("Success");
    await until("the agent's /health to answer 200 again", async () => (await health()).status === 200, { timeoutMs: 30_000 });
    expect(agent.child.exitCode).toBeNull();
    for (const r of running) {
      const final = await waitFinal(client, r.flowRun.id, 120_000);
      expect(final.state, final.stateMessage ?? "").toBe("Failed");
      expect(final.stateMessage).toMatch(/Docker engine was unavailable|stopped before the flow finished/);
      const history = await client.listFlowRunStates(r.flowRun.id);
      expect(history.filter((h) => FINAL_FLOW_RUN_STATES.includes(h.state))).toHaveLength(1);
    }
    process.stdout.write(
      `\ndockerd restart: engine down after ${downAfter} ms, agent unhealthy after ${unhealthyAfter} ms more, engine back after ${backAfter} ms; ` +
        `2 running runs Failed with the reason, the run created meanwhile succeeded\n`,
    );
  }, 300_000);
});

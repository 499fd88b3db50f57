/**
 * The chaos suite for scale-out: two real server replicas on one PostgreSQL database, two real agents that
 * know both replicas (each lists them in another order), and flow runs in real containers. One replica is
 * killed (-9) mid-run and restarted; then PostgreSQL itself crashes and restarts under load. Every run must
 * end exactly once and succeed, no two attempts of a run may be alive together (the engine's events say),
 * each run's log must hold every line its final attempt printed, and no container may be left.
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import path from "node:path";
import { ApiClient } from "../client/api-client.js";
import { FINAL_FLOW_RUN_STATES, type FlowRun } from "../wire/schema.js";
import { dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, freePort, startAgent, TEST_TOKEN } from "./support/processes.js";
import { leakedContainers, waitFinal, waitState } from "./support/runs.js";
import { ContainerTimeline } from "./support/container-timeline.js";
import { AGENT_ENV, SERVER_ENV, allLogs, assertEndedOnce, attemptLines, checkAttempts, countBy } from "./support/chaos.js";
import { describePostgres, useCluster } from "./support/postgres.js";

const report: string[] = [];
const note = (line: string) => report.push(line);

interface Replica {
  proc: BerthProcess;
  url: string;
  port: number;
}

(dockerAvailable ? describePostgres : describe.skip)("chaos: server replicas on PostgreSQL", () => {
  const clusterOf = useCluster();
  let db: string;
  /** Both replicas sign run tokens and seal secrets with one key, as replicas must. */
  const key = randomBytes(32).toString("base64");
  const replicas: Replica[] = [];
  const agents: BerthProcess[] = [];
  let client: ApiClient;
  let timeline: ContainerTimeline;
  let scenarioStart = 0;

  // Leases of 10 s, not the chaos suite's 3 s: the database's restart below takes its own start time on top of
  // the outage (two seconds and more on a busy machine), and agents that lose their leases meanwhile would
  // rightly stop their runs, which is not what this suite is about.
  const serverEnv = { ...SERVER_ENV, BERTH_SERVER_LEASE: "10s" };
  const agentEnv = { ...AGENT_ENV, BERTH_AGENT_LEASE_TIMEOUT: "10s" };

  const startReplica = async (port?: number): Promise<Replica> => {
    port ??= await freePort();
    const proc = new BerthProcess(["server", "--port", String(port), "--db", db], { ...serverEnv, BERTH_SERVER_KEY: key });
    await proc.waitFor(/listening on/);
    return { proc, url: `http://127.0.0.1:${port}`, port };
  };
  const apiUrls = (order: readonly Replica[]) => order.map((r) => r.url).join(",");
  const createRuns = (n: number, labels: string[], millis: number) =>
    Promise.all(Array.from({ length: n }, () => client.createFlowRun({ flowName: "Chaos Flow", labels, parameters: { millis } }))).then((r) =>
      r.map((c) => c.flowRun.id),
    );

  beforeAll(async () => {
    db = await clusterOf().database("chaos");
    timeline = new ContainerTimeline(engine);
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    // Started one after the other: the second finds the schema the first migrated.
    replicas.push(await startReplica(), await startReplica());
    const [a, b] = replicas as [Replica, Replica];
    client = new ApiClient({ baseUrl: apiUrls([a, b]), token: TEST_TOKEN });
    const registered = await berth(["register", path.join(REPO, "test", "fixtures", "chaos-flow.ts"), "--api", apiUrls([b, a])]);
    expect(registered.code, registered.stderr).toBe(0);
    for (const [n, order] of [[a, b], [b, a]].entries()) {
      agents.push(await startAgent(apiUrls(order), ["replicas"], `chaos-replica-agent-${n}-${process.pid}`, ["--concurrency", "3"], agentEnv));
    }
  }, 900_000);

  beforeEach(() => {
    scenarioStart = timeline.events.length;
  });

  afterEach(({ task }) => {
    checkAttempts(timeline, task.name, timeline.events.slice(scenarioStart), note);
  });

  afterAll(async () => {
    let leaked: string[];
    try {
      await Promise.all(agents.map((a) => a.stop()));
      leaked = client ? await leakedContainers(client) : [];
    } finally {
      // Whatever failed above, no replica outlives the suite (nor, then, the cluster it uses).
      await Promise.all(replicas.map((r) => r.proc.stop()));
    }
    await timeline?.stop();
    try {
      if (timeline) checkAttempts(timeline, "whole suite, agents stopped", timeline.events, note);
    } finally {
      process.stdout.write(`\nchaos (replicas) report:\n${report.map((l) => `  ${l}`).join("\n")}\n`);
    }
    expect(leaked).toEqual([]);
  });

  it("kill -9 of one replica mid-run, runs created while it is down, then its restart: every run ends once", async () => {
    const ids = await createRuns(8, ["replicas"], 1_500);
    await waitState(client, ids[0]!, "Running", 60_000);
    const [a] = replicas as [Replica, Replica];
    const killedAt = Date.now();
    await a.proc.signal("SIGKILL");
    // The client lists a first: every one of these is acknowledged by b, after a refused the connection.
    ids.push(...(await createRuns(4, ["replicas"], 500)));
    const downMs = Date.now() - killedAt;
    replicas[0] = await startReplica(a.port);
    note(`kill -9 replica: 4 runs created through the other while it was down (${downMs} ms), back after ${Date.now() - killedAt} ms`);
    const finals = await Promise.all(ids.map((id) => waitFinal(client, id, 180_000)));
    note(`kill -9 replica: ${ids.length} runs, outcomes ${JSON.stringify(countBy(finals.map((r) => r.state)))}, attempts ${JSON.stringify(countBy(finals.map((r) => String(r.epoch))))}`);
    await assertEndedOnce(client, timeline, ids);
    await expectEveryLineOfFinalAttempt(finals);
    expect(finals.filter((r) => r.state !== "Success").map((r) => `${r.id} ${r.state}: ${r.stateMessage ?? ""}`)).toEqual([]);
  });

  it("PostgreSQL crashes and restarts under load: replicas, agents and containers ride it out", async () => {
    const ids = await createRuns(8, ["replicas"], 1_500);
    await waitState(client, ids[0]!, "Running", 60_000);
    const crashedAt = Date.now();
    await clusterOf().kill();
    // Down for a second and a half, then the database's own start: containers log and heartbeat every second,
    // so their writes meet the outage (and are answered 503, to be sent again), while the agents' 10 s lease
    // timeout is not reached.
    await new Promise((r) => setTimeout(r, 1_500));
    await clusterOf().start();
    note(`PostgreSQL crash and restart: back after ${Date.now() - crashedAt} ms`);
    // Created once the database is back: the replicas' pools must have replaced their dead connections.
    ids.push(...(await createRuns(2, ["replicas"], 500)));
    const finals = await Promise.all(ids.map((id) => waitFinal(client, id, 180_000)));
    note(`PostgreSQL restart: ${ids.length} runs, outcomes ${JSON.stringify(countBy(finals.map((r) => r.state)))}, attempts ${JSON.stringify(countBy(finals.map((r) => String(r.epoch))))}`);
    await assertEndedOnce(client, timeline, ids);
    await expectEveryLineOfFinalAttempt(finals);
    expect(finals.filter((r) => r.state !== "Success").map((r) => `${r.id} ${r.state}: ${r.stateMessage ?? ""}`)).toEqual([]);
    // Both replicas still answer, each on its own.
    for (const replica of replicas) {
      const alone = new ApiClient({ baseUrl: replica.url, token: TEST_TOKEN });
      expect((await alone.getFlowRun(ids[0]!)).state).toBe("Success");
    }
  });

  /**
   * The flow's two tasks each print a start and an end line with the attempt's epoch: a run that succeeded has
   * all four of its final attempt in its log, whichever replica took each write.
   */
  async function expectEveryLineOfFinalAttempt(finals: readonly FlowRun[]): Promise<void> {
    for (const run of finals) {
      expect(FINAL_FLOW_RUN_STATES).toContain(run.state);
      const lines = attemptLines(await allLogs(client, run.id)).filter((l) => l.epoch === run.epoch);
      expect(lines, `${run.id}: log lines of attempt ${run.epoch}`).toHaveLength(4);
    }
  }
});

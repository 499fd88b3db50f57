/**
 * The chaos suite: real server, agents and containers, killed and frozen on purpose. For every run it
 * asserts exactly one final state, that no two attempts (epochs) of one run had containers alive at the
 * same time (as the Docker engine's own events show, not the server), and that no container berth created
 * is left. Timings are shortened through configuration so the suite stays within minutes; every wait is
 * bounded and follows events (the logs long-poll, the engine's event stream) where it can. It prints what
 * it measured (counts, detection and cancel-to-removed times, when each attempt was alive).
 */
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { FINAL_FLOW_RUN_STATES } from "../wire/schema.js";
import { containerGone, dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { tearDown, waitFinal, waitFor, waitState } from "./support/runs.js";
import { ContainerTimeline } from "./support/container-timeline.js";
import { AGENT_ENV, SERVER_ENV, allLogs, assertEndedOnce, attemptLines, checkAttempts, countBy, docker, waitUntil } from "./support/chaos.js";

const report: string[] = [];
const note = (line: string) => report.push(line);

describe.skipIf(!dockerAvailable)("chaos", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string; port: number };
  let client: ApiClient;
  const agents: BerthProcess[] = [];
  let timeline: ContainerTimeline;
  /** Where the scenario under way begins in the timeline, for its part of the report. */
  let scenarioStart = 0;
  const agent = async (labels: string[], name: string, extra: string[] = [], env: Record<string, string> = {}) => {
    const proc = await startAgent(server.url, labels, name, extra, { ...AGENT_ENV, ...env });
    agents.push(proc);
    return proc;
  };
  const createRuns = (n: number, labels: string[], millis = 600) =>
    Promise.all(Array.from({ length: n }, () => client.createFlowRun({ flowName: "Chaos Flow", labels, parameters: { millis } }))).then((r) =>
      r.map((c) => c.flowRun.id),
    );

  beforeAll(async () => {
    // From before anything runs until after the last container is removed: every scenario, and whatever
    // an agent of one scenario still does while the next runs.
    timeline = new ContainerTimeline(engine);
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-chaos-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir, SERVER_ENV);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    const registered = await berth(["register", path.join(REPO, "test", "fixtures", "chaos-flow.ts"), "--api", server.url]);
    expect(registered.code, registered.stderr).toBe(0);
  }, 900_000);

  beforeEach(() => {
    scenarioStart = timeline.events.length;
  });

  afterEach(({ task }) => {
    checkAttempts(timeline, task.name, timeline.events.slice(scenarioStart), note);
  });

  afterAll(async () => {
    const leaked = await tearDown({ agents, server, client, dir });
    await timeline.stop();
    try {
      checkAttempts(timeline, "whole suite, agents stopped", timeline.events, note);
    } finally {
      process.stdout.write(`\nchaos report:\n${report.map((l) => `  ${l}`).join("\n")}\n`);
    }
    expect(leaked).toEqual([]);
  });

  it("kill -9 of the agent at random points, then a restart under the same name: every run ends once", async () => {
    const name = `chaos-kill-${process.pid}`;
    let current = await agent(["kill"], name, ["--concurrency", "2"]);
    const ids = await createRuns(10, ["kill"]);
    let kills = 0;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const runs = await Promise.all(ids.map((id) => client.getFlowRun(id)));
      if (runs.every((r) => FINAL_FLOW_RUN_STATES.includes(r.state))) break;
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1200));
      await current.signal("SIGKILL");
      kills += 1;
      current = await agent(["kill"], name, ["--concurrency", "2"]);
    }
    const finals = await Promise.all(ids.map((id) => waitFinal(client, id, 120_000)));
    await assertEndedOnce(client, timeline, ids);
    const outcomes = countBy(finals.map((r) => r.state));
    note(`kill -9 agent: ${ids.length} runs, ${kills} kills, outcomes ${JSON.stringify(outcomes)}, attempts ${JSON.stringify(countBy(finals.map((r) => String(r.epoch))))}`);
    expect(outcomes.Success).toBe(ids.length);
  });

  it("an agent frozen (SIGSTOP) past its lease loses its claim to another agent, and is fenced when it wakes", async () => {
    const frozen = await agent(["freeze"], `chaos-frozen-${process.pid}`);
    // Once the server holds its parked claim, freeze it: the next run is handed to a frozen agent.
    await waitUntil("the agent's claim to be parked at the server", async () =>
      (await client.listAgents()).agents.some((a) => a.name === `chaos-frozen-${process.pid}` && a.waiting === true),
    );
    await frozen.signal("SIGSTOP");
    const [id] = await createRuns(1, ["freeze"]);
    const claimed = await waitState(client, id!, "Submitted", 10_000);
    const frozenAt = Date.now();
    const rescheduled = await waitFor(client, id!, (r) => r.epoch > claimed.epoch || r.state === "Scheduled", 30_000);
    note(`SIGSTOP agent: lost claim rescheduled ${Date.now() - frozenAt} ms after the freeze (lease 3 s)`);
    expect(rescheduled.state === "Scheduled" || rescheduled.epoch > claimed.epoch).toBe(true);
    await agent(["freeze"], `chaos-rescuer-${process.pid}`);
    const final = await waitFinal(client, id!, 60_000);
    await frozen.signal("SIGCONT");
    // The woken agent may start its stale attempt's container; its first write is refused and it stops.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(final.state).toBe("Success");
    expect(final.epoch).toBeGreaterThan(claimed.epoch);
    await assertEndedOnce(client, timeline, [id!]);
    const epochs = new Set(attemptLines(await allLogs(client, id!)).map((l) => l.epoch));
    expect([...epochs]).toEqual([final.epoch]);
  });

  it("an agent frozen with a claim wakes while the next attempt runs: the two are never alive together", async () => {
    // The scenario where two attempts of one run could be alive at once: the stale attempt reaches the
    // engine while the current one runs. A heartbeat slower than the freeze makes that the order of things
    // on waking: the agent acts on its claim before a heartbeat can tell it the lease is lost. It finds the
    // run's container name held by a later attempt and leaves it alone, so the current attempt succeeds;
    // and the check after each scenario must find no overlap.
    const name = `chaos-late-${process.pid}`;
    const frozen = await agent(["late"], name, [], { BERTH_AGENT_HEARTBEAT_INTERVAL: "60s" });
    const parked = () => waitUntil("the agent's claim to be parked at the server", async () =>
      (await client.listAgents()).agents.some((a) => a.name === name && a.waiting === true),
    );
    await parked();
    await frozen.signal("SIGSTOP");
    const [id] = await createRuns(1, ["late"], 3_000);
    const claimed = await waitState(client, id!, "Submitted", 10_000);
    await agent(["late"], `chaos-late-rescuer-${process.pid}`);
    const running = await waitFor(client, id!, (r) => r.epoch > claimed.epoch && r.state === "Running", 60_000);
    await frozen.signal("SIGCONT");
    const final = await waitFinal(client, id!, 60_000);
    // With one slot, the woken agent parks a claim again only once its stale attempt is over.
    await parked();
    note(`frozen agent woken during attempt ${running.epoch}: the run ended ${final.state} at attempt ${final.epoch} (${final.stateMessage?.split("\n")[0] ?? ""})`);
    expect(final, final.stateMessage ?? "").toMatchObject({ state: "Success", epoch: running.epoch });
    await assertEndedOnce(client, timeline, [id!]);
  });

  it("kill -9 of the server under load loses no acknowledged write; agents and containers carry on", async () => {
    await agent(["server"], `chaos-server-${process.pid}`, ["--concurrency", "2"]);
    const ids = await createRuns(6, ["server"], 800);
    await waitState(client, ids[0]!, "Running", 60_000);
    const killedAt = Date.now();
    await server.proc.signal("SIGKILL");
    server = await startServer(dir, SERVER_ENV, server.port);
    note(`kill -9 server: back after ${Date.now() - killedAt} ms`);
    const finals = await Promise.all(ids.map((id) => waitFinal(client, id, 120_000)));
    await assertEndedOnce(client, timeline, ids);
    note(`kill -9 server: ${ids.length} runs, outcomes ${JSON.stringify(countBy(finals.map((r) => r.state)))}`);
    expect(finals.filter((r) => r.state !== "Success").map((r) => `${r.id} ${r.state}: ${r.stateMessage ?? ""}`)).toEqual([]);
  });

  it("a server down longer than the lease: the agent stops the container itself, and the run ends once", async () => {
    await agent(["outage"], `chaos-outage-${process.pid}`);
    const [id] = await createRuns(1, ["outage"], 30_000);
    await waitState(client, id!, "Running", 60_000);
    await server.proc.signal("SIGKILL");
    const downAt = Date.now();
    // Past the agent's lease timeout (3 s) it must stop the container rather than risk a second attempt; the
    // container is removed only once the agent can record the outcome, when the server is back.
    await waitUntil("the agent to stop the container", async () => (await engine.inspectContainer(`berth-run-${id}`))?.state !== "running", 20_000);
    const stoppedAfter = Date.now() - downAt;
    server = await startServer(dir, SERVER_ENV, server.port);
    const final = await waitFinal(client, id!, 60_000);
    await containerGone(`berth-run-${id}`);
    note(`server down past the lease: container stopped ${stoppedAfter} ms after the server died; run ended ${final.state}`);
    expect(final.state).toBe("Failed");
    await assertEndedOnce(client, timeline, [id!]);
  });

  it("a second SIGTERM stops an agent at once; restarted, it adopts the container and the run succeeds", async () => {
    const name = `chaos-forced-${process.pid}`;
    const first = await agent(["forced"], name);
    const [id] = await createRuns(1, ["forced"], 3_000);
    await waitState(client, id!, "Running", 60_000);
    first.child.kill("SIGTERM");
    await first.waitFor(/agent draining/);
    const stoppedAt = Date.now();
    first.child.kill("SIGTERM");
    expect(await first.stop()).toBe(130);
    note(`second SIGTERM: agent gone ${Date.now() - stoppedAt} ms after it, its run still ${(await client.getFlowRun(id!)).state}`);
    expect(await engine.inspectContainer(`berth-run-${id}`)).toBeDefined();
    await agent(["forced"], name);
    expect((await waitFinal(client, id!, 60_000)).state).toBe("Success");
    await containerGone(`berth-run-${id}`);
    await assertEndedOnce(client, timeline, [id!]);
  });

  it("cancels at every stage and removes the containers", async () => {
    await agent(["cancel"], `chaos-cancel-${process.pid}`);
    // Scheduled (no agent has this label): Cancelled at once.
    const [scheduled] = await createRuns(1, ["cancel", "nobody"]);
    expect((await client.cancelFlowRun(scheduled!)).state).toBe("Cancelled");
    // Submitted (claimed by an agent frozen before it could start it): Cancelled at once; when the agent
    // wakes, its attempt is refused and nothing runs.
    const sleeper = await agent(["submitted"], `chaos-submitted-${process.pid}`);
    await waitUntil("the claim to be parked", async () =>
      (await client.listAgents()).agents.some((a) => a.name === `chaos-submitted-${process.pid}` && a.waiting === true),
    );
    await sleeper.signal("SIGSTOP");
    const [submitted] = await createRuns(1, ["submitted"]);
    await waitState(client, submitted!, "Submitted", 10_000);
    expect((await client.cancelFlowRun(submitted!)).state).toBe("Cancelled");
    await sleeper.signal("SIGCONT");
    await containerGone(`berth-run-${submitted}`);
    expect(attemptLines(await allLogs(client, submitted!))).toEqual([]);
    // Running: the agent stops the container; measure cancel → container removed.
    const removalTimes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const [id] = await createRuns(1, ["cancel"], 60_000);
      await waitState(client, id!, "Running", 60_000);
      const cancelledAt = Date.now();
      await client.cancelFlowRun(id!);
      const final = await waitFinal(client, id!, 30_000);
      expect(final.state).toBe("Cancelled");
      await containerGone(`berth-run-${id}`);
      removalTimes.push(Date.now() - cancelledAt);
    }
    note(`cancel Running → container removed: ${removalTimes.map((t) => `${t} ms`).join(", ")}`);
    // Running under an agent that died: the container itself hears of the cancel through its heartbeat.
    const doomedName = `chaos-doomed-${process.pid}`;
    let doomed = await agent(["doomed"], doomedName);
    const [selfCancelled] = await createRuns(1, ["doomed"], 60_000);
    await waitState(client, selfCancelled!, "Running", 60_000);
    await doomed.signal("SIGKILL");
    let cancelledAt = Date.now();
    await client.cancelFlowRun(selfCancelled!);
    expect((await waitFinal(client, selfCancelled!, 30_000)).state).toBe("Cancelled");
    note(`cancel with the agent dead: the container cancelled itself after ${Date.now() - cancelledAt} ms`);
    // Agent dead and container silent (paused): the server falls back, saying the container may still run.
    doomed = await agent(["doomed"], doomedName);
    await containerGone(`berth-run-${selfCancelled}`);
    const [orphan] = await createRuns(1, ["doomed"], 60_000);
    await waitState(client, orphan!, "Running", 60_000);
    await doomed.signal("SIGKILL");
    await docker("pause", `berth-run-${orphan}`);
    cancelledAt = Date.now();
    await client.cancelFlowRun(orphan!);
    const fallback = await waitFinal(client, orphan!, 30_000);
    note(`cancel with agent and container silent: Cancelled by the server after ${Date.now() - cancelledAt} ms`);
    expect(fallback.state).toBe("Cancelled");
    expect(fallback.stateMessage).toContain("may still be running");
    // The agent comes back, finds the container of a run that ended without it, and stops it.
    await docker("unpause", `berth-run-${orphan}`);
    await agent(["doomed"], doomedName);
    await containerGone(`berth-run-${orphan}`);
    await assertEndedOnce(client, timeline, [scheduled!, submitted!, selfCancelled!, orphan!]);
  });
});

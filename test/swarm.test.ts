/**
 * The Docker Swarm backend on a real single-node swarm (`docker swarm init --advertise-addr 127.0.0.1` on the
 * test engine, left as it was found): a real server and real agents started with `--backend swarm` run the
 * seed example and the lifecycle cases (cancel, run timeout, adoption after an agent's kill -9, placement,
 * hardening) as services, and remove every service they made.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { AGENT_LABEL, FLOW_RUN_LABEL, OWNER_LABEL } from "../engine/port.js";
import { dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { waitFinal, waitState } from "./support/runs.js";
import { ContainerTimeline } from "./support/container-timeline.js";
import { until } from "./support/wait.js";

const run = promisify(execFile);
const docker = async (...args: string[]) => (await run("docker", args, { timeout: 60_000 })).stdout.trim();
const fixture = (name: string) => path.join(REPO, "test", "fixtures", name);

/** The berth services on the swarm: name → labels. */
async function berthServices(): Promise<Map<string, Record<string, string>>> {
  const ids = (await docker("service", "ls", "-q", "--filter", `label=${OWNER_LABEL}=true`)).split("\n").filter(Boolean);
  const services = new Map<string, Record<string, string>>();
  for (const id of ids) {
    // A service removed between the listing and here is simply gone.
    const inspected = await docker("service", "inspect", id).catch(() => "[]");
    const [spec] = JSON.parse(inspected) as Array<{ Spec: { Name: string; Labels: Record<string, string> } }>;
    if (spec) services.set(spec.Spec.Name, spec.Spec.Labels);
  }
  return services;
}

describe.skipIf(!dockerAvailable)("the Docker Swarm backend", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let client: ApiClient;
  let timeline: ContainerTimeline;
  /** Whether this suite made the swarm, and so must leave it. */
  let initialized = false;
  const agents: BerthProcess[] = [];
  const register = async (env: Record<string, string>) => {
    const result = await berth(["register", fixture("swarm-flow.ts"), "--api", server.url], { env });
    expect(result.code, result.stderr).toBe(0);
  };
  const swarmAgent = async (label: string, name = `swarm-${label}-${process.pid}`, extra: string[] = []) => {
    const proc = await startAgent(server.url, [label], name, ["--backend", "swarm", ...extra], { BERTH_AGENT_STOP_GRACE: "2s" });
    agents.push(proc);
    return proc;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-swarm-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    const state = await docker("info", "--format", "{{.Swarm.LocalNodeState}}");
    if (state === "inactive") {
      // An engine in no swarm: the agent refuses to start, saying what to do.
      const refused = await berth(["agent", "--api", server.url, "--backend", "swarm", "--name", "no-swarm"], { timeoutMs: 60_000 });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr + refused.stdout).toMatch(/--backend swarm needs a swarm manager.*not in a swarm \(inactive\).*docker swarm init/);
      await docker("swarm", "init", "--advertise-addr", "127.0.0.1");
      initialized = true;
    }
    timeline = new ContainerTimeline(engine);
  }, 900_000);

  afterAll(async () => {
    try {
      await Promise.all(agents.map((a) => a.stop()));
      // Every service an agent made is removed by it once its run ends.
      expect([...(await berthServices()).keys()]).toEqual([]);
    } finally {
      await server?.proc.stop();
      await timeline?.stop();
      for (const name of (await berthServices().catch(() => new Map())).keys()) await docker("service", "rm", name).catch(() => "");
      if (initialized) await docker("swarm", "leave", "--force");
      // Task containers outlive a swarm left in a hurry; none of berth's may stay behind.
      for (const c of await engine.listContainers({ [OWNER_LABEL]: "true" })) if (c.labels["com.docker.swarm.service.id"]) await engine.removeContainer(c.id);
      if (dir) await rm(dir, { recursive: true, force: true });
    }
    expect(await docker("info", "--format", "{{.Swarm.LocalNodeState}}")).toBe(initialized ? "inactive" : "active");
  });

  it("runs the seed's custom-environment example as a swarm service, ending Success", async () => {
    await swarmAgent("seed", `swarm-seed-${process.pid}`);
    const registered = await berth(["register", path.join(REPO, "examples", "custom-environment.ts"), "--no-push", "--label", "seed", "--api", server.url]);
    expect(registered.code, registered.stderr).toBe(0);
    const { flowRun } = await client.createFlowRun({ flowName: "Custom Environment Example", labels: ["seed"], parameters: {} });
    const final = await waitFinal(client, flowRun.id, 120_000);
    expect(final.state, final.stateMessage ?? "").toBe("Success");
    const messages = (await client.getLogs(flowRun.id, { after: 0, limit: 1000 })).logs.map((l) => l.message);
    expect(messages).toContain("Example!");
    expect(messages.find((m) => m.startsWith("execute ran as process "))).toMatch(/^execute ran as process 1 on /);
    // It ran as a task of the run's service, not as a container of the agent's own.
    const started = timeline.events.filter((e) => e.action === "start" && e.labels[FLOW_RUN_LABEL] === flowRun.id);
    expect(started.map((e) => e.labels["com.docker.swarm.service.name"])).toEqual([`berth-run-${flowRun.id}`]);
    await until("the run's service to be removed", async () => !(await berthServices()).has(`berth-run-${flowRun.id}`));
  });

  it("a cancel reaches the task: the swarm stops it, the run is Cancelled and its service removed", async () => {
    await register({ BERTH_TEST_FLOW_NAME: "Swarm Cancel", BERTH_TEST_LABEL: "swarm-cancel" });
    await swarmAgent("swarm-cancel");
    const { flowRun } = await client.createFlowRun({ flowName: "Swarm Cancel", labels: ["swarm-cancel"], parameters: { millis: 120_000 } });
    await waitState(client, flowRun.id, "Running", 120_000);
    // Hardened as a container is: not root, every capability dropped, processes bounded.
    const [service] = JSON.parse(await docker("service", "inspect", `berth-run-${flowRun.id}`)) as Array<{
      Spec: { TaskTemplate: { ContainerSpec: { User?: string; CapabilityDrop?: string[] }; Resources: { Limits: { Pids?: number } }; RestartPolicy: { Condition: string } } };
    }>;
    const template = service!.Spec.TaskTemplate;
    expect(template.ContainerSpec.User).toMatch(/^\d+:\d+$/);
    expect(template.ContainerSpec.User).not.toMatch(/^0:/);
    expect(template.ContainerSpec.CapabilityDrop).toEqual(["ALL"]);
    expect(template.Resources.Limits.Pids).toBeGreaterThan(0);
    expect(template.RestartPolicy.Condition).toBe("none");
    await client.cancelFlowRun(flowRun.id);
    const final = await waitFinal(client, flowRun.id, 60_000);
    expect(final.state, final.stateMessage ?? "").toBe("Cancelled");
    // The engine saw the task's container stop (the swarm's SIGTERM), once.
    await until("the task's container to die", async () => timeline.events.some((e) => e.action === "die" && e.labels[FLOW_RUN_LABEL] === flowRun.id));
    expect(timeline.events.filter((e) => e.action === "start" && e.labels[FLOW_RUN_LABEL] === flowRun.id)).toHaveLength(1);
    await until("the cancelled run's service to be removed", async () => !(await berthServices()).has(`berth-run-${flowRun.id}`));
  });

  it("a run past its timeout is stopped and Failed", async () => {
    await register({ BERTH_TEST_FLOW_NAME: "Swarm Timeout", BERTH_TEST_LABEL: "swarm-timeout", BERTH_TEST_RUN_TIMEOUT: "3000" });
    await swarmAgent("swarm-timeout");
    const { flowRun } = await client.createFlowRun({ flowName: "Swarm Timeout", labels: ["swarm-timeout"], parameters: { millis: 120_000 } });
    const final = await waitFinal(client, flowRun.id, 120_000);
    expect(final.state).toBe("Failed");
    expect(final.stateMessage).toContain("exceeded its run timeout of 3 s");
    await until("the timed-out run's service to be removed", async () => !(await berthServices()).has(`berth-run-${flowRun.id}`));
  });

  it("an agent killed mid-run adopts its service when it comes back, and the run succeeds once", async () => {
    await register({ BERTH_TEST_FLOW_NAME: "Swarm Adopt", BERTH_TEST_LABEL: "swarm-adopt" });
    const name = `swarm-adopt-${process.pid}`;
    const first = await swarmAgent("swarm-adopt", name);
    const { flowRun } = await client.createFlowRun({ flowName: "Swarm Adopt", labels: ["swarm-adopt"], parameters: { millis: 4_000 } });
    await waitState(client, flowRun.id, "Running", 120_000);
    await first.signal("SIGKILL");
    const labels = (await berthServices()).get(`berth-run-${flowRun.id}`);
    expect(labels?.[AGENT_LABEL]).toBeDefined();
    await swarmAgent("swarm-adopt", name);
    const final = await waitFinal(client, flowRun.id, 120_000);
    expect(final.state, final.stateMessage ?? "").toBe("Success");
    expect(final.epoch).toBe(1);
    const states = (await client.listFlowRunStates(flowRun.id)).map((s) => s.state);
    expect(states.filter((s) => s === "Success")).toHaveLength(1);
    await until("the adopted run's service to be removed", async () => !(await berthServices()).has(`berth-run-${flowRun.id}`));
  });

  it("places runs by the flow's constraints, and fails a run no node can take, saying why", async () => {
    await register({ BERTH_TEST_FLOW_NAME: "Swarm Placed", BERTH_TEST_LABEL: "swarm-place", BERTH_TEST_PLACEMENT: "node.role==manager" });
    await register({ BERTH_TEST_FLOW_NAME: "Swarm Nowhere", BERTH_TEST_LABEL: "swarm-place", BERTH_TEST_PLACEMENT: "node.labels.zone==nowhere" });
    await swarmAgent("swarm-place");
    const placed = (await client.createFlowRun({ flowName: "Swarm Placed", labels: ["swarm-place"], parameters: {} })).flowRun;
    expect((await waitFinal(client, placed.id, 120_000)).state).toBe("Success");
    const nowhere = (await client.createFlowRun({ flowName: "Swarm Nowhere", labels: ["swarm-place"], parameters: {} })).flowRun;
    const final = await waitFinal(client, nowhere.id, 120_000);
    expect(final.state).toBe("Failed");
    expect(final.stateMessage).toMatch(/no node of the swarm can run berth-run-\S+: .*no suitable node.*\(placement: node\.labels\.zone==nowhere\)/);
    await until("both services to be removed", async () => {
      const services = await berthServices();
      return !services.has(`berth-run-${placed.id}`) && !services.has(`berth-run-${nowhere.id}`);
    });
  });
});

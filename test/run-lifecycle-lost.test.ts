/**
 * A heartbeat that says a run is lost: when the run was ended by this very attempt (its container wrote the
 * final state as the heartbeat left), the container is exiting by itself and gets the stop grace to do so;
 * when another attempt owns the run, its container is stopped at once. On a fake engine and a fake server.
 */
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { AgentClaim } from "../agent/flow-cache.js";
import { AgentMetrics } from "../agent/metrics.js";
import { RunLifecycle } from "../agent/run-lifecycle.js";
import type { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import type { ContainerEngine, ContainerInfo } from "../engine/port.js";
import type { FlowRun, FlowRunView } from "../wire/schema.js";
import { flowInput } from "./support/fixtures.js";

const AGENT = "agent-1";

function harness(serverRun: () => Partial<FlowRun>) {
  const stops: Array<{ at: number; graceMs: number }> = [];
  let exit: (code: number) => void = () => {};
  const exited = new Promise<number>((resolve) => (exit = resolve));
  const t0 = Date.now();
  const engine = {
    waitContainer: () => exited,
    stopContainer: async (_id: string, graceMs: number) => {
      stops.push({ at: Date.now() - t0, graceMs });
      exit(137);
    },
    removeContainer: async () => {},
    followOutput: async function* () {},
    containerOutput: async () => "",
    inspectContainer: async () => undefined,
  } as unknown as ContainerEngine;
  const run = { id: "run-1", flowId: "flow-1", epoch: 2, version: 5, agentId: AGENT, state: "Running", startedAt: new Date().toISOString(), parameters: {} };
  const client = {
    getFlowRun: async () => ({ ...run, ...serverRun() }) as FlowRunView,
    appendLogs: async () => {},
    reportPhases: async () => ({}),
    setFlowRunState: async () => ({}),
  } as unknown as ApiClient;
  const options = compileAgentOptions(defaultConfig({ agent: { name: "lost", stopGrace: "300ms" } }));
  const claim = { flowRun: run, flow: { ...flowInput(), id: "flow-1", slug: "f", version: 1, createdAt: new Date().toISOString() } } as unknown as AgentClaim;
  const lifecycle = new RunLifecycle(claim, {
    client,
    engine,
    logger: pino({ level: "silent" }),
    agentId: AGENT,
    options,
    berthImage: async () => "unused",
    images: {} as never,
    metrics: new AgentMetrics({ slots: 1, slotsUsed: () => 1 }),
    engineBack: async () => {},
    stopping: new AbortController().signal,
  });
  const container: ContainerInfo = { id: "c1", name: "berth-run-run-1", image: "x", labels: {}, state: "running", exitCode: null };
  const following = lifecycle.adopt(container);
  return { lifecycle, stops, exit, following };
}

describe("a run the server no longer renews", () => {
  it("ended by this attempt: its container gets the stop grace to exit by itself", async () => {
    const h = harness(() => ({ state: "Success", endedAt: new Date().toISOString() }));
    await h.lifecycle.lost("the server says another attempt owns this flow run now");
    await new Promise((r) => setTimeout(r, 100));
    expect(h.stops).toEqual([]);
    expect(h.lifecycle.abandoned).toBe(false);
    h.exit(0);
    await h.following;
    await new Promise((r) => setTimeout(r, 400));
    expect(h.stops).toEqual([]);
  });

  it("ended by this attempt but its container does not exit: stopped after the grace", async () => {
    const h = harness(() => ({ state: "Failed" }));
    await h.lifecycle.lost("the server says another attempt owns this flow run now");
    await h.following;
    expect(h.stops).toHaveLength(1);
    expect(h.stops[0]!.at).toBeGreaterThanOrEqual(250);
    expect(h.stops[0]!.graceMs).toBe(300);
  });

  it("owned by another attempt: its container is stopped at once", async () => {
    const h = harness(() => ({ state: "Running", epoch: 3, agentId: "agent-2" }));
    await h.lifecycle.lost("the server says another attempt owns this flow run now");
    expect(h.stops).toEqual([{ at: expect.any(Number) as number, graceMs: 0 }]);
    expect(h.lifecycle.abandoned).toBe(true);
    await h.following;
  });
});

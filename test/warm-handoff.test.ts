/**
 * A run handed to a warm container: the run and the run's name go at once, and the run log says so; a name
 * held by a later attempt makes the attempt stale, and its container is removed. On a fake engine, a fake
 * server and a pool filled by an earlier cold run.
 */
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { AgentClaim } from "../agent/flow-cache.js";
import { AgentMetrics } from "../agent/metrics.js";
import { RunLifecycle } from "../agent/run-lifecycle.js";
import { WarmPool } from "../agent/warm-pool.js";
import type { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import { EPOCH_LABEL, type ContainerEngine, type ContainerInfo } from "../engine/port.js";
import { BerthError } from "../wire/errors.js";
import type { FlowRun, FlowRunView } from "../wire/schema.js";
import { flowInput } from "./support/fixtures.js";
import { until } from "./support/wait.js";

const AGENT = "agent-12345678";

/** What the agent asked of the engine for one container, in order. */
const engineCalls = (calls: string[], id: string) => calls.filter((c) => new RegExp(`^(run|send|rename|stop|remove) ${id}$`).test(c));

function harness() {
  const calls: string[] = [];
  /** When each call was made (performance.now()), the first of each. */
  const at = new Map<string, number>();
  const note = (call: string) => {
    calls.push(call);
    if (!at.has(call)) at.set(call, performance.now());
  };
  const exits = new Map<string, (code: number) => void>();
  let made = 0;
  let holder: ContainerInfo | undefined;
  const engine = {
    imageId: async () => "sha256:img",
    runContainer: async () => {
      const id = `c${++made}`;
      calls.push(`run ${id}`);
      return id;
    },
    openInput: async (id: string) => ({ send: async () => note(`send ${id}`), close: () => {}, lost: false }),
    renameContainer: async (id: string, name: string) => {
      if (holder) throw new BerthError("BERTH_E_CONFLICT", `${name} is taken`);
      calls.push(`rename ${id}`);
    },
    inspectContainer: async () => holder,
    waitContainer: (id: string) => new Promise<number>((resolve) => exits.set(id, resolve)),
    stopContainer: async (id: string) => {
      calls.push(`stop ${id}`);
      exits.get(id)?.(137);
    },
    removeContainer: async (id: string) => void calls.push(`remove ${id}`),
    followOutput: async function* () {},
    containerOutput: async () => "",
  } as unknown as ContainerEngine;
  const options = compileAgentOptions(defaultConfig({ agent: { name: "warm", warmPool: 1 } }));
  const pool = new WarmPool({ engine, agentId: () => AGENT, size: 1, ttlMs: 60_000, log: () => pino({ level: "silent" }) });
  const flow = { ...flowInput(), id: "flow-1", slug: "f", version: 1, createdAt: new Date().toISOString() };
  const lifecycle = (runId: string, epoch = 1) => {
    const run = { id: runId, flowId: "flow-1", epoch, version: 2, agentId: AGENT, state: "Submitted", parameters: {} } as unknown as FlowRun;
    const client = {
      // The container reported its final state itself.
      getFlowRun: async () => ({ ...run, state: "Success", endedAt: new Date().toISOString() }) as FlowRunView,
      appendLogs: async (_id: string, lines: Array<{ message: string }>) => void calls.push(...lines.map((l) => `log ${l.message}`)),
      reportPhases: async (_id: string, phases: Record<string, unknown>) => note(`phases ${Object.keys(phases).filter((k) => k !== "epoch").sort().join(",")}`),
      setFlowRunState: async () => ({}),
    } as unknown as ApiClient;
    return new RunLifecycle({ flowRun: run, flow, runToken: "t" } as unknown as AgentClaim, {
      client,
      engine,
      logger: pino({ level: "silent" }),
      agentId: AGENT,
      options,
      berthImage: async () => "unused",
      images: { ensure: async () => ({ image: "img:1", source: "present", imageId: "sha256:img" }) } as never,
      metrics: new AgentMetrics({ slots: 1, slotsUsed: () => 1 }),
      engineBack: async () => {},
      stopping: new AbortController().signal,
      warmPool: pool,
    });
  };
  /** A cold run, whose shape the pool then keeps one idle container of. */
  const warmUp = async () => {
    const cold = lifecycle("cold").run();
    await until("the cold container", () => exits.has("c1"));
    exits.get("c1")!(0);
    await cold;
    await until("an idle warm container", () => pool.idleCount === 1);
    calls.length = 0;
  };
  return { calls, at, exits, lifecycle, warmUp, setHolder: (h: ContainerInfo) => (holder = h) };
}

describe("a run handed to a warm container", () => {
  it("gets the run and its name at once, and the run log says which container it is", async () => {
    const h = harness();
    await h.warmUp();
    const running = h.lifecycle("long").run();
    await until("the run and the name", () => h.calls.includes("send c2") && h.calls.includes("rename c2"));
    await until("the run log line", () => h.calls.includes("log started in warm container c2"));
    // The timeline of its start waits (250 ms): the container's own first request goes first.
    const steps = "phases containerCreated,containerStarted,imageReady,imageSource";
    await until("the start's steps", () => h.calls.includes(steps), { timeoutMs: 5_000 });
    expect(h.at.get(steps)! - h.at.get("send c2")!).toBeGreaterThanOrEqual(200);
    h.exits.get("c2")!(0);
    await running;
    expect(engineCalls(h.calls, "c2")).toEqual(["send c2", "rename c2", "remove c2"]);
  });

  it("is stale when a later attempt's container holds the run's name: removed, nothing reported", async () => {
    const h = harness();
    await h.warmUp();
    h.setHolder({ id: "later", name: "berth-run-stale", image: "x", labels: { [EPOCH_LABEL]: "5" }, state: "running", exitCode: null });
    const lifecycle = h.lifecycle("stale", 1);
    await lifecycle.run();
    await new Promise((r) => setTimeout(r, 200));
    expect(engineCalls(h.calls, "c2")).toEqual(["send c2", "remove c2"]);
    expect(h.calls.filter((c) => c.startsWith("log ") || c.startsWith("phases "))).toEqual([]);
    expect(lifecycle.abandoned).toBe(true);
  });
});

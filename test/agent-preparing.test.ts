/**
 * A run whose image the agent is still building: it says how far it got, the reaper does not take the long
 * build for a stuck start, a cancel stops the run's wait, and an agent that stops hands the run back. Without
 * Docker: the engine is a fake whose build lasts until it is aborted; the server, its reaper and the agent
 * are real.
 */
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect } from "vitest";
import { Agent } from "../agent/agent.js";
import { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import type { ServerOptions } from "../config/compile.js";
import type { BuildOptions, ContainerEngine } from "../engine/port.js";
import { BerthError } from "../wire/errors.js";
import { flowBody } from "./support/fixtures.js";
import { test as it, type TestServerOptions, type TestServer } from "./support/server.js";
import { until } from "./support/wait.js";

/** An engine with no images and no registry, whose builds last until they are aborted. */
function buildingEngine() {
  const builds: BuildOptions[] = [];
  const refuse = (): never => {
    throw new Error("this test starts no containers");
  };
  const engine = {
    ping: async () => {},
    listContainers: async () => [],
    imageExists: async () => false,
    pullImage: async (ref: string) => {
      throw new BerthError("BERTH_E_IMAGE_NOT_FOUND", `cannot pull image ${ref}: no registry here`);
    },
    buildImage: (options: BuildOptions) => {
      builds.push(options);
      return new Promise((_, reject) => {
        options.signal?.addEventListener("abort", () => reject(new BerthError("BERTH_E_ABORTED", `docker build of ${options.tag} was aborted`)));
      });
    },
    runContainer: refuse,
    followContainerEvents: async function* () {},
  } as unknown as ContainerEngine;
  return { engine, builds };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A server on loopback with one flow whose image nobody has, one run of it, and an agent that must build it.
 * `fetch` stands between the agent and the server.
 */
async function buildingAgent(
  startServer: (options?: TestServerOptions) => Promise<TestServer>,
  config: Partial<ServerOptions>,
  fetch: typeof globalThis.fetch = globalThis.fetch,
) {
  const server = await startServer({ config });
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const address = server.app.server.address();
  const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  const client = new ApiClient({ baseUrl: url });
  const archive = Buffer.from("a build context ".repeat(64));
  const sha256 = createHash("sha256").update(archive).digest("hex");
  await client.uploadBuildContext(sha256, archive);
  const storage = { type: "docker" as const, image: "slow-build:1", flows: {}, context: { sha256, size: archive.length, berthBase: true } };
  const { flow } = await client.registerFlow(flowBody({ storage }));
  const { flowRun } = await client.createFlowRun({ flowId: flow.id });

  const { engine, builds } = buildingEngine();
  const lines: { msg: string }[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString())), done()) }));
  const options = compileAgentOptions(
    defaultConfig({ apiUrl: url, agent: { name: "builder", pullPolicy: "never", heartbeatInterval: "100ms", claimWait: "200ms", drainTimeout: "2s" } }),
  );
  const agent = new Agent({ client: new ApiClient({ baseUrl: url, fetch }), engine, logger, berthImage: async () => "berth:test" }, options);
  const life = agent.run();
  await until("the agent to start building", () => builds.length === 1);
  return { server, client, agent, life, builds, flowRun, sha256, archive, lines };
}

describe("an agent preparing a run", () => {
  it("refreshes the run's Submitted state while it builds, so the start timeout does not reschedule it; a cancel stops its wait", async ({ startServer }) => {
    const startTimeoutMs = 900;
    const { server, client, agent, life, builds, flowRun, sha256, archive, lines } = await buildingAgent(startServer, { startTimeoutMs, reaperIntervalMs: 100 });
    try {
      // Three start timeouts: long enough for the reaper to have rescheduled a run nobody refreshed.
      await sleep(3 * startTimeoutMs);
      const building = await client.getFlowRun(flowRun.id);
      expect({ state: building.state, epoch: building.epoch }).toEqual({ state: "Submitted", epoch: 1 });
      expect(building.stateMessage).toBe(`agent ${building.agentId}: building image slow-build:1 from the registered build context ${sha256.slice(0, 12)} (${archive.length} bytes)`);
      const refreshes = (await client.listFlowRunStates(flowRun.id)).filter((s) => s.state === "Submitted");
      expect(refreshes.length).toBeGreaterThanOrEqual(3);

      await client.cancelFlowRun(flowRun.id);
      // The agent hears of it on its next heartbeat, as a cancel (not as a run lost to another attempt), and
      // stops waiting for the image: nothing is started.
      await until("the agent to let the run go", () => agent.runningFlowRuns.length === 0);
      expect(lines.map((l) => l.msg)).toContain("cancelling flow run: stopping its container");
      expect(server.lines.map((l) => String(l.msg))).not.toContainEqual(expect.stringContaining("holds flow runs it has lost"));
      expect((await client.getFlowRun(flowRun.id)).state).toBe("Cancelled");
    } finally {
      await agent.stop();
      await life;
    }
    // The build itself stops with the agent.
    expect(builds[0]!.signal?.aborted).toBe(true);
  });

  it("hands the run back when the agent stops before the image is ready", async ({ startServer }) => {
    const { client, agent, life, flowRun } = await buildingAgent(startServer, {});
    await agent.stop();
    await life;
    const run = await client.getFlowRun(flowRun.id);
    expect({ state: run.state, agentId: run.agentId }).toEqual({ state: "Scheduled", agentId: null });
    expect(run.stateMessage).toMatch(/^handed back by agent \S+: it stopped before the run's image was ready \(.*aborted.*\)$/);
  });

  it("sends no progress to a server that does not say its start timeout, and stops at the first refusal of one that does", async ({ startServer }) => {
    const posts: string[] = [];
    // A server of an earlier berth: no startTimeoutMs in claim replies, or Submitted → Submitted refused.
    let sayTimeout = false;
    const older = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      if (url.pathname.endsWith("/state") && (JSON.parse(String(init?.body ?? "{}")) as { state?: string }).state === "Submitted") {
        posts.push("Submitted");
        const error = { code: "BERTH_E_INVALID_TRANSITION", message: "cannot go from Submitted to Submitted" };
        return new Response(JSON.stringify({ error }), { status: 409, headers: { "content-type": "application/json" } });
      }
      const res = await globalThis.fetch(input, init);
      if (!url.pathname.endsWith("/claim") || sayTimeout) return res;
      const { startTimeoutMs: _, ...reply } = (await res.json()) as Record<string, unknown>;
      return new Response(JSON.stringify(reply), { status: res.status, headers: { "content-type": "application/json" } });
    }) as typeof globalThis.fetch;
    // The reaper would reschedule what is not refreshed: it must not run here.
    const first = await buildingAgent(startServer, { startTimeoutMs: 300, reaperIntervalMs: 3_600_000 }, older);
    await sleep(1_000);
    expect(posts).toEqual([]);
    await first.agent.stop();
    await first.life;

    sayTimeout = true;
    const second = await buildingAgent(startServer, { startTimeoutMs: 300, reaperIntervalMs: 3_600_000 }, older);
    try {
      await sleep(1_000);
      expect(posts).toEqual(["Submitted"]);
      expect(second.agent.runningFlowRuns).toEqual([second.flowRun.id]);
    } finally {
      await second.agent.stop();
      await second.life;
    }
  });
});

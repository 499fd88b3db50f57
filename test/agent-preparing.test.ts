/**
 * A run whose image the agent is still building: it says how far it got, the reaper does not take the long
 * build for a stuck start, and a cancel stops the run's wait. Without Docker: the engine is a fake whose
 * build takes as long as the test wants; the server, its reaper and the agent are real.
 */
import { createHash } from "node:crypto";
import pino from "pino";
import { describe, expect } from "vitest";
import { Agent } from "../agent/agent.js";
import { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import type { BuildOptions, ContainerEngine } from "../engine/port.js";
import { BerthError } from "../wire/errors.js";
import { flowBody } from "./support/fixtures.js";
import { test as it } from "./support/server.js";
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

describe("an agent preparing a run", () => {
  it("refreshes the run's Submitted state while it builds, so the start timeout does not reschedule it; a cancel stops it", async ({ startServer }) => {
    const startTimeoutMs = 900;
    const server = await startServer({ config: { startTimeoutMs, reaperIntervalMs: 100 } });
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
    const options = compileAgentOptions(
      defaultConfig({ apiUrl: url, agent: { name: "builder", pullPolicy: "never", heartbeatInterval: "100ms", claimWait: "200ms", drainTimeout: "2s" } }),
    );
    const agent = new Agent({ client, engine, logger: pino({ level: "silent" }), berthImage: async () => "berth:test" }, options);
    const life = agent.run();
    try {
      await until("the agent to start building", () => builds.length === 1);
      // Three start timeouts: long enough for the reaper to have rescheduled a run nobody refreshed.
      await new Promise((resolve) => setTimeout(resolve, 3 * startTimeoutMs));
      const building = await client.getFlowRun(flowRun.id);
      expect({ state: building.state, epoch: building.epoch }).toEqual({ state: "Submitted", epoch: 1 });
      expect(building.stateMessage).toBe(`agent ${building.agentId}: building image slow-build:1 from the registered build context ${sha256.slice(0, 12)} (${archive.length} bytes)`);
      const refreshes = (await client.listFlowRunStates(flowRun.id)).filter((s) => s.state === "Submitted");
      expect(refreshes.length).toBeGreaterThanOrEqual(3);

      await client.cancelFlowRun(flowRun.id);
      // The agent hears of it on its next heartbeat and stops waiting for the image: nothing is started.
      await until("the agent to let the run go", () => agent.runningFlowRuns.length === 0);
      expect((await client.getFlowRun(flowRun.id)).state).toBe("Cancelled");
    } finally {
      await agent.stop();
      await life;
    }
    // The build itself stops with the agent.
    expect(builds[0]!.signal?.aborted).toBe(true);
  });
});

/**
 * Containers left on the engine by an agent that is gone for good: another agent on the same engine removes
 * those of runs that are over, on the real engine, and leaves every other container alone.
 */
import { execFileSync } from "node:child_process";
import pino from "pino";
import { afterAll, describe, expect } from "vitest";
import { Agent } from "../agent/agent.js";
import { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import { AGENT_LABEL, FLOW_RUN_LABEL, OWNER_LABEL } from "../engine/port.js";
import { TarTree } from "../shared/tar-tree.js";
import { TEST_LABEL, dockerSuite, suiteTitle } from "./support/docker-suite.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { samples } from "./support/prometheus.js";
import { test as it } from "./support/server.js";

const suite = await dockerSuite("orphans");

describe.skipIf(suite.skipReason !== undefined)(suiteTitle("containers left by agents gone for good", suite), () => {
  const { engine, id } = suite;
  const image = `berth-test-${id}/idle:1`;

  afterAll(async () => {
    await suite.cleanup();
    await engine.removeImage(image).catch(() => undefined);
  });

  it("are removed once their runs are over; a run's not over, another berth's and live agents' stay", { timeout: 60_000 }, async ({ startServer }) => {
    const server = await startServer({ config: { agentGoneAfterMs: 200 } });
    await server.app.listen({ host: "127.0.0.1", port: 0 });
    const address = server.app.server.address();
    const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    const client = new ApiClient({ baseUrl: url });
    const flow = (await client.registerFlow(flowBody())).flow;
    // No agent here can take these runs: they stay Scheduled, or are cancelled.
    const run = async () => (await client.createFlowRun({ flowId: flow.id, labels: ["nobody-has-this"] })).flowRun.id;
    const over = await run();
    await client.cancelFlowRun(over);
    const waiting = await run();
    const gone = await client.registerAgent({ name: uniqueName("gone") });

    const context = new TarTree().data("Dockerfile", "FROM scratch\nCOPY content /content\n").data("content", "idle\n");
    await engine.buildImage({ context: context.pack(), tag: image, labels: { [TEST_LABEL]: id } });
    // Made, never started (the image has no program): left behind as a killed agent leaves an exited one.
    const container = (name: string, agentId: string, flowRunId: string) => {
      const labels = { [OWNER_LABEL]: "true", [AGENT_LABEL]: agentId, [FLOW_RUN_LABEL]: flowRunId, [TEST_LABEL]: id };
      execFileSync("docker", ["create", "--name", `berth-test-${id}-${name}`, ...Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]), image, "/nothing"], { stdio: "ignore" });
      return `berth-test-${id}-${name}`;
    };
    const orphan = container("orphan", gone.id, over);
    const stays = [container("waiting", gone.id, waiting), container("other-berth", "agent-of-another-server", over)];
    await new Promise((resolve) => setTimeout(resolve, 300));

    const options = compileAgentOptions(defaultConfig({ apiUrl: url, agent: { name: uniqueName("sweeper"), heartbeatInterval: "100ms", claimWait: "200ms" } }));
    const agent = new Agent({ client, engine, logger: pino({ level: "silent" }), berthImage: () => Promise.reject(new Error("unused")) }, options);
    await agent.start();
    try {
      // The agent looks once as it starts; a second pass finds nothing more to remove.
      const left = async () => new Set((await engine.listContainers({ [TEST_LABEL]: id })).map((c) => c.name));
      const deadline = Date.now() + 10_000;
      while ((await left()).has(orphan) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect([...(await left())].sort()).toEqual([...stays].sort());
      expect(await agent.removeOrphans()).toEqual([]);
      const removed = samples(await agent.metrics.registry.metrics()).filter((s) => s.name === "berth_agent_orphan_containers_removed_total");
      expect(removed).toEqual([{ name: "berth_agent_orphan_containers_removed_total", labels: {}, value: 1 }]);
    } finally {
      await agent.stop();
    }
  });
});

/**
 * (d) What an image costs a run: flow run created → its container started, when the image is on the agent's
 * host, when the agent must pull it (from a registry on 127.0.0.1), and when it must build it from the
 * registered build context. Measured in one process, one scenario after another, per round.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { freePort } from "./ports.js";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { Agent } from "../agent/agent.js";
import { createAgent } from "../cli/daemons.js";
import type { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import type { Config } from "../config/schema.js";
import type { ContainerEngine } from "../engine/port.js";
import { ensureBerthImage } from "../images/index.js";
import { registerFlowFile } from "../storage/register.js";

export interface ImageBenchContext {
  engine: ContainerEngine;
  client: ApiClient;
  config: Config;
  logger: Logger;
  dir: string;
  flowFile: string;
  rounds: number;
  /** Created → started, as the engine saw it; removes the run's container. */
  pickup: (runId: string) => Promise<number>;
}

export interface ImageBenchResult {
  present: number[];
  pulled: number[];
  built: number[];
}

export async function runImageBench(ctx: ImageBenchContext): Promise<ImageBenchResult> {
  const port = await freePort();
  const registryConfig = path.join(ctx.dir, "registry.yml");
  await writeFile(
    registryConfig,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(ctx.dir, "registry")}\nhttp:\n  addr: 127.0.0.1:${port}\n`,
  );
  const registry = spawn("docker-registry", ["serve", registryConfig], { stdio: "ignore" });
  const agents: Agent[] = [];
  try {
    await waitForRegistry(port);
    const agentFor = async (label: string, pullPolicy: "if-not-present" | "never") => {
      const config = { ...ctx.config, agent: { ...ctx.config.agent, name: `bench-${label}`, labels: [label], pullPolicy } };
      const agent = await createAgent(compileAgentOptions(config), ctx.logger, ctx.engine);
      await agent.start();
      agents.push(agent);
    };
    await agentFor("pull", "if-not-present");
    await agentFor("build", "never");
    process.env.BERTH_TEST_REGISTRY = `127.0.0.1:${port}/`;
    const registered = await registerFlowFile(ctx.flowFile, { client: ctx.client, engine: ctx.engine, log: () => {}, berthImage: () => ensureBerthImage(ctx.engine) });
    const image = registered.location;
    const run = async (label: string) => {
      await new Promise((resolve) => setTimeout(resolve, 150));
      const { flowRun } = await ctx.client.createFlowRun({ flowName: registered.flow.name, labels: [label], parameters: {} });
      return ctx.pickup(flowRun.id);
    };
    const result: ImageBenchResult = { present: [], pulled: [], built: [] };
    for (let round = 0; round <= ctx.rounds; round++) {
      const present = await run("pull");
      await ctx.engine.removeImage(image);
      const pulled = await run("pull");
      await ctx.engine.removeImage(image);
      const built = await run("build");
      // Round 0 warms up (the berth image, the registry's first answers).
      if (round === 0) continue;
      result.present.push(present);
      result.pulled.push(pulled);
      result.built.push(built);
    }
    return result;
  } finally {
    for (const agent of agents) await agent.stop();
    registry.kill("SIGTERM");
    await once(registry, "exit");
    delete process.env.BERTH_TEST_REGISTRY;
  }
}

async function waitForRegistry(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the bench registry on 127.0.0.1:${port} did not answer`);
}

/**
 * (d) Schedule lateness: a slot's time → its run's container started (the engine's StartedAt), for an
 * interval schedule with an idle agent. The scheduler makes the runs ahead of time; the agent's parked claim
 * is woken by the server when the next run becomes due, so lateness is the pickup cost, not a poll interval.
 */
import type { Logger } from "pino";
import type { Agent } from "../agent/agent.js";
import { createAgent } from "../cli/daemons.js";
import type { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import type { Config } from "../config/schema.js";
import type { ContainerEngine } from "../engine/port.js";
import { ensureBerthImage } from "../images/index.js";
import { registerFlowFile } from "../storage/register.js";
import { FINAL_FLOW_RUN_STATES, type FlowRun } from "../wire/schema.js";

export interface ScheduleBenchContext {
  engine: ContainerEngine;
  client: ApiClient;
  config: Config;
  logger: Logger;
  flowFile: string;
  /** Slots measured, after `warmup` more. */
  slots: number;
  warmup: number;
  /** The interval between slots, as IntervalSchedule's `every` takes it. */
  every: string;
  /** The container's StartedAt in epoch ms. */
  startedAt: (container: string) => Promise<number>;
}

export async function runScheduleBench(ctx: ScheduleBenchContext): Promise<number[]> {
  const label = "bench-schedule";
  const flowName = "Bench Schedule";
  const config = { ...ctx.config, agent: { ...ctx.config.agent, name: "bench-schedule", labels: [label] } };
  const agent: Agent = await createAgent(compileAgentOptions(config), ctx.logger, ctx.engine);
  await agent.start();
  const env = { BERTH_TEST_FLOW_NAME: flowName, BERTH_TEST_LABEL: label, BERTH_TEST_EVERY: ctx.every };
  Object.assign(process.env, env);
  try {
    await registerFlowFile(ctx.flowFile, { client: ctx.client, engine: ctx.engine, log: () => {}, berthImage: () => ensureBerthImage(ctx.engine) });
    const wanted = ctx.slots + ctx.warmup;
    const seen = new Map<string, number>();
    while (seen.size < wanted) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const { flowRuns } = await ctx.client.listFlowRuns({ flowName, limit: 1000 });
      const finished = flowRuns
        .filter((run) => FINAL_FLOW_RUN_STATES.includes(run.state) && !seen.has(run.id))
        .sort((a, b) => Date.parse(a.scheduledStart) - Date.parse(b.scheduledStart));
      for (const run of finished) seen.set(run.id, await lateness(ctx, run));
      const failed = finished.find((run) => run.state !== "Success");
      if (failed) throw new Error(`scheduled bench run ${failed.id} ended ${failed.state}: ${failed.stateMessage}`);
    }
    await ctx.client.pauseSchedule(flowName, true);
    // The first slots come while the registration's image work settles: drop them as warm-up.
    return [...seen.values()].slice(ctx.warmup, wanted);
  } finally {
    await agent.stop();
    for (const key of Object.keys(env)) delete process.env[key];
  }
}

async function lateness(ctx: ScheduleBenchContext, run: FlowRun): Promise<number> {
  const container = `berth-run-${run.id}`;
  const started = await ctx.startedAt(container);
  await ctx.engine.waitContainer(container);
  await ctx.engine.removeContainer(container);
  return started - Date.parse(run.scheduledStart);
}

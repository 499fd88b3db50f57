/**
 * What one run costs, under load and warm, each against a baseline measured in the same run:
 *
 * (i) load: 100 trivial runs through one agent at concurrency 8 (created at once; until every run is
 *     Success and every container removed), against `docker run --rm` of the same image and flow, 8 at a
 *     time; and the same through an agent with a warm pool of 8;
 * (j) the flow-run process's CPU per trivial run (user + system, as the shell's `times` reports for its
 *     child), against `berth execute flow-file` of the same flow in the same image;
 * (k) warm: with a warm pool, run created → Running recorded (the flow's code about to start) and created →
 *     Success recorded, against `docker run --rm` of the same image and flow (measured by (b));
 * (l) claims per second with a 10,000-task flow against a 2-task flow, 8 claimers over HTTP that hold the
 *     flows they were sent (ClaimRequest.knownFlows), a fresh server for each drain, the median of three
 *     drains each, alternated; and the 10,000-task flow's claims without knownFlows.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import type { Logger } from "pino";
import { FlowCache } from "../agent/flow-cache.js";
import { ApiClient } from "../client/api-client.js";
import { createAgent, startServer } from "../cli/daemons.js";
import { compileAgentOptions, compileServerOptions, flowRunEnvironment, type RunDescription } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { AGENT_LABEL, type ContainerEngine } from "../engine/port.js";
import { FINAL_FLOW_RUN_STATES, type FlowCreate } from "../wire/schema.js";
import { benchFlow } from "./flow-body.js";

export interface PerRunBenchContext {
  engine: ContainerEngine;
  client: ApiClient;
  config: Config;
  logger: Logger;
  serverUrl: string;
  /** The registered trivial flow's storage image, and where the flow is in it. */
  image: string;
  flowName: string;
  flowLocation: string;
  dir: string;
}

const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`per-run bench: timed out waiting for ${what}`);
    await sleep(50);
  }
}

function dockerArgs(image: string, cmd: string[], env: Record<string, string> = {}): string[] {
  return ["run", "--rm", "--network", "host", ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]), image, ...cmd];
}

async function docker(args: string[]): Promise<string> {
  const child = spawn("docker", args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`docker ${args.join(" ")} exited ${code}: ${output}`);
  return output;
}

/** An in-process agent of its own, on its own label, so no other agent of the bench takes its runs. */
async function benchAgent(ctx: PerRunBenchContext, name: string, concurrency: number, warmPool: number) {
  const config = defaultConfig({
    apiToken: ctx.config.apiToken,
    home: ctx.config.home,
    agent: { name, labels: [name], concurrency, warmPool, claimWait: "20s" },
  });
  const agent = await createAgent(compileAgentOptions({ ...config, apiUrl: ctx.serverUrl }), ctx.logger, ctx.engine);
  await agent.start();
  return agent;
}

async function drainRuns(ctx: PerRunBenchContext, label: string, count: number, agentId: string): Promise<number> {
  const t0 = nowMs();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await ctx.client.createFlowRun({ flowName: ctx.flowName, labels: [label], parameters: {} })).flowRun.id);
  // The runs in the order they were made (about the order they end): each look asks for the oldest one not
  // seen ended yet. Listing them all every 50 ms instead cost the server this bench shares a process with
  // about a CPU-second per 100 runs (each queued run's pickup reasons), on the measured side only.
  let ended = 0;
  await until(`${count} runs to end`, async () => {
    while (ended < count) {
      const run = await ctx.client.getFlowRun(ids[ended]!);
      if (!FINAL_FLOW_RUN_STATES.includes(run.state)) return false;
      if (run.state !== "Success") throw new Error(`per-run bench: run ${run.id} ended ${run.state}: ${run.stateMessage}`);
      ended++;
    }
    return true;
  });
  await until("the runs' containers to be removed", async () => (await ctx.engine.listContainers({ [AGENT_LABEL]: agentId })).filter((c) => !c.name.startsWith("berth-warm-")).length === 0);
  return nowMs() - t0;
}

export async function runLoadBench(ctx: PerRunBenchContext, runs = 100, parallel = 8) {
  const cold = await benchAgent(ctx, "bench-load", parallel, 0);
  let berthMs: number;
  try {
    await drainRuns(ctx, "bench-load", parallel, cold.id!); // warm-up: image caches, first connections
    berthMs = await drainRuns(ctx, "bench-load", runs, cold.id!);
  } finally {
    await cold.stop();
  }
  const warm = await benchAgent(ctx, "bench-load-warm", parallel, parallel);
  let warmMs: number;
  try {
    await drainRuns(ctx, "bench-load-warm", parallel, warm.id!);
    await until("the warm pool to fill", async () => (await ctx.engine.listContainers({ [AGENT_LABEL]: warm.id! })).filter((c) => c.name.startsWith("berth-warm-") && c.state === "running").length >= parallel);
    warmMs = await drainRuns(ctx, "bench-load-warm", runs, warm.id!);
  } finally {
    await warm.stop();
  }
  const t0 = nowMs();
  let next = 0;
  const worker = async () => {
    while (next < runs) {
      next++;
      await docker(dockerArgs(ctx.image, ["berth", "execute", "flow-file", ctx.flowLocation]));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  const dockerMs = nowMs() - t0;
  return { runs, parallel, berthMs, warmMs, dockerMs };
}

/** The children's CPU seconds from the shell's `times` (its second line: "0m0.250s 0m0.100s"). */
function childCpu(output: string): number {
  const lines = output.trim().split("\n");
  const match = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines[lines.length - 1]!.trim());
  if (!match) throw new Error(`per-run bench: no CPU times in: ${output.slice(-300)}`);
  return Number(match[1]) * 60 + Number(match[2]) + Number(match[3]) * 60 + Number(match[4]);
}

export async function runCpuBench(ctx: PerRunBenchContext, rounds = 7) {
  const agent = await ctx.client.registerAgent({ name: "bench-cpu", labels: ["bench-cpu"] });
  const flowRun: number[] = [];
  const flowFile: number[] = [];
  for (let i = 0; i < rounds + 1; i++) {
    await ctx.client.createFlowRun({ flowName: ctx.flowName, labels: ["bench-cpu"], parameters: {} });
    const [claim] = (await ctx.client.claim(agent.id, { waitMs: 5_000 })).claims;
    if (!claim?.flow) throw new Error("per-run bench: the CPU bench's run was not claimed");
    const run: RunDescription = {
      flowId: claim.flow.id,
      flowName: claim.flow.name,
      version: claim.flowRun.version,
      parameters: claim.flowRun.parameters,
      storage: claim.flow.storage,
    };
    const env = flowRunEnvironment({
      apiUrl: ctx.serverUrl,
      apiToken: claim.runToken,
      flowRunId: claim.flowRun.id,
      epoch: claim.flowRun.epoch,
      heartbeatIntervalMs: 10_000,
      serverDownForMs: 30_000,
      run,
    });
    const a = childCpu(await docker(dockerArgs(ctx.image, ["sh", "-c", "berth execute flow-run; times"], env)));
    const final = await ctx.client.getFlowRun(claim.flowRun.id);
    if (final.state !== "Success") throw new Error(`per-run bench: CPU run ended ${final.state}: ${final.stateMessage}`);
    const b = childCpu(await docker(dockerArgs(ctx.image, ["sh", "-c", `berth execute flow-file ${ctx.flowLocation}; times`])));
    if (i > 0) {
      flowRun.push(a);
      flowFile.push(b);
    }
  }
  return { flowRun, flowFile };
}

export async function runWarmBench(ctx: PerRunBenchContext, rounds = 25) {
  const agent = await benchAgent(ctx, "bench-warm", 1, 1);
  const running: number[] = [];
  const success: number[] = [];
  const idle = async () => (await ctx.engine.listContainers({ [AGENT_LABEL]: agent.id! })).filter((c) => c.name.startsWith("berth-warm-") && c.state === "running").length;
  try {
    for (let i = 0; i < rounds + 3; i++) {
      if (i > 0) await until("a warm container", async () => (await idle()) === 1);
      // The agent back in its long-poll: idle, as (a) measures.
      await sleep(150);
      const { flowRun } = await ctx.client.createFlowRun({ flowName: ctx.flowName, labels: ["bench-warm"], parameters: {} });
      let final;
      // Its times are the server's records, not when this loop sees them: the first look waits until the run
      // is likely over, rather than ask the server (this process) while it hands the run over.
      await sleep(50);
      await until("the warm run to end", async () => {
        final = await ctx.client.getFlowRun(flowRun.id);
        return FINAL_FLOW_RUN_STATES.includes(final.state);
      });
      const run = final!;
      if (run.state !== "Success") throw new Error(`per-run bench: warm run ended ${run.state}: ${run.stateMessage}`);
      const logs = (await ctx.client.getLogs(flowRun.id, { after: 0, limit: 100 })).logs;
      const warm = logs.some((l) => l.message.startsWith("started in warm container"));
      if (i >= 3) {
        if (!warm) throw new Error(`per-run bench: run ${flowRun.id} did not start warm`);
        const created = Date.parse(run.createdAt);
        running.push(Date.parse(run.startedAt!) - created);
        success.push(Date.parse(run.endedAt!) - created);
      }
    }
  } finally {
    await agent.stop();
  }
  return { running, success };
}

/** A flow of `tasks` tasks (a chain), as a registration carries it. */
function flowOf(name: string, tasks: number, labels: string[]): FlowCreate {
  const flow = benchFlow(name, labels);
  flow.tasks = Array.from({ length: tasks }, (_, i) => ({ slug: `task-${i}`, name: `task ${i}`, ...(i > 0 ? { upstream: [`task-${i - 1}`] } : {}) })) as FlowCreate["tasks"];
  return flow;
}

export async function runClaimPayloadBench(dir: string, logger: Logger, runs = 2_000, claimers = 8) {
  const apiToken = `berth_admin_claims_${process.pid}`;
  /** A fresh server per measurement, so that each drains the same queue on the same store. */
  const drain = async (label: string, tasks: number, knownFlows: boolean, count = runs) => {
    const config = defaultConfig({ apiToken, home: dir, server: { port: 0, db: path.join(dir, `claims-${label}.db`) } });
    const server = await startServer(compileServerOptions(config), logger);
    try {
      const client = new ApiClient({ baseUrl: server.url, token: apiToken });
      const { flow } = await client.registerFlow(flowOf(`claims-${label}`, tasks, [label]));
      // One more run per claimer: each claimer's first claim is not timed (it fetches the flow once, as an
      // agent does the first time it runs a flow version).
      for (let i = 0; i < count + claimers; i++) await client.createFlowRun({ flowId: flow.id, labels: [label], parameters: {} });
      const agents = await Promise.all(
        Array.from({ length: claimers }, async (_, i) => {
          const agent = await client.registerAgent({ name: `${label}-${i}`, labels: [label] });
          const cache = new FlowCache();
          const claim = async () => {
            const reply = await client.claim(agent.id, { max: 1, waitMs: 0, ...(knownFlows ? { knownFlows: cache.ids() } : {}) });
            await cache.completeAll(reply.claims, client, () => {});
            return reply.claims.length;
          };
          await claim();
          return claim;
        }),
      );
      let claimed = 0;
      const t0 = nowMs();
      await Promise.all(
        agents.map(async (claim) => {
          while ((await claim()) > 0) claimed++;
        }),
      );
      if (claimed !== count) throw new Error(`per-run bench: claimed ${claimed} of ${count}`);
      return count / ((nowMs() - t0) / 1000);
    } finally {
      await server.close();
    }
  };
  // Alternated, three times each: the first drains of a process run colder than the later ones.
  const smalls: number[] = [];
  const bigs: number[] = [];
  for (let round = 0; round < 3; round++) {
    smalls.push(await drain(`small-${round}`, 2, true));
    bigs.push(await drain(`big-${round}`, 10_000, true));
  }
  const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
  const small = median(smalls);
  const big = median(bigs);
  // Fewer: each claim carries the whole flow.
  const withoutRuns = Math.max(claimers, Math.floor(runs / 10));
  const bigWithout = await drain("bigfull", 10_000, false, withoutRuns);
  return { runs, claimers, small, big, bigWithout, withoutRuns };
}

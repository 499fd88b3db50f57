/**
 * `npm run bench`: berth's performance against baselines measured in the same run.
 *
 * (a) pickup overhead: flow run created → its container started (the engine's own StartedAt), with an idle
 *     agent, against raw create+start of the same image measured the same way;
 * (b) end to end: flow run created → Success recorded by the server, for a trivial flow, as a ratio to
 *     `docker run --rm` of the same image running the same flow in-process;
 * (c) the in-process engine: flow.run() with LocalExecutor of a 10,000-task DAG;
 * (d) schedule lateness: a scheduled slot's time → its container started, with an idle agent, against (a);
 * (e) claim throughput: 10,000 queued runs drained behind a concurrency limit, against the same queue without;
 * (f) what an image costs a run: created → started with the image present, pulled from a registry on
 *     127.0.0.1, and built by the agent from the registered build context;
 * (g) cancel: a Running run cancelled → its container stopped, against `docker stop -t 0` of the same flow.
 * (i)-(l) what one run costs, under load and warm, and claims of large flows: see per-run.ts.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { ApiClient } from "../client/api-client.js";
import { FINAL_FLOW_RUN_STATES } from "../wire/schema.js";
import { compileAgentOptions, compileServerOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import { createAgent, startServer } from "../cli/daemons.js";
import { createDockerEngine } from "../engine/docker-engine.js";
import { OWNER_LABEL, type ContainerEngine } from "../engine/port.js";
import { ensureBerthImage } from "../images/index.js";
import { registerFlowFile } from "../storage/register.js";
import { runAuthBench } from "./auth.js";
import { runCancelBench } from "./cancel.js";
import { runClaimBench } from "./claims.js";
import { runEngineBench } from "./engine.js";
import { runImageBench } from "./images.js";
import { runClaimPayloadBench, runCpuBench, runLoadBench, runWarmBench, type PerRunBenchContext } from "./per-run.js";
import { runScheduleBench } from "./schedule.js";

const RUNS = Number(process.env.BERTH_BENCH_RUNS ?? 25);
const SLOTS = Number(process.env.BERTH_BENCH_SLOTS ?? 30);
const WARMUP = 3;
const repo = fileURLToPath(new URL("../..", import.meta.url));
const flowFile = path.join(repo, "test", "fixtures", "trivial-flow.ts");
const flowLocation = "/opt/berth/flows/trivial-flow.mjs";

const nowMs = () => performance.timeOrigin + performance.now();

/** RFC 3339 with up to nanoseconds → epoch milliseconds with the fraction kept. */
function parseEngineTime(iso: string): number {
  const match = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(iso);
  if (!match) return Date.parse(iso);
  return Date.parse(`${match[1]}${match[3]}`) + Number(`0${match[2] ?? ""}`) * 1000;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

async function startedAt(engine: ContainerEngine, nameOrId: string): Promise<number> {
  const info = await engine.inspectContainer(nameOrId);
  if (!info?.startedAt) throw new Error(`container ${nameOrId} has no start time`);
  return parseEngineTime(info.startedAt);
}

async function rawCreateStart(engine: ContainerEngine, image: string, i: number): Promise<number> {
  const t0 = nowMs();
  const id = await engine.runContainer({
    name: `berth-bench-raw-${process.pid}-${i}`,
    image,
    cmd: ["berth", "execute", "flow-file", flowLocation],
    labels: { [OWNER_LABEL]: "true", "io.berth.bench": "raw" },
    network: "host",
  });
  const started = await startedAt(engine, id);
  await engine.waitContainer(id);
  await engine.removeContainer(id);
  return started - t0;
}

async function dockerRunRm(image: string): Promise<number> {
  const t0 = nowMs();
  const child = spawn("docker", ["run", "--rm", "--network", "host", image, "berth", "execute", "flow-file", flowLocation], { stdio: "ignore" });
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`docker run --rm ${image} exited ${code}`);
  return nowMs() - t0;
}

async function waitFinal(client: ApiClient, id: string) {
  let after = 0;
  for (;;) {
    const run = await client.getFlowRun(id);
    if (FINAL_FLOW_RUN_STATES.includes(run.state)) return run;
    after = (await client.getLogs(id, { after, limit: 1000, waitMs: 1000 })).next;
  }
}

async function main(): Promise<void> {
  const engine = createDockerEngine();
  await engine.ping();
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-bench-"));
  const logger = pino({ level: "warn" });
  // The server requires a token; the bench's client and agents send this one (the admin's).
  const apiToken = `berth_admin_bench_${process.pid}`;
  const config = defaultConfig({
    apiToken,
    home: dir,
    server: { port: 0, db: path.join(dir, "berth.db") },
    agent: { name: "bench-agent", keepContainers: true, claimWait: "20s" },
  });
  const server = await startServer(compileServerOptions(config), logger);
  const client = new ApiClient({ baseUrl: server.url, token: apiToken });
  const agent = await createAgent(compileAgentOptions({ ...config, apiUrl: server.url }), logger, engine);
  await agent.start();
  try {
    process.stdout.write(`berth bench: ${RUNS} runs each (after ${WARMUP} warm-up), ${os.cpus().length} cores, node ${process.version}\n`);
    const registered = await registerFlowFile(flowFile, { client, engine, log: () => {}, berthImage: () => ensureBerthImage(engine) });
    const image = registered.location;
    process.stdout.write(`flow image: ${image}\n\n`);

    const pickup: number[] = [];
    const endToEnd: number[] = [];
    for (let i = 0; i < RUNS + WARMUP; i++) {
      // Let the agent get back into its long-poll: it is idle, as the measurement requires.
      await new Promise((r) => setTimeout(r, 150));
      const t0 = nowMs();
      const { flowRun } = await client.createFlowRun({ flowName: "Trivial Flow", parameters: {} });
      const final = await waitFinal(client, flowRun.id);
      if (final.state !== "Success") throw new Error(`bench run ${flowRun.id} ended ${final.state}: ${final.stateMessage}`);
      const started = await startedAt(engine, `berth-run-${flowRun.id}`);
      if (i >= WARMUP) {
        pickup.push(started - t0);
        endToEnd.push(parseEngineTime(final.endedAt!) - t0);
      }
      await engine.waitContainer(`berth-run-${flowRun.id}`);
      await engine.removeContainer(`berth-run-${flowRun.id}`);
    }

    const raw: number[] = [];
    const dockerRun: number[] = [];
    for (let i = 0; i < RUNS + WARMUP; i++) {
      const r = await rawCreateStart(engine, image, i);
      const d = await dockerRunRm(image);
      if (i >= WARMUP) {
        raw.push(r);
        dockerRun.push(d);
      }
    }

    const row = (name: string, values: number[]) =>
      `  ${name.padEnd(44)} p50 ${fmt(percentile(values, 50)).padStart(10)}   p95 ${fmt(percentile(values, 95)).padStart(10)}\n`;
    process.stdout.write("(a) pickup: flow run created → container started\n");
    process.stdout.write(row("berth (idle agent, long-poll claim)", pickup));
    process.stdout.write(row("raw create+start of the same image", raw));
    const overhead50 = percentile(pickup, 50) - percentile(raw, 50);
    const overhead95 = percentile(pickup, 95) - percentile(raw, 95);
    process.stdout.write(`  overhead over raw: p50 ${fmt(overhead50)}, p95 ${fmt(overhead95)}   (target ≤ 50 ms)\n\n`);

    process.stdout.write("(b) end to end: flow run created → Success recorded\n");
    process.stdout.write(row("berth", endToEnd));
    process.stdout.write(row("docker run --rm (same image, same flow)", dockerRun));
    const ratio = percentile(endToEnd, 50) / percentile(dockerRun, 50);
    process.stdout.write(`  ratio (p50): ${ratio.toFixed(2)}×   (target ≤ 1.2×)\n\n`);

    const slots = await runScheduleBench({
      engine,
      client,
      config: { ...config, apiUrl: server.url },
      logger,
      flowFile: path.join(repo, "test", "fixtures", "scheduled-flow.ts"),
      slots: SLOTS,
      warmup: WARMUP,
      every: "2s",
      startedAt: (container) => startedAt(engine, container),
    });
    process.stdout.write(`(d) schedule lateness: slot time → container started, ${slots.length} slots of an every-2s schedule, idle agent\n`);
    process.stdout.write(row("berth (run made ahead, claim woken when due)", slots));
    const late99 = percentile(slots, 99);
    process.stdout.write(
      `  p99 ${fmt(late99)}, over pickup (a) p50: ${fmt(late99 - percentile(pickup, 50))}   (target < 200 ms)\n\n`,
    );

    const imageRounds = Number(process.env.BERTH_BENCH_IMAGE_ROUNDS ?? 5);
    const images = await runImageBench({
      engine,
      client,
      config: { ...config, apiUrl: server.url },
      logger,
      dir,
      flowFile: path.join(repo, "test", "fixtures", "registry-flow.ts"),
      rounds: imageRounds,
      pickup: async (runId) => {
        const final = await waitFinal(client, runId);
        if (final.state !== "Success") throw new Error(`bench run ${runId} ended ${final.state}: ${final.stateMessage}`);
        const started = await startedAt(engine, `berth-run-${runId}`);
        await engine.waitContainer(`berth-run-${runId}`);
        await engine.removeContainer(`berth-run-${runId}`);
        return started - parseEngineTime(final.createdAt);
      },
    });
    process.stdout.write(`(f) image: flow run created → container started, ${imageRounds} rounds after a warm-up\n`);
    process.stdout.write(row("image present", images.present));
    process.stdout.write(row("pulled from a registry on 127.0.0.1", images.pulled));
    process.stdout.write(row("built by the agent from the build context", images.built));
    const present50 = percentile(images.present, 50);
    process.stdout.write(`  p50 over present: pulled +${fmt(percentile(images.pulled, 50) - present50)}, built +${fmt(percentile(images.built, 50) - present50)}\n\n`);

    const cancelRounds = Number(process.env.BERTH_BENCH_CANCEL_ROUNDS ?? 10);
    const cancels = await runCancelBench({
      engine,
      client,
      flowFile: path.join(repo, "test", "fixtures", "sleepy-flow.ts"),
      rounds: cancelRounds,
    });
    process.stdout.write(`(g) cancel: Running flow run cancelled → container stopped, ${cancelRounds} rounds after a warm-up, default agent settings\n`);
    process.stdout.write(row("berth (cancel watch)", cancels.berth));
    process.stdout.write(row("docker stop -t 0 (same image, same flow)", cancels.dockerStop));
    process.stdout.write(
      `  p50 ${fmt(percentile(cancels.berth, 50))}, ${(percentile(cancels.berth, 50) / percentile(cancels.dockerStop, 50)).toFixed(2)}× docker stop -t 0   (target p50 < 1 s; before the cancel watch: 6.9 s)\n\n`,
    );

    const perRun: PerRunBenchContext = { engine, client, config, logger, serverUrl: server.url, image, flowName: "Trivial Flow", flowLocation, dir };
    const loadRuns = Number(process.env.BERTH_BENCH_LOAD_RUNS ?? 100);
    const load = await runLoadBench(perRun, loadRuns, 8);
    const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    process.stdout.write(`(i) load: ${load.runs} trivial runs created at once, one agent, ${load.parallel} at a time → every run Success and its container removed\n`);
    process.stdout.write(`  berth (cold containers)                      ${secs(load.berthMs).padStart(10)}   ${(load.berthMs / load.dockerMs).toFixed(2)}× docker run   (target ≤ 1.1×; before: 1.72×)\n`);
    process.stdout.write(`  berth (warm pool of ${load.parallel})                        ${secs(load.warmMs).padStart(10)}   ${(load.warmMs / load.dockerMs).toFixed(2)}× docker run\n`);
    process.stdout.write(`  docker run --rm, -P${load.parallel} (same image, same flow)    ${secs(load.dockerMs).padStart(10)}\n\n`);

    const cpu = await runCpuBench(perRun);
    const cpuRow = (name: string, values: number[]) => `  ${name.padEnd(44)} p50 ${percentile(values, 50).toFixed(3).padStart(7)} CPU-s\n`;
    process.stdout.write(`(j) CPU of the process in a run's container, per trivial run (user + system), ${cpu.flowRun.length} rounds\n`);
    process.stdout.write(cpuRow("berth execute flow-run (reports to the server)", cpu.flowRun));
    process.stdout.write(cpuRow("berth execute flow-file (same image, no server)", cpu.flowFile));
    process.stdout.write(`  ratio (p50): ${(percentile(cpu.flowRun, 50) / percentile(cpu.flowFile, 50)).toFixed(2)}×   (target ≤ 1.2×; before: 1.64×)\n\n`);

    const warm = await runWarmBench(perRun, RUNS);
    process.stdout.write(`(k) warm pool: flow run created → …, ${warm.success.length} runs, idle agent, pool of 1\n`);
    process.stdout.write(row("Running recorded (the flow's code starts)", warm.running));
    process.stdout.write(row("Success recorded", warm.success));
    process.stdout.write(row("docker run --rm (same image, same flow)", dockerRun));
    process.stdout.write(
      `  Running p50 ${fmt(percentile(warm.running, 50))} (target ≤ 15 ms); Success ${(percentile(warm.success, 50) / percentile(dockerRun, 50)).toFixed(2)}× docker run --rm (target ≤ 0.25×)\n\n`,
    );
  } finally {
    await agent.stop();
    await server.close();
    for (const c of await engine.listContainers({ [OWNER_LABEL]: "true" })) {
      if (c.name.includes("bench") || c.labels["io.berth.agent-id"] === agent.id) await engine.removeContainer(c.id);
    }
    await rm(dir, { recursive: true, force: true });
  }

  // After the server and agents stop: the store's work is synchronous and would stall their event loop.
  const claims = await runClaimBench();
  process.stdout.write(`(e) claim throughput: ${claims.runs.toLocaleString("en")} queued runs drained by ${claims.slots} agent slots, SQLite store\n`);
  process.stdout.write(`  without a limit                              ${claims.unlimited.toFixed(0).padStart(6)} claims/s\n`);
  process.stdout.write(`  behind a concurrency limit of ${String(claims.limit).padEnd(15)}${claims.limited.toFixed(0).padStart(6)} claims/s\n`);
  process.stdout.write(`  the limit costs ${((1 - claims.limited / claims.unlimited) * 100).toFixed(1)}%   (target < 20%)\n\n`);

  const payloadDir = await mkdtemp(path.join(os.tmpdir(), "berth-bench-claims-"));
  try {
    const payload = await runClaimPayloadBench(payloadDir, pino({ level: "warn" }));
    process.stdout.write(`(l) claims of large flows: ${payload.runs.toLocaleString("en")} queued runs drained by ${payload.claimers} claimers over HTTP, one run per claim, SQLite, median of 3\n`);
    process.stdout.write(`  2-task flow                                  ${payload.small.toFixed(0).padStart(6)} claims/s\n`);
    process.stdout.write(`  10,000-task flow (agents hold it: knownFlows) ${payload.big.toFixed(0).padStart(5)} claims/s   ${(payload.big / payload.small).toFixed(2)}× the 2-task flow (target within 20%)\n`);
    process.stdout.write(`  10,000-task flow, sent with every claim      ${payload.bigWithout.toFixed(0).padStart(6)} claims/s   (${payload.withoutRuns} runs)\n\n`);
  } finally {
    await rm(payloadDir, { recursive: true, force: true });
  }

  const auth = await runAuthBench();
  const open = auth.perRequestUs.open;
  process.stdout.write(`(h) authorization per request: GET /api/flow-runs/:id x ${auth.requests.toLocaleString("en")}, in-process (inject), SQLite in memory\n`);
  for (const [how, us] of Object.entries(auth.perRequestUs)) {
    process.stdout.write(`  ${`${how === "open" ? "no token (--insecure)" : `${how} token`}`.padEnd(44)}${us.toFixed(0).padStart(6)} µs   ${(us / open).toFixed(2)}x\n`);
  }
  process.stdout.write("\n");

  const dag = await runEngineBench();
  process.stdout.write("(c) in-process engine: flow.run() with LocalExecutor, 10,000-task DAG (chain of 5,000 + fan-out of 5,000)\n");
  process.stdout.write(`${dag.report}   (target < 500 ms)\n`);
}

await main();

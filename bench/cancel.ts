/**
 * (g) Cancel: a Running flow run cancelled through the API → its container stopped, with an agent at default
 * settings, against `docker stop -t 0` of a container of the same image running the same flow: the floor,
 * what killing the container costs by itself (berth stops the flow gracefully, with SIGTERM, which costs
 * more than a kill). The agent hears of the cancel through its cancel watch, a
 * long-poll the server answers at once; before it, cancels waited for the next heartbeat (6.9 s p50 measured
 * with the default 10 s interval).
 */
import type { ApiClient } from "../client/api-client.js";
import { OWNER_LABEL, type ContainerEngine } from "../engine/port.js";
import { ensureBerthImage } from "../images/index.js";
import { registerFlowFile } from "../storage/register.js";
import type { FlowRun } from "../wire/schema.js";

export interface CancelBenchContext {
  engine: ContainerEngine;
  client: ApiClient;
  /** test/fixtures/sleepy-flow.ts: sleeps `seconds`, and stops early on SIGTERM. */
  flowFile: string;
  rounds: number;
}

const nowMs = () => performance.timeOrigin + performance.now();

async function until<T>(what: string, look: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await look();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`cancel bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function runCancelBench(ctx: CancelBenchContext): Promise<{ berth: number[]; dockerStop: number[] }> {
  const { engine, client } = ctx;
  const registered = await registerFlowFile(ctx.flowFile, { client, engine, log: () => {}, berthImage: () => ensureBerthImage(engine) });
  const image = registered.location;
  const berth: number[] = [];
  const dockerStop: number[] = [];
  for (let i = 0; i < ctx.rounds + 1; i++) {
    const { flowRun } = await client.createFlowRun({ flowName: "Sleepy Flow", parameters: { seconds: 600 } });
    await until("the run to be Running", async () => ((await client.getFlowRun(flowRun.id)).state === "Running" ? true : undefined));
    const container = `berth-run-${flowRun.id}`;
    const t0 = nowMs();
    await client.cancelFlowRun(flowRun.id);
    await engine.waitContainer(container);
    const stopped = nowMs() - t0;
    const final: FlowRun = await until("the run to be Cancelled", async () => {
      const run = await client.getFlowRun(flowRun.id);
      return run.state === "Cancelled" ? run : undefined;
    });
    if (final.state !== "Cancelled") throw new Error(`cancel bench: run ${flowRun.id} ended ${final.state}`);
    await engine.removeContainer(container);

    const id = await engine.runContainer({
      name: `berth-bench-stop-${process.pid}-${i}`,
      image,
      cmd: ["berth", "execute", "flow-file", "/opt/berth/flows/sleepy-flow.mjs", "--param", "seconds=600"],
      labels: { [OWNER_LABEL]: "true", "io.berth.bench": "stop" },
      network: "host",
    });
    // As far along as the berth run was: its flow started and sleeping.
    await until("the baseline flow to sleep", async () => ((await engine.containerOutput(id, 5)).includes("sleeping") ? true : undefined));
    const t1 = nowMs();
    await engine.stopContainer(id, 0);
    await engine.waitContainer(id);
    const raw = nowMs() - t1;
    await engine.removeContainer(id);
    // The first round warms both up.
    if (i > 0) {
      berth.push(stopped);
      dockerStop.push(raw);
    }
  }
  return { berth, dockerStop };
}

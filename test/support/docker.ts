/**
 * Docker availability for tests: under CI=true an unreachable engine FAILS the suite (never a silent
 * skip); elsewhere the Docker suites are skipped with the reason printed.
 */
import { describeError } from "../../wire/errors.js";
import { until } from "./wait.js";
import { createDockerEngine, type DockerEngine } from "../../engine/docker-engine.js";
import { OWNER_LABEL } from "../../engine/port.js";

export const engine: DockerEngine = createDockerEngine();

async function probe(): Promise<string | undefined> {
  try {
    await engine.ping();
    return undefined;
  } catch (err) {
    return describeError(err);
  }
}

const problem = await probe();
if (problem && process.env.CI === "true") {
  throw new Error(`Docker tests must run under CI=true, but the engine is unreachable: ${problem}`);
}
if (problem) process.stderr.write(`skipping Docker tests: ${problem}\n`);

/** True when the Docker engine answers. */
export const dockerAvailable = problem === undefined;

/** Why the Docker suites are skipped (outside CI, with no engine); undefined when the engine answers. */
export const dockerProblem: string | undefined = problem;

/** Containers carrying berth's ownership label, optionally for one agent. */
export async function berthContainers(labels: Record<string, string> = {}): Promise<string[]> {
  const found = await engine.listContainers({ [OWNER_LABEL]: "true", ...labels });
  return found.map((c) => `${c.name} (${c.state})`);
}

/** Resolves once the container is gone (an agent removes a run's container just after it stops). */
export function containerGone(name: string, timeoutMs = 30_000): Promise<number> {
  return until(`container ${name} to be removed`, async () => (await engine.inspectContainer(name)) === undefined, { timeoutMs, everyMs: 100 });
}

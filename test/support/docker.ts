/**
 * Docker availability for tests: under CI=true an unreachable engine FAILS the suite (never a silent
 * skip); elsewhere the Docker suites are skipped with the reason printed.
 */
import { describeError } from "../../wire/errors.js";
import { createDockerEngine } from "../../engine/docker-engine.js";
import { OWNER_LABEL, type ContainerEngine } from "../../engine/port.js";

export const engine: ContainerEngine = createDockerEngine();

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

/** Containers carrying berth's ownership label, optionally for one agent. */
export async function berthContainers(labels: Record<string, string> = {}): Promise<string[]> {
  const found = await engine.listContainers({ [OWNER_LABEL]: "true", ...labels });
  return found.map((c) => `${c.name} (${c.state})`);
}

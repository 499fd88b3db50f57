import type { ContainerEngine } from "../engine/port.js";

/** The Docker engine berth talks to: DOCKER_HOST when set, else the local socket. */
export async function localEngine(): Promise<ContainerEngine> {
  const { createDockerEngine } = await import("../engine/docker-engine.js");
  const host = process.env.DOCKER_HOST;
  return createDockerEngine(host ? { host } : {});
}

/** Services on the swarm the local engine (or DOCKER_HOST) manages; refuses an engine that is not a manager. */
export async function swarmEngine(): Promise<ContainerEngine> {
  const { createSwarmEngine } = await import("../engine/swarm-engine.js");
  const host = process.env.DOCKER_HOST;
  const engine = createSwarmEngine(host ? { host } : {});
  await engine.assertManager();
  return engine;
}

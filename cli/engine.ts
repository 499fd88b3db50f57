import type { ContainerEngine } from "../engine/port.js";

/** The Docker engine berth talks to: DOCKER_HOST when set, else the local socket. */
export async function localEngine(): Promise<ContainerEngine> {
  const { createDockerEngine } = await import("../engine/docker-engine.js");
  const host = process.env.DOCKER_HOST;
  return createDockerEngine(host ? { host } : {});
}

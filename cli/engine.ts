import type { ContainerRuntime } from "../engine/port.js";

/** The Docker engine berth talks to: DOCKER_HOST when set, else the local socket. */
export async function localEngine(): Promise<ContainerRuntime> {
  const { createContainerRuntime } = await import("../engine/docker-engine.js");
  const host = process.env.DOCKER_HOST;
  return createContainerRuntime(host ? { host } : {});
}

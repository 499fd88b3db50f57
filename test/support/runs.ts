/** Following flow runs in end-to-end tests, by events (the logs long-poll) rather than fixed sleeps. */
import { rm } from "node:fs/promises";
import { expect } from "vitest";
import type { ApiClient } from "../../client/api-client.js";
import { FINAL_FLOW_RUN_STATES, type FlowRun, type FlowRunStateName } from "../../wire/schema.js";
import { AGENT_LABEL } from "../../engine/port.js";
import { berthContainers } from "./docker.js";

/** Follows a run until `done`: the logs long-poll returns as soon as the run logs or ends, so this never spins. */
export async function waitFor(client: ApiClient, id: string, done: (run: FlowRun) => boolean, timeoutMs: number): Promise<FlowRun> {
  const deadline = Date.now() + timeoutMs;
  let after = 0;
  for (;;) {
    const run = await client.getFlowRun(id);
    if (done(run)) return run;
    if (Date.now() > deadline) throw new Error(`flow run ${id} still ${run.state} after ${timeoutMs} ms`);
    after = (await client.getLogs(id, { after, limit: 1000, waitMs: 500 })).next;
  }
}

export function waitFinal(client: ApiClient, id: string, timeoutMs = 120_000): Promise<FlowRun> {
  return waitFor(client, id, (run) => FINAL_FLOW_RUN_STATES.includes(run.state), timeoutMs);
}

/** Waits for `state`; fails if the run ends in another state first. */
export async function waitState(client: ApiClient, id: string, state: FlowRunStateName, timeoutMs = 120_000): Promise<FlowRun> {
  const run = await waitFor(client, id, (r) => r.state === state || FINAL_FLOW_RUN_STATES.includes(r.state), timeoutMs);
  expect(run.state).toBe(state);
  return run;
}

/** Containers still present that any agent known to this server created. */
export async function leakedContainers(client: ApiClient): Promise<string[]> {
  const { agents } = await client.listAgents();
  return (await Promise.all(agents.map((a) => berthContainers({ [AGENT_LABEL]: a.id })))).flat();
}

/**
 * Ends an end-to-end suite: drains its agents (so they remove their containers), stops the server, removes
 * the directory; returns the containers that leaked, for the caller to assert empty.
 */
export async function tearDown(parts: {
  agents: Array<{ stop(): Promise<unknown> }>;
  server: { proc: { stop(): Promise<unknown> } } | undefined;
  client: ApiClient | undefined;
  dir: string | undefined;
}): Promise<string[]> {
  await Promise.all(parts.agents.map((a) => a.stop()));
  const leaked = parts.server && parts.client ? await leakedContainers(parts.client) : [];
  await parts.server?.proc.stop();
  if (parts.dir) await rm(parts.dir, { recursive: true, force: true });
  return leaked;
}

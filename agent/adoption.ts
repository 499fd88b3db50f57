/**
 * Adoption: on start, an agent finds the containers it created before a restart (by its ownership labels)
 * and follows each to its end, so a restarted agent neither loses a run nor runs one twice. A container
 * whose run cannot be read (the server forgot it) is removed; a server that is down is waited out first.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { isServerDown, whileServerDown } from "../client/retry.js";
import { AGENT_LABEL, EPOCH_LABEL, FLOW_RUN_LABEL, OWNER_LABEL, type ContainerEngine } from "../engine/port.js";
import { describeError } from "../wire/errors.js";
import type { ClaimedRun } from "../wire/schema.js";
import type { RunLifecycle } from "./run-lifecycle.js";
import type { RunTable } from "./run-table.js";

export interface AdoptionDeps {
  client: ApiClient;
  engine: ContainerEngine;
  log: Logger;
  agentId: string;
  runs: RunTable;
  serverDownForMs: number;
  /** Aborted when the agent stops: a wait for the server ends with it. */
  signal: AbortSignal;
  lifecycle: (claim: ClaimedRun, epoch: number) => RunLifecycle;
}

/** Starts following every container this agent owns; resolves once each is being followed. */
export async function adoptContainers(deps: AdoptionDeps): Promise<void> {
  const owned = await deps.engine.listContainers({ [OWNER_LABEL]: "true", [AGENT_LABEL]: deps.agentId });
  for (const info of owned) {
    const flowRunId = info.labels[FLOW_RUN_LABEL];
    if (!flowRunId || deps.runs.has(flowRunId)) continue;
    const read = <T>(fn: () => Promise<T>) => whileServerDown(fn, { forMs: deps.serverDownForMs, signal: deps.signal });
    let claim: ClaimedRun;
    try {
      const flowRun = await read(() => deps.client.getFlowRun(flowRunId));
      const flow = await read(() => deps.client.getFlow(flowRun.flowId));
      claim = { flowRun, flow };
    } catch (err) {
      // Stopping, or the server still away: leave the container for the next start to adopt.
      if (deps.signal.aborted || isServerDown(err)) {
        deps.log.warn({ flowRunId }, `not adopting this container now (${describeError(err)}); the next start will`);
        continue;
      }
      deps.log.warn({ err, flowRunId }, `cannot adopt this container (${describeError(err)}); removing it`);
      await deps.engine.removeContainer(info.id).catch(() => undefined);
      continue;
    }
    const epoch = Number(info.labels[EPOCH_LABEL] ?? claim.flowRun.epoch);
    const lifecycle = deps.lifecycle(claim, epoch);
    deps.runs.track(lifecycle, lifecycle.adopt(info));
  }
  if (owned.length > 0) deps.log.info({ adopted: deps.runs.ids() }, `adopted ${owned.length} container(s) from before the restart`);
}

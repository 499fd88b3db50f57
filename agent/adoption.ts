/**
 * Adoption: an agent finds the containers it created before a restart (by its ownership labels) and follows
 * each to its end, so a restarted agent neither loses a run nor runs one twice. A container whose run or flow
 * the server no longer knows is removed. One the agent cannot adopt yet (the server is away, or answers with
 * an error) is kept and tried again after later heartbeats: it is never removed for the server's trouble.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { whileServerDown } from "../client/retry.js";
import { AGENT_LABEL, EPOCH_LABEL, OWNER_LABEL, type ContainerEngine, type ContainerInfo } from "../engine/port.js";
import { describeError, isBerthError } from "../wire/errors.js";
import type { AgentClaim } from "./flow-cache.js";
import type { RunLifecycle } from "./run-lifecycle.js";
import { runOfContainer } from "./warm-pool.js";
import type { RunTable } from "./run-table.js";

export interface AdoptionDeps {
  client: ApiClient;
  engine: ContainerEngine;
  log: () => Logger;
  agentId: () => string;
  runs: RunTable;
  /** How long one pass waits out an unreachable server, in all (not per container). */
  serverDownForMs: number;
  /** Aborted when the agent stops: a wait for the server ends with it. */
  signal: AbortSignal;
  lifecycle: (claim: AgentClaim, epoch: number) => RunLifecycle;
}

export class Adoption {
  /** Containers found but not adopted yet, by flow run id. */
  private readonly pending = new Map<string, ContainerInfo>();
  private pass: Promise<void> | undefined;

  constructor(private readonly deps: AdoptionDeps) {}

  /** How many of the agent's containers wait to be adopted. */
  get waiting(): number {
    return this.pending.size;
  }

  /** Finds every container this agent owns and starts following each; resolves once the pass is done. */
  async adoptAll(): Promise<void> {
    const owned = await this.deps.engine.listContainers({ [OWNER_LABEL]: "true", [AGENT_LABEL]: this.deps.agentId() });
    for (const info of owned) {
      // A warm container has no run label: once handed a run, it bears the run's container name.
      const flowRunId = runOfContainer(info);
      if (flowRunId && !this.deps.runs.has(flowRunId)) this.pending.set(flowRunId, info);
    }
    await this.retry();
  }

  /** Tries the containers still waiting (single flight): after a heartbeat, the server is there again. */
  retry(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    this.pass ??= this.adoptPending().finally(() => {
      this.pass = undefined;
    });
    return this.pass;
  }

  private async adoptPending(): Promise<void> {
    const deadline = Date.now() + this.deps.serverDownForMs;
    const read = <T>(fn: () => Promise<T>) => whileServerDown(fn, { forMs: Math.max(0, deadline - Date.now()), signal: this.deps.signal });
    const adopted: string[] = [];
    for (const [flowRunId, info] of [...this.pending]) {
      if (this.deps.signal.aborted) return;
      if (this.deps.runs.has(flowRunId)) {
        this.pending.delete(flowRunId);
        continue;
      }
      let claim: AgentClaim;
      try {
        const flowRun = await read(() => this.deps.client.getFlowRun(flowRunId));
        const flow = await read(() => this.deps.client.getFlow(flowRun.flowId));
        claim = { flowRun, flow };
      } catch (err) {
        if (isBerthError(err, "BERTH_E_FLOW_RUN_NOT_FOUND") || isBerthError(err, "BERTH_E_FLOW_NOT_FOUND")) {
          this.pending.delete(flowRunId);
          this.deps.log().warn({ flowRunId }, `the server does not know this container's run (${describeError(err)}); removing the container`);
          await this.deps.engine.removeContainer(info.id).catch(() => undefined);
        } else if (!this.deps.signal.aborted) {
          this.deps.log().warn({ flowRunId }, `cannot adopt this container yet (${describeError(err)}); trying again after the next heartbeat`);
        }
        continue;
      }
      this.pending.delete(flowRunId);
      // A warm container's attempt is not on a label: the run's, while this agent holds it; else it is over.
      const epoch = Number(info.labels[EPOCH_LABEL] ?? (claim.flowRun.agentId === this.deps.agentId() ? claim.flowRun.epoch : -1));
      const lifecycle = this.deps.lifecycle(claim, epoch);
      this.deps.runs.track(lifecycle, lifecycle.adopt(info));
      adopted.push(flowRunId);
    }
    if (adopted.length > 0) this.deps.log().info({ adopted }, `adopted ${adopted.length} container(s) from before the restart`);
  }
}

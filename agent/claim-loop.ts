/**
 * The agent's claim loop: while the agent is running, it long-polls the server for runs its labels satisfy,
 * as many as it has free slots, and launches each. It claims nothing while every slot is taken or the
 * engine is down, backs off (with jitter) while claims fail, and registers again if the server has
 * forgotten the agent.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { describeError, isBerthError } from "../wire/errors.js";
import type { AgentClaim, FlowCache } from "./flow-cache.js";
import type { EngineWatch } from "./engine-watch.js";
import type { RunTable } from "./run-table.js";

/** How the loop is doing, for the agent's /health: it turns at least once per claim wait, unless it waits on purpose. */
export class ClaimLoopProgress {
  /** When the loop last asked for a claim or got an answer (ms since the epoch). */
  turnedAt = Date.now();
  /** Set while the loop waits on purpose, not turning: for a free slot, or for the engine to come back. */
  waitingFor: "slot" | "engine" | undefined;
}

export interface ClaimLoopDeps {
  progress: ClaimLoopProgress;
  client: ApiClient;
  log: () => Logger;
  agentId: () => string;
  concurrency: number;
  claimWaitMs: number;
  runs: RunTable;
  engine: EngineWatch;
  /** Whether the agent is still claiming (it stops when the agent drains or stops). */
  claiming: () => boolean;
  /** Aborted when the agent stops claiming: ends a parked long-poll and backoff sleeps at once. */
  stopping: AbortSignal;
  /** `startTimeoutMs`: the server's, from the claim's reply. */
  launch: (claim: AgentClaim, startTimeoutMs: number | undefined) => void;
  /** The flow versions the agent holds: claims of their runs come without them. */
  flows: FlowCache;
  register: () => Promise<void>;
}

export async function runClaimLoop(deps: ClaimLoopDeps): Promise<void> {
  let failures = 0;
  /** Cleared for a server that predates ClaimRequest.knownFlows. */
  let knownFlows = true;
  const { progress } = deps;
  const waitFor = async (what: "slot" | "engine", wait: Promise<void>) => {
    progress.waitingFor = what;
    try {
      await wait;
    } finally {
      progress.waitingFor = undefined;
    }
  };
  while (deps.claiming()) {
    progress.turnedAt = Date.now();
    if (!deps.engine.healthy) {
      await waitFor("engine", deps.engine.whenBack());
      continue;
    }
    const free = deps.concurrency - deps.runs.size;
    if (free <= 0) {
      await waitFor("slot", deps.runs.slotFreed());
      continue;
    }
    try {
      deps.log().debug({ free }, "waiting for a claim");
      const request = { max: free, waitMs: deps.claimWaitMs, ...(knownFlows ? { knownFlows: deps.flows.ids() } : {}) };
      const { claims, startTimeoutMs } = await deps.client.claim(deps.agentId(), request, deps.stopping);
      failures = 0;
      progress.turnedAt = Date.now();
      for (const claim of await deps.flows.completeAll(claims, deps.client, (claim, err) => {
        // Only if the server left out a flow this agent did not list: the run is never started, so its start
        // timeout hands it back to the queue.
        deps.log().error({ flowRunId: claim.flowRun.id, err }, "claimed a run without its flow, and could not read the flow; leaving it to the server's start timeout");
      })) {
        deps.launch(claim, startTimeoutMs);
      }
    } catch (err) {
      if (!deps.claiming()) break;
      if (knownFlows && isBerthError(err, "BERTH_E_VALIDATION") && err.message.includes("knownFlows")) {
        // A server older than this agent: its claims carry every flow.
        deps.log().info("the server does not take knownFlows: every claim will carry its flow");
        knownFlows = false;
        continue;
      }
      if (isBerthError(err, "BERTH_E_AGENT_NOT_FOUND")) {
        deps.log().warn("the server no longer knows this agent; registering again");
        await deps.register().catch((e: unknown) => deps.log().error({ err: e }, "re-registration failed"));
        continue;
      }
      const delay = backoffMs(failures++);
      deps.log().warn(`claim failed: ${describeError(err)}; retrying in ${delay} ms`);
      await sleep(delay, deps.stopping);
    }
  }
}

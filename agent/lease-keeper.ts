/**
 * The agent's heartbeat: every `heartbeatIntervalMs` it tells the server the agent is alive (online, or
 * unhealthy while its engine is down) and lists the runs it holds, which renews their leases. The reply
 * names runs the agent has lost (another attempt owns them: stop them at once) and runs a user cancelled
 * (stop their containers). When the server cannot be reached, a run whose lease has not been renewed for
 * `leaseTimeoutMs` is stopped here first, since the server may already have given it to another agent.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { describeError } from "../wire/errors.js";
import { cancelRuns } from "./cancel-watch.js";
import type { EngineWatch } from "./engine-watch.js";
import type { RunTable } from "./run-table.js";
import type { AgentHealthReport } from "../wire/schema.js";

export interface LeaseKeeperDeps {
  client: ApiClient;
  log: () => Logger;
  /** The agent's id once it has registered. */
  agentId: () => string | undefined;
  runs: RunTable;
  engine: EngineWatch;
  heartbeatIntervalMs: number;
  leaseTimeoutMs: number;
  /** Called after each heartbeat the server answered (the agent retries adoptions then). */
  afterBeat?: () => void;
  /** True once the agent drains: it claims nothing more, and says so. */
  draining?: () => boolean;
  /** What the agent says of itself with each heartbeat (slots, disk, why it is unhealthy). */
  health?: () => Promise<AgentHealthReport>;
}

export class LeaseKeeper {
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: LeaseKeeperDeps) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.beat(), this.deps.heartbeatIntervalMs);
    this.timer.unref();
  }

  /** No heartbeat after this: the next word the server hears is sayStopped(). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One heartbeat now; a beat already under way is joined rather than doubled. */
  beat(): Promise<void> {
    if (this.stopped) return this.beating ?? Promise.resolve();
    this.beating ??= this.send().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  /** Tells the server the agent has stopped. Best effort: a server that is down will mark it lost anyway. */
  async sayStopped(): Promise<void> {
    const id = this.deps.agentId();
    if (!id) return;
    // A beat in flight must not land after this and make a stopped agent look alive again.
    await this.beating;
    await this.deps.client.heartbeatAgent(id, { status: "stopped" }).catch((err: unknown) => {
      this.deps.log().debug(`could not tell the server the agent stopped: ${describeError(err)}`);
    });
  }

  private async send(): Promise<void> {
    const { client, runs, engine } = this.deps;
    const id = this.deps.agentId();
    if (!id) return;
    await engine.check();
    if (this.stopped) return;
    const held = runs
      .lifecycles()
      .filter((lifecycle) => !lifecycle.containerExited)
      .map((lifecycle) => ({ id: lifecycle.flowRunId, epoch: lifecycle.epoch }));
    let reply;
    try {
      const status = this.deps.draining?.() ? "draining" : engine.healthy ? "online" : "unhealthy";
      // A report that cannot be made (a disk that cannot be read) must not keep the heartbeat from going.
      const health = await this.deps.health?.().catch(() => undefined);
      reply = await client.heartbeatAgent(id, { status, runs: held, ...(health ? { health } : {}) });
    } catch (err) {
      this.deps.log().warn(`heartbeat failed: ${describeError(err)}`);
      this.expireLeases();
      return;
    }
    this.deps.afterBeat?.();
    const now = Date.now();
    const lost = new Set(reply.lostRunIds);
    for (const { id: flowRunId } of held) {
      const lifecycle = runs.get(flowRunId);
      if (!lifecycle) continue;
      if (lost.has(flowRunId)) void lifecycle.lost("the server says another attempt owns this flow run now").catch(() => undefined);
      else lifecycle.leaseRenewedAt = now;
    }
    cancelRuns(runs, reply.cancelRunIds, this.deps.log(), true);
  }

  /** Without a renewed lease, the server may give a run to another agent: stop it here first. */
  private expireLeases(): void {
    const now = Date.now();
    for (const lifecycle of this.deps.runs.lifecycles()) {
      if (lifecycle.containerExited) continue;
      const silentMs = now - lifecycle.leaseRenewedAt;
      if (silentMs > this.deps.leaseTimeoutMs) {
        void lifecycle.abandon(`its lease could not be renewed for ${Math.round(silentMs / 1000)} s`).catch(() => undefined);
      }
    }
  }
}

/**
 * Which agents are alive. An agent is online while it heartbeats (or claims) within `agentLostAfterMs`, or
 * while one of its claims is parked here: a parked long-poll is proof of life even between heartbeats.
 */
import type { AgentRecord } from "../wire/schema.js";

export class AgentPresence {
  private readonly parked = new Map<string, number>();

  constructor(
    private readonly agentLostAfterMs: number,
    /** The server's clock (ms since the epoch), for every route that needs "now". */
    readonly now: () => number,
  ) {}

  /** Marks the agent as parked in a claim until the returned function is called. */
  park(agentId: string): () => void {
    this.parked.set(agentId, (this.parked.get(agentId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.parked.get(agentId) ?? 1) - 1;
      if (left <= 0) this.parked.delete(agentId);
      else this.parked.set(agentId, left);
    };
  }

  /** Whether the agent has a claim parked here right now. */
  isParked(agentId: string): boolean {
    return this.parked.has(agentId);
  }

  /** The agent as users should see it: "lost" once it has gone quiet for too long. */
  view(agent: AgentRecord): AgentRecord {
    const waiting = this.parked.has(agent.id);
    if (agent.status === "stopped" || agent.status === "lost" || waiting) return { ...agent, waiting };
    const quietMs = this.now() - Date.parse(agent.lastHeartbeatAt);
    return quietMs > this.agentLostAfterMs ? { ...agent, status: "lost", waiting } : { ...agent, waiting };
  }

  /** Whether the agent can be expected to claim runs now. */
  isOnline(agent: AgentRecord): boolean {
    const status = this.view(agent).status;
    return status === "online" || status === "unhealthy" || status === "draining";
  }
}

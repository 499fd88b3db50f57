/**
 * Which agents are alive. An agent is online while it heartbeats (or claims) within `agentLostAfterMs`, or
 * while one of its claims is parked at a server: a parked long-poll is proof of life even between heartbeats.
 * Parked claims are marked on the agent's row (`waitingUntil`), so every server replica on one database sees
 * the same agents alive, whichever replica holds the claim.
 */
import type { StoredAgent } from "../store/port.js";
import type { AgentRecord } from "../wire/schema.js";

export class AgentPresence {
  constructor(
    private readonly agentLostAfterMs: number,
    /** The server's clock (ms since the epoch), for every route that needs "now". */
    readonly now: () => number,
  ) {}

  /** Whether one of the agent's claims is parked at a server right now. */
  isWaiting(agent: StoredAgent): boolean {
    return agent.waitingUntil !== null && Date.parse(agent.waitingUntil) > this.now();
  }

  /** The agent as users should see it: "lost" once it has gone quiet for too long. */
  view(agent: StoredAgent): AgentRecord {
    const { waitingUntil: _, ...record } = agent;
    const waiting = this.isWaiting(agent);
    if (agent.status === "stopped" || agent.status === "lost" || waiting) return { ...record, waiting };
    const quietMs = this.now() - Date.parse(agent.lastHeartbeatAt);
    return quietMs > this.agentLostAfterMs ? { ...record, status: "lost", waiting } : { ...record, waiting };
  }

  /** Whether the agent, as `view` shows it, can be expected to claim runs now. */
  static isOnline(view: AgentRecord): boolean {
    return view.status === "online" || view.status === "unhealthy" || view.status === "draining";
  }
}

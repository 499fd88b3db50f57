import type { PullPolicy } from "../config/schema.js";

export type { PullPolicy } from "../config/schema.js";

export interface AgentOptions {
  /** Shown in `berth agents`; default: "agent-<hostname>". */
  name: string;
  /** The agent runs only flow runs whose labels are all among these. */
  labels: string[];
  /** How many flow runs at once (default 1). */
  concurrency: number;
  /** The API URL the agent uses. */
  apiUrl: string;
  /** The API URL flow-run containers use (default: apiUrl). */
  containerApiUrl?: string | undefined;
  apiToken?: string | undefined;
  /** Docker network for flow-run containers; default "host" when the API is on loopback, else the engine's default. */
  network?: string | undefined;
  pullPolicy: PullPolicy;
  /** Extra environment for flow-run containers. */
  env: Record<string, string>;
  /** Long-poll length of one claim request (default 20 s). */
  claimWaitMs: number;
  heartbeatIntervalMs: number;
  /** On stop, how long running flow runs may take to finish (default 60 s). */
  drainTimeoutMs: number;
  /** SIGTERM-to-SIGKILL grace when stopping a container (default 10 s). */
  stopGraceMs: number;
  /** Leave finished containers for inspection (default false). */
  keepContainers: boolean;
  /** Stop a run's container when its lease could not be renewed for this long (default 30 s; match the server's). */
  leaseTimeoutMs: number;
  /** How long state writes wait out an unreachable server (default 5 min). */
  serverDownForMs: number;
}

/** Loopback API URLs are only reachable from containers on the host network. */
export function defaultNetwork(apiUrl: string): string | undefined {
  try {
    const host = new URL(apiUrl).hostname;
    return host === "localhost" || host === "[::1]" || host.startsWith("127.") ? "host" : undefined;
  } catch {
    return undefined;
  }
}

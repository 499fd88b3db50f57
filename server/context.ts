/** What every route module receives: the store, the long-poll notifier, config and the shared helpers. */
import type { FastifyBaseLogger } from "fastify";
import type { StateStore } from "../store/port.js";
import type { Notifier } from "./notifier.js";
import type { AgentPresence } from "./presence.js";

export interface ServerConfig {
  /** When set, every route but /health and /openapi.json needs `Authorization: Bearer <apiToken>`. */
  apiToken?: string | undefined;
  /** Reported by /health and the OpenAPI document. */
  version: string;
  /** An agent silent for longer than this is shown as lost and no longer counted for pickup; default 60000. */
  agentLostAfterMs?: number | undefined;
  /** Largest accepted request body in bytes; default 16 MiB (log batches are large). */
  bodyLimitBytes?: number | undefined;
  /** How long a claim, and each renewal by an agent heartbeat, holds a run for its agent; default 30000. */
  leaseMs?: number | undefined;
  /** How often the reaper looks for lost runs; 0 never (call reapOnce yourself); default 5000. */
  reaperIntervalMs?: number | undefined;
  /** A run claimed this long ago and still not Running goes back to Scheduled; default 60000. */
  startTimeoutMs?: number | undefined;
  /** A Running run whose container has been silent this long is lost (see the flow's recovery); default 45000. */
  runHeartbeatTimeoutMs?: number | undefined;
  /** A Cancelling run unconfirmed this long, with its agent lost, is recorded Cancelled; default 30000. */
  cancelTimeoutMs?: number | undefined;
}

/** The durations of ServerConfig with their defaults filled in. */
export interface ServerTimings {
  agentLostAfterMs: number;
  leaseMs: number;
  reaperIntervalMs: number;
  startTimeoutMs: number;
  runHeartbeatTimeoutMs: number;
  cancelTimeoutMs: number;
}

export const DEFAULT_TIMINGS: Readonly<ServerTimings> = {
  agentLostAfterMs: 60_000,
  leaseMs: 30_000,
  reaperIntervalMs: 5_000,
  startTimeoutMs: 60_000,
  runHeartbeatTimeoutMs: 45_000,
  cancelTimeoutMs: 30_000,
};

export function resolveTimings(config: ServerConfig): ServerTimings {
  const timings = { ...DEFAULT_TIMINGS };
  for (const key of Object.keys(timings) as (keyof ServerTimings)[]) timings[key] = config[key] ?? DEFAULT_TIMINGS[key];
  return timings;
}

export interface ServerContext {
  store: StateStore;
  notifier: Notifier;
  presence: AgentPresence;
  config: ServerConfig;
  timings: ServerTimings;
  logger: FastifyBaseLogger;
  /** Aborted when the server starts closing: parked long-polls answer at once. */
  closing: AbortSignal;
}

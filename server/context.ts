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
}

export interface ServerContext {
  store: StateStore;
  notifier: Notifier;
  presence: AgentPresence;
  config: ServerConfig;
  logger: FastifyBaseLogger;
  /** Aborted when the server starts closing: parked long-polls answer at once. */
  closing: AbortSignal;
}

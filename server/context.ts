/** What every route module receives: the store, the long-poll notifier, the options and the shared helpers. */
import type { FastifyBaseLogger } from "fastify";
import type { ServerOptions } from "../config/compile.js";
import type { StateStore } from "../store/port.js";
import type { ServerMetrics } from "./metrics.js";
import type { Notifier } from "./notifier.js";
import type { AgentPresence } from "./presence.js";
import type { Scheduler } from "./scheduler.js";
import type { RunTokens } from "./auth.js";
import type { Secrets } from "./secrets.js";

export interface ServerContext {
  store: StateStore;
  notifier: Notifier;
  /** Prometheus metrics, served at /metrics. */
  metrics: ServerMetrics;
  presence: AgentPresence;
  /** Woken when a schedule changes (registration, pause, resume). */
  scheduler: Scheduler;
  /** Mints each claimed run's token. */
  runTokens: RunTokens;
  /** Sealed secrets, and the redaction of their values from what runs write. */
  secrets: Secrets;
  options: ServerOptions;
  /** Reported by /health and the OpenAPI document. */
  version: string;
  logger: FastifyBaseLogger;
  /** Aborted when the server starts closing: parked long-polls answer at once. */
  closing: AbortSignal;
}

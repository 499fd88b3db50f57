/**
 * The API server as a factory: `buildServer` returns a ready, not yet listening, Fastify app. Tests drive it
 * with `inject()`; the CLI calls `listen()`. The reaper (server/reaper.ts) starts with it, as `app.reaper`.
 * Closing it stops the reaper and answers every parked long-poll at once, so `app.close()` is prompt; the
 * store belongs to the caller and is not closed here.
 */
import { registerUiRoutes } from "./routes/ui.js";
import { apiSchemas } from "../wire/openapi-names.js";
import fastifySwagger from "@fastify/swagger";
import Fastify, { LogController, type FastifyBaseLogger } from "fastify";
import { createJsonSchemaTransform, createJsonSchemaTransformObject, serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import type { Logger } from "pino";
import { MAX_JSON_DEPTH, tooDeep } from "../shared/json-limits.js";
import type { StateStore } from "../store/port.js";
import { BerthError } from "../wire/errors.js";
import { randomBytes } from "node:crypto";
import { installAuth, RunTokens } from "./auth.js";
import { Secrets } from "./secrets.js";
import { registerTrustRoutes } from "./routes/trust.js";
import type { ServerOptions } from "../config/compile.js";
import type { ServerContext } from "./context.js";
import { frameworkErrors, installErrorHandlers } from "./error-handler.js";
import { LocalNotifier, type Notifier } from "./notifier.js";
import { ServerMetrics } from "./metrics.js";
import { AgentPresence } from "./presence.js";
import { Reaper } from "./reaper.js";
import { Scheduler } from "./scheduler.js";
import { registerConcurrencyRoutes } from "./routes/concurrency.js";
import { registerScheduleRoutes } from "./routes/schedules.js";
import { registerAgentRoutes } from "./routes/agents.js";
import { registerBuildContextRoutes } from "./routes/build-contexts.js";
import { registerClaimRoutes } from "./routes/claim.js";
import { registerFlowRunStateRoutes } from "./routes/flow-run-state.js";
import { registerFlowRunRoutes } from "./routes/flow-runs.js";
import { registerFlowRoutes } from "./routes/flows.js";
import { registerHealthRoutes } from "./routes/health.js";
import { registerMetricsRoute } from "./routes/metrics.js";
import { registerLogRoutes } from "./routes/logs.js";
import { registerOpenApiRoute } from "./routes/openapi.js";
import type { ZodApp } from "./routes/shared.js";
import { registerTaskRunRoutes } from "./routes/task-runs.js";

export interface BuildServerOptions {
  store: StateStore;
  /** The process's root logger; the server logs through a child with secrets redacted. */
  logger: Logger;
  /** Compiled from the configuration (config/compile.ts); listening is the caller's. */
  options: ServerOptions;
  /** Reported by /health and the OpenAPI document. */
  version: string;
  /** Wake-ups for long-polls; default: an in-process notifier (right for one server on SQLite). */
  notifier?: Notifier;
  /** Milliseconds since the epoch, for agent presence and the reaper; default Date.now. */
  now?: () => number;
  /**
   * The key run tokens are signed with and secrets sealed with (32 bytes or more); default: a random one,
   * so that neither outlives the process. `berth server` keeps one in server.keyFile.
   */
  serverKey?: Buffer;
}

declare module "fastify" {
  interface FastifyInstance {
    /** The server's reaper: `app.reaper.reapOnce(now)` runs one pass (tests drive time this way). */
    reaper: Reaper;
    /** The server's scheduler: `app.scheduler.tickOnce(now)` runs one pass. */
    scheduler: Scheduler;
  }
}

/** Secrets that must never reach a log line, by path. */
export const REDACTED_LOG_PATHS = ["req.headers.authorization", "headers.authorization", "*.apiToken", "apiToken"];

export async function buildServer(options: BuildServerOptions): Promise<ZodApp> {
  const { store, version } = options;
  const config = options.options;
  const logger = options.logger.child({ component: "server" }, { redact: { paths: REDACTED_LOG_PATHS, censor: "[redacted]" } });
  const ownNotifier = options.notifier === undefined;
  const notifier = options.notifier ?? new LocalNotifier();
  const closing = new AbortController();
  const now = options.now ?? Date.now;

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // Agents poll and heartbeat constantly: one line per request at info would drown everything else.
    logController: new LogController({ disableRequestLogging: true }),
    frameworkErrors,
  }).withTypeProvider<ZodTypeProvider>();
  installJsonParser(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandlers(app);

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: "berth", description: "The berth API: flows, flow runs, logs and agents.", version },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
    // Named types (components/schemas) for clients generated from the document: wire/openapi-names.ts.
    transform: createJsonSchemaTransform({ schemaRegistry: apiSchemas }),
    transformObject: createJsonSchemaTransformObject({ schemaRegistry: apiSchemas }),
  });

  const serverKey = options.serverKey ?? randomBytes(32);
  const runTokens = new RunTokens(serverKey);
  const secrets = new Secrets(store, serverKey, now);
  installAuth(app, { store, apiToken: config.apiToken, runTokens, now });
  app.addHook("onResponse", async (request, reply) => {
    request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, "request");
  });
  // preClose runs before the HTTP server waits for in-flight requests: parked long-polls must answer first.
  app.addHook("preClose", async () => closing.abort());

  const presence = new AgentPresence(config.agentLostAfterMs, now);
  const metrics = new ServerMetrics(store, presence);
  app.addHook("onResponse", async (request, reply) => {
    // The route's pattern, not its URL: ids in paths would make a series per run.
    const route = request.routeOptions.url ?? "(unmatched)";
    metrics.httpDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });
  const startedAt = now();
  const reaper = new Reaper({ store, notifier, metrics, presence, logger: app.log.child({ component: "reaper" }), timings: config, now, startedAt });
  app.decorate("reaper", reaper);
  const scheduler = new Scheduler({
    store,
    notifier,
    logger: app.log.child({ component: "scheduler" }),
    intervalMs: config.schedulerIntervalMs,
    now,
    startedAt,
    metrics,
  });
  app.decorate("scheduler", scheduler);
  app.addHook("onClose", async () => {
    closing.abort();
    // Before the caller closes the store: a pass under way still uses it.
    await reaper.stop();
    await scheduler.stop();
    if (ownNotifier) await notifier.close();
  });

  const ctx: ServerContext = {
    store,
    notifier,
    metrics,
    presence,
    scheduler,
    runTokens,
    secrets,
    options: config,
    version,
    logger: app.log,
    closing: closing.signal,
  };
  registerHealthRoutes(app, ctx);
  registerMetricsRoute(app, ctx);
  registerOpenApiRoute(app);
  registerFlowRoutes(app, ctx);
  await registerBuildContextRoutes(app, ctx);
  registerFlowRunRoutes(app, ctx);
  registerFlowRunStateRoutes(app, ctx);
  registerTaskRunRoutes(app, ctx);
  registerLogRoutes(app, ctx);
  registerAgentRoutes(app, ctx);
  registerClaimRoutes(app, ctx);
  registerScheduleRoutes(app, ctx);
  registerConcurrencyRoutes(app, ctx);
  registerTrustRoutes(app, ctx);
  await registerUiRoutes(app);
  await app.ready();
  reaper.start();
  scheduler.start();
  return app;
}

/**
 * JSON bodies are checked for depth before they are parsed (see shared/json-limits.ts), then parsed by
 * Fastify's own parser, which refuses prototype poisoning.
 */
function installJsonParser(app: ZodApp): void {
  const parse = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    const path = tooDeep(body as string);
    if (path === undefined) return parse(request, body as string, done);
    const message = `nested deeper than ${MAX_JSON_DEPTH} levels`;
    done(
      new BerthError("BERTH_E_VALIDATION", `invalid body for ${request.method} ${request.url.split("?")[0] ?? ""}: ${path} is ${message}`, {
        details: { issues: [{ in: "body", path, message }] },
      }),
      undefined,
    );
  });
}

/** Pieces every route module uses: the typed app, error responses for the OpenAPI document, lookups that 404. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, RawServerDefault } from "fastify";
import type { ServerContext } from "../context.js";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { BerthError } from "../../wire/errors.js";
import { ErrorBodySchema, type AgentRecord, type FlowRecord, type FlowRun, type LogLine, type TaskRun } from "../../wire/schema.js";
import { logsTopic } from "../notifier.js";
import type { StateStore } from "../../store/port.js";

export type ZodApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, ZodTypeProvider>;

export const IdParams = z.strictObject({ id: z.string().min(1).max(100) });

/** The route's success responses plus the error body every route may answer with. */
export function withErrors<T extends Record<number, z.ZodType>>(responses: T): T & { "4xx": typeof ErrorBodySchema; "5xx": typeof ErrorBodySchema } {
  return { ...responses, "4xx": ErrorBodySchema, "5xx": ErrorBodySchema };
}

export async function requireFlow(store: StateStore, id: string): Promise<FlowRecord> {
  const flow = await store.getFlow(id);
  if (!flow) throw new BerthError("BERTH_E_FLOW_NOT_FOUND", `flow ${id} not found: list flows with \`berth flows\``);
  return flow;
}

export async function requireFlowRun(store: StateStore, id: string): Promise<FlowRun> {
  const run = await store.getFlowRun(id);
  if (!run) throw flowRunNotFound(id);
  return run;
}

export function flowRunNotFound(id: string): BerthError {
  return new BerthError("BERTH_E_FLOW_RUN_NOT_FOUND", `flow run ${id} not found: list runs with \`berth runs\``);
}

/**
 * Whose secret values to redact from what this request writes about a run: every secret's for an admin;
 * for a run's or an agent's, its flow's own (see Secrets.scopeFor).
 */
export async function redactionScope(ctx: ServerContext, request: FastifyRequest, flowRunId: string): Promise<ReadonlySet<string> | undefined> {
  if (request.principal === undefined || request.principal.role === "admin") return undefined;
  return ctx.secrets.scopeFor((await ctx.store.getFlowRun(flowRunId))?.flowId ?? "");
}

/** Records task-run states of a run, their messages redacted, as POST …/task-runs does (and a state write carrying them). */
export async function recordTaskRuns(ctx: ServerContext, id: string, taskRuns: TaskRun[], epoch: number | undefined, scope: ReadonlySet<string> | undefined): Promise<void> {
  const redacted = await ctx.secrets.redactEach(taskRuns, (run) => run.message, (run, message) => ({ ...run, message }), scope);
  await ctx.store.upsertTaskRuns(id, redacted, epoch);
}

/** Appends log lines to a run, redacted, and wakes its followers, as POST …/logs does (and a state write carrying them). */
export async function recordLogs(ctx: ServerContext, id: string, logs: LogLine[], epoch: number | undefined, scope: ReadonlySet<string> | undefined): Promise<void> {
  const redacted = await ctx.secrets.redactEach(logs, (line) => line.message, (line, message) => ({ ...line, message }), scope);
  await ctx.store.appendLogs(id, redacted, epoch, ctx.options.runLogLimitBytes);
  ctx.notifier.notify(logsTopic(id));
}

export async function requireAgent(store: StateStore, id: string): Promise<AgentRecord> {
  const agent = await store.getAgent(id);
  if (!agent) throw agentNotFound(id);
  return agent;
}

export function agentNotFound(id: string): BerthError {
  return new BerthError("BERTH_E_AGENT_NOT_FOUND", `agent ${id} not found: it must register again (POST /api/agents)`);
}

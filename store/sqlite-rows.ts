/**
 * Rows as SQLite (and PostgreSQL, with the same columns) returns them, their mapping to the wire types, and
 * the rows a new flow version or run is written as. JSON columns are parsed and written here only.
 */
import { randomUUID } from "node:crypto";
import { slugify } from "../shared/slug.js";
import { DEFAULT_RECOVERY } from "../wire/schema.js";
import type { AgentRecord, FlowCreate, FlowRecord, FlowRun, FlowRunStateName, LogLevel, RunPhases, StoredLog, TaskRun, TaskRunStateName, TokenRecord, TokenRole } from "../wire/schema.js";
import { normalizeLabels } from "./labels.js";
import type { NewFlowRun, StoredAgent, StoredToken } from "./port.js";

export interface FlowRow {
  id: string;
  name: string;
  slug: string;
  version: number;
  content_hash: string;
  labels: string;
  storage: string;
  environment: string;
  parameters: string;
  tasks: string;
  created_at: string;
  /** JSON; NULL for flows registered before recovery existed, read as the default policy. */
  recovery: string | null;
  run_timeout_ms: number | null;
  /** The build context the version's storage names, if any (a copy of storage.context.sha256, indexed). */
  context_sha256?: string | null;
  /** JSON array of clocks; NULL for flows registered before schedules existed (none). */
  schedule: string | null;
  /** NULL reads as "latest". */
  catch_up: string | null;
  max_concurrent_runs: number | null;
  /** JSON; NULL for versions from before resources existed: the agent's limits. */
  resources: string | null;
  /** NULL for versions from before runAs existed: "user". */
  run_as: string | null;
  /** JSON array of Swarm placement constraints; NULL for none. */
  placement: string | null;
}

export interface FlowRunRow {
  id: string;
  flow_id: string;
  flow_name: string;
  flow_version: number;
  state: string;
  state_message: string | null;
  version: number;
  labels: string;
  parameters: string;
  idempotency_key: string | null;
  agent_id: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  ended_at: string | null;
  last_heartbeat_at: string | null;
  epoch: number;
  lease_expires_at: string | null;
  scheduled_start: string;
  clock: string | null;
  /** JSON: claimed and the agent's steps of the current attempt; absent from rows made here before insert. */
  phases?: string | null;
}

export interface TaskRunRow {
  task_slug: string;
  task_name: string;
  state: string;
  message: string | null;
  attempt: number;
  updated_at: string;
}

export interface LogRow {
  id: number;
  at: string;
  level: string;
  message: string;
  task: string | null;
  stream?: string | null;
}

export interface AgentRow {
  id: string;
  name: string;
  labels: string;
  concurrency: number;
  status: string;
  created_at: string;
  last_heartbeat_at: string;
  /** Until when a claim of the agent's is parked at some server replica; NULL when none is. */
  waiting_until?: string | null;
  health?: string | null;
}

export function toFlow(row: FlowRow): FlowRecord {
  return {
    id: row.id,
    name: row.name,
    slug: row.slug,
    version: row.version,
    contentHash: row.content_hash,
    labels: JSON.parse(row.labels) as FlowRecord["labels"],
    storage: JSON.parse(row.storage) as FlowRecord["storage"],
    environment: JSON.parse(row.environment) as FlowRecord["environment"],
    parameters: JSON.parse(row.parameters) as FlowRecord["parameters"],
    tasks: JSON.parse(row.tasks) as FlowRecord["tasks"],
    recovery: row.recovery === null ? { ...DEFAULT_RECOVERY } : (JSON.parse(row.recovery) as FlowRecord["recovery"]),
    runTimeoutMs: row.run_timeout_ms,
    schedule: row.schedule === null ? [] : (JSON.parse(row.schedule) as FlowRecord["schedule"]),
    catchUp: (row.catch_up ?? "latest") as FlowRecord["catchUp"],
    maxConcurrentRuns: row.max_concurrent_runs,
    resources: row.resources === null ? { memoryBytes: null, cpus: null, pids: null } : (JSON.parse(row.resources) as FlowRecord["resources"]),
    runAs: (row.run_as ?? "user") as FlowRecord["runAs"],
    placement: row.placement === null ? [] : (JSON.parse(row.placement) as string[]),
    createdAt: row.created_at,
  };
}

export function toFlowRun(row: FlowRunRow): FlowRun {
  return {
    id: row.id,
    flowId: row.flow_id,
    flowName: row.flow_name,
    flowVersion: row.flow_version,
    state: row.state as FlowRunStateName,
    stateMessage: row.state_message,
    version: row.version,
    labels: JSON.parse(row.labels) as string[],
    parameters: JSON.parse(row.parameters) as Record<string, unknown>,
    idempotencyKey: row.idempotency_key,
    agentId: row.agent_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    lastHeartbeatAt: row.last_heartbeat_at,
    epoch: row.epoch,
    leaseExpiresAt: row.lease_expires_at,
    scheduledStart: row.scheduled_start,
    clock: row.clock,
    phases: toPhases(row),
  };
}

/** The stored phases of the current attempt, with those the run's own columns say; none while it waits for a claim. */
function toPhases(row: FlowRunRow): RunPhases {
  const stored = row.state === "Scheduled" || !row.phases ? {} : (JSON.parse(row.phases) as Partial<RunPhases>);
  return {
    queued: row.scheduled_start,
    claimed: stored.claimed ?? null,
    imageReady: stored.imageReady ?? null,
    imageSource: stored.imageSource ?? null,
    containerCreated: stored.containerCreated ?? null,
    containerStarted: stored.containerStarted ?? null,
    runtimeUp: row.started_at,
    flowFinished: row.ended_at,
    cleanedUp: stored.cleanedUp ?? null,
  };
}

export function toTaskRun(row: TaskRunRow): TaskRun {
  return {
    taskSlug: row.task_slug,
    taskName: row.task_name,
    state: row.state as TaskRunStateName,
    message: row.message,
    attempt: row.attempt,
    updatedAt: row.updated_at,
  };
}

export function toStoredLog(row: LogRow): StoredLog {
  return { id: row.id, at: row.at, level: row.level as LogLevel, message: row.message, task: row.task, stream: (row.stream ?? null) as StoredLog["stream"] };
}

export function toAgent(row: AgentRow): StoredAgent {
  return {
    waitingUntil: row.waiting_until ?? null,
    id: row.id,
    name: row.name,
    labels: JSON.parse(row.labels) as string[],
    concurrency: row.concurrency,
    status: row.status as AgentRecord["status"],
    createdAt: row.created_at,
    lastHeartbeatAt: row.last_heartbeat_at,
    health: row.health ? (JSON.parse(row.health) as AgentRecord["health"]) : null,
  };
}

/** The row of a new version of a flow. */
export function newFlowRow(input: FlowCreate, version: number, createdAt: string): FlowRow {
  return {
    id: randomUUID(),
    name: input.name,
    slug: slugify(input.name),
    version,
    content_hash: input.contentHash,
    labels: JSON.stringify(normalizeLabels(input.labels)),
    storage: JSON.stringify(input.storage),
    environment: JSON.stringify(input.environment),
    parameters: JSON.stringify(input.parameters),
    tasks: JSON.stringify(input.tasks),
    created_at: createdAt,
    recovery: JSON.stringify(input.recovery),
    run_timeout_ms: input.runTimeoutMs,
    context_sha256: input.storage.type === "docker" ? (input.storage.context?.sha256 ?? null) : null,
    schedule: input.schedule.length === 0 ? null : JSON.stringify(input.schedule),
    catch_up: input.catchUp,
    max_concurrent_runs: input.maxConcurrentRuns,
    resources: JSON.stringify(input.resources),
    run_as: input.runAs,
    placement: input.placement.length === 0 ? null : JSON.stringify(input.placement),
  };
}

/** The row of a new Scheduled run, made now. */
export function newRunRow(input: NewFlowRun & { clock?: string | null }, now: string): FlowRunRow {
  return {
    id: randomUUID(),
    flow_id: input.flow.id,
    flow_name: input.flow.name,
    flow_version: input.flow.version,
    state: "Scheduled",
    state_message: null,
    version: 0,
    labels: JSON.stringify(normalizeLabels(input.labels)),
    parameters: JSON.stringify(input.parameters),
    idempotency_key: input.idempotencyKey ?? null,
    agent_id: null,
    created_at: now,
    updated_at: now,
    started_at: null,
    ended_at: null,
    last_heartbeat_at: null,
    epoch: 0,
    lease_expires_at: null,
    scheduled_start: input.scheduledStart ? input.scheduledStart.toISOString() : now,
    clock: input.clock ?? null,
  };
}

export interface TokenRow {
  id: string;
  hash: string;
  role: TokenRole;
  name: string | null;
  labels: string | null;
  created_at: string;
  revoked_at: string | null;
}

/** The row of a new token. */
export function newTokenRow(input: { role: TokenRole; name: string | null; labels: string[] | null; hash: string }, createdAt: string): TokenRow {
  return {
    id: randomUUID(),
    hash: input.hash,
    role: input.role,
    name: input.name,
    labels: input.labels === null ? null : JSON.stringify(normalizeLabels(input.labels)),
    created_at: createdAt,
    revoked_at: null,
  };
}

export function toToken(row: TokenRow): StoredToken {
  const labels = row.labels === null ? null : (JSON.parse(row.labels) as string[]);
  return { id: row.id, hash: row.hash, role: row.role, name: row.name, labels, createdAt: row.created_at, revokedAt: row.revoked_at };
}

export function withoutHash({ hash: _hash, ...record }: StoredToken): TokenRecord {
  return record;
}

/**
 * The wire contract of berth's HTTP API, validated with zod in both directions.
 *
 * Glossary
 * - flow: a named graph of tasks, registered with the server in versions (one per distinct content hash).
 * - task: one function in a flow; a task run is its execution within one flow run.
 * - flow run: one execution of one flow version, with parameters and labels fixed at creation.
 * - state: where a flow run or task run stands (see FLOW_RUN_STATES, TASK_RUN_STATES); flow-run state changes
 *   are compare-and-swap on `version`.
 * - label: a string on runs and agents; a run is claimable by an agent only if every run label is an agent
 *   label, and a run with no labels only by an agent with no labels.
 * - agent: a long-running process that claims flow runs and runs each in a container.
 * - claim: the atomic hand-over of a Scheduled run to one agent (the run becomes Submitted).
 * - lease: an agent's hold on a claimed run, kept alive by the agent's heartbeats (which list the runs it holds);
 *   a run whose lease runs out before it starts goes back to Scheduled (server/reaper.ts).
 * - epoch: a run's claim count, and so its attempt number. Writes from a run's container carry the epoch of
 *   the claim they belong to, and the server refuses one that is not current (fencing): an attempt the server
 *   gave up on can never overwrite the attempt that replaced it.
 * - recovery: what the server does with a run whose attempt is lost (its container went silent).
 * - storage: where flow *code* lives (a Docker image, a local directory). Never confuse with the store.
 * - store: where run *state* lives (SQLite, PostgreSQL).
 * - environment: the object that, inside the run's container, sets up and executes the flow from storage.
 */
import { z } from "zod";
import {
  CATCH_UP,
  MAX_ATTEMPTS,
  ON_LOST,
  PLACEMENT_CONSTRAINT,
  PLACEMENT_CONSTRAINT_HELP,
  RESOURCE_BOUNDS,
  RUN_AS,
  DEFAULT_CLAIM_WAIT_MS, JSON_SIZE_LIMITS, LABEL, MAX_KNOWN_FLOWS, FLOW_RUN_STATES, LOG_LEVELS, MAX_LOG_MESSAGE_LENGTH, MAX_STATE_MESSAGE_LENGTH, STATE_REPORT_MAX, TASK_RUN_STATES } from "./constants.js";

export {
  MAX_KNOWN_FLOWS,
  CATCH_UP,
  RUN_AS,
  DEFAULT_CLAIM_WAIT_MS,
  EXIT_SUPERSEDED,
  FINAL_FLOW_RUN_STATES,
  FLOW_RUN_STATES,
  IMAGE_FLOWS_DIR,
  JSON_SIZE_LIMITS,
  LABEL,
  LOG_LEVELS,
  MAX_LOG_MESSAGE_LENGTH,
  MAX_STATE_MESSAGE_LENGTH,
  TASK_RUN_STATES,
} from "./constants.js";

export const FlowRunStateName = z.enum(FLOW_RUN_STATES);
export type FlowRunStateName = z.infer<typeof FlowRunStateName>;
export const TaskRunStateName = z.enum(TASK_RUN_STATES);
export type TaskRunStateName = z.infer<typeof TaskRunStateName>;

export const LogLevel = z.enum(LOG_LEVELS);
export type LogLevel = z.infer<typeof LogLevel>;

const Id = z.string().min(1).max(100);
export const Label = z.string().min(1).max(200).regex(LABEL, "labels have no spaces, commas or control characters");
export const Labels = z.array(Label).max(100);
const Name = z.string().trim().min(1).max(200);
const Timestamp = z.string(); // ISO-8601
/** A secret's name, as `berth secret set NAME` and `Secret("NAME")` write it. */
export const SecretName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/, "a secret's name is 1 to 128 letters, digits, _ . or -, starting with a letter or _");
const JsonRecord = z.record(z.string(), z.unknown());

function jsonOfAtMost<S extends z.ZodType>(schema: S, maxBytes: number): S {
  return schema.superRefine((value, ctx) => {
    if (value === undefined) return;
    // TextEncoder, not Buffer: these schemas also type the web UI, which runs in a browser.
    const bytes = new TextEncoder().encode(JSON.stringify(value) ?? "").length;
    if (bytes > maxBytes) ctx.addIssue({ code: "custom", message: `is ${bytes} bytes of JSON; at most ${maxBytes} are allowed` });
  }) as unknown as S;
}

/** A sha256 digest in hex: the identity of a build context on the server. */
export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 digest: 64 lowercase hex digits");

/**
 * What an agent needs to build a storage image itself: the build context (a tar of the Dockerfile, the
 * bundled flows and the `files` they copy) the server keeps by its sha256. Flows registered by an older berth
 * have none, and can only be pulled.
 */
export const BuildContextRef = z.object({
  sha256: Sha256,
  /** Bytes of the tar archive. */
  size: z.number().int().nonnegative(),
  /** True when the Dockerfile builds FROM the berth image (ARG BASE_IMAGE), which the builder supplies. */
  berthBase: z.boolean(),
});
export type BuildContextRef = z.infer<typeof BuildContextRef>;

/** The answer to an upload of a build context (PUT /api/build-contexts/:sha256). */
export const BuildContextStored = z.object({ sha256: Sha256, size: z.number().int().nonnegative(), created: z.boolean() });
export type BuildContextStored = z.infer<typeof BuildContextStored>;

export const StorageSpec = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("docker"),
    image: z.string().min(1).max(500),
    registryUrl: z.string().max(300).optional(),
    flows: z.record(z.string(), z.string()),
    context: BuildContextRef.optional(),
  }),
  z.object({
    type: z.literal("local"),
    directory: z.string().min(1).max(2000),
    flows: z.record(z.string(), z.string()),
  }),
]);
export type StorageSpec = z.infer<typeof StorageSpec>;

export const EnvironmentSpec = z.object({
  /** "LocalEnvironment" for the built-in; "custom" for any user subclass, whatever its name. */
  type: z.enum(["LocalEnvironment", "custom"]),
  className: z.string().min(1).max(200),
  labels: Labels,
  metadata: JsonRecord,
});
export type EnvironmentSpec = z.infer<typeof EnvironmentSpec>;
const EnvironmentSpecInput = EnvironmentSpec.extend({ metadata: jsonOfAtMost(JsonRecord, JSON_SIZE_LIMITS.metadata) });

export const ParameterSpec = z.object({
  name: Name,
  required: z.boolean(),
  default: z.unknown().optional(),
});
export type ParameterSpec = z.infer<typeof ParameterSpec>;
const ParameterSpecInput = ParameterSpec.extend({ default: jsonOfAtMost(z.unknown(), JSON_SIZE_LIMITS.parameterDefault).optional() });

/** The largest timer Node.js can arm: a longer setTimeout fires at once. */
const MAX_TIMER_MS = 2_147_483_647;

export const RecoveryPolicy = z.object({
  /** A Running run whose container went silent: "fail" it (default), or "reschedule" it while attempts remain. */
  onLost: z.enum(ON_LOST).default("fail"),
  /** Claims a run may have in all, counting the first; default 3. */
  maxAttempts: z.number().int().min(MAX_ATTEMPTS.min).max(MAX_ATTEMPTS.max).default(MAX_ATTEMPTS.default),
});
export type RecoveryPolicy = z.infer<typeof RecoveryPolicy>;
export const DEFAULT_RECOVERY: RecoveryPolicy = { onLost: "fail", maxAttempts: 3 };

export const CatchUp = z.enum(CATCH_UP);
export type CatchUp = z.infer<typeof CatchUp>;

/** Parameters and labels a clock gives its runs (over the flow's defaults and labels). */
const ClockRunFields = {
  /** Clock time before which it makes no slots; null for none. */
  startAt: Timestamp.nullable().default(null),
  /** Clock time after which it makes no slots; null for none. */
  endAt: Timestamp.nullable().default(null),
  parameters: jsonOfAtMost(JsonRecord, JSON_SIZE_LIMITS.metadata).default({}),
  /** Labels of this clock's runs instead of the flow's; null to keep the flow's. */
  labels: Labels.nullable().default(null),
};

/**
 * One clock of a flow's schedule (flows/schedules.ts makes them): a cron expression read in an IANA time
 * zone, or a fixed interval counted from `startAt` (from the Unix epoch when there is none, so that the
 * slots of an unchanged clock do not move when the flow is registered again).
 */
export const ClockSpec = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("cron"),
    cron: z.string().trim().min(1).max(200),
    timezone: z.string().min(1).max(100).default("UTC"),
    ...ClockRunFields,
  }),
  z.object({
    type: z.literal("interval"),
    everyMs: z.number().int().min(1_000).max(366 * 24 * 3_600_000),
    ...ClockRunFields,
  }),
]);
export type ClockSpec = z.infer<typeof ClockSpec>;
export type ClockSpecInput = z.input<typeof ClockSpec>;

/** A flow version's fields, as the server stores and serves them. */
export const RunAs = z.enum(RUN_AS);
export type RunAs = z.infer<typeof RunAs>;

/** What a flow's run container may use; null fields take the agent's limits. */
export const Resources = z.object({
  memoryBytes: z.number().int().min(RESOURCE_BOUNDS.memoryBytes.min).max(RESOURCE_BOUNDS.memoryBytes.max).nullable().default(null),
  cpus: z.number().min(RESOURCE_BOUNDS.cpus.min).max(RESOURCE_BOUNDS.cpus.max).nullable().default(null),
  pids: z.number().int().min(RESOURCE_BOUNDS.pids.min).max(RESOURCE_BOUNDS.pids.max).nullable().default(null),
});
export type Resources = z.infer<typeof Resources>;

/** A Swarm placement constraint: "node.<attribute> == value" or "!=", as `docker service create --constraint` takes. */
export const PlacementConstraint = z
  .string()
  .max(256)
  .regex(PLACEMENT_CONSTRAINT, PLACEMENT_CONSTRAINT_HELP);

const FlowFields = z.object({
  name: Name,
  labels: Labels.default([]),
  storage: StorageSpec,
  environment: EnvironmentSpec,
  /** Identifies the flow's content; registering the same hash again makes no new version. */
  contentHash: z.string().min(1).max(200),
  parameters: z.array(ParameterSpec).max(1000).default([]),
  /** A task made by `Secret("NAME")` names the secret it reads: a run may read only its flow's secrets. */
  /** Each task; `upstream` names (by slug) the tasks it waits for, so clients can draw the flow's DAG. */
  tasks: z
    .array(z.object({ slug: z.string().min(1), name: z.string().min(1), secret: SecretName.optional(), upstream: z.array(z.string().min(1)).max(10_000).optional() }))
    .max(100_000)
    .default([]),
  /** What to do when a run's attempt is lost; default { onLost: "fail", maxAttempts: 3 }. */
  recovery: RecoveryPolicy.prefault({}),
  /** A run taking longer is stopped by its agent and Failed; default null (no limit). */
  runTimeoutMs: z.number().int().positive().max(MAX_TIMER_MS).nullable().default(null),
  /** The clocks that make this flow's runs; the newest version's schedule is the one the scheduler follows. */
  schedule: z.array(ClockSpec).max(20).default([]),
  /** Slots missed while the server was down: none run, the latest runs (default), or all run. */
  catchUp: CatchUp.default("latest"),
  /** At most this many runs of the flow (any version) Submitted, Running or Cancelling at once; null for no limit. */
  maxConcurrentRuns: z.number().int().positive().max(100_000).nullable().default(null),
  /** Limits of the run's container; null for the agent's (memory in bytes, CPUs, processes). */
  resources: Resources.prefault({}),
  /** "user" (default): an unprivileged user; "root" only on agents started with --allow-root. */
  runAs: RunAs.default("user"),
  /** Swarm placement constraints of the run ("node.labels.zone==a"); agents on one Docker engine ignore them. */
  placement: z.array(PlacementConstraint).max(32).default([]),
});

/** Body of POST /api/flows: the fields, with free-form JSON bounded in size. */
export const FlowCreate = FlowFields.extend({
  environment: EnvironmentSpecInput,
  parameters: z.array(ParameterSpecInput).max(1000).default([]),
});
export type FlowCreate = z.infer<typeof FlowCreate>;

export const FlowRecord = FlowFields.extend({
  id: Id,
  slug: z.string(),
  version: z.number().int().positive(),
  createdAt: Timestamp,
});
export type FlowRecord = z.infer<typeof FlowRecord>;

export const FlowRegistered = z.object({ flow: FlowRecord, created: z.boolean() });
export type FlowRegistered = z.infer<typeof FlowRegistered>;

export const FlowRunCreate = z
  .object({
    flowId: Id.optional(),
    flowName: Name.optional(),
    /** With flowName: a specific version; the newest when omitted. */
    flowVersion: z.number().int().positive().optional(),
    parameters: jsonOfAtMost(JsonRecord, JSON_SIZE_LIMITS.parameters).default({}),
    /** Overrides the flow's labels for this run. */
    labels: Labels.optional(),
    idempotencyKey: z.string().min(1).max(200).optional(),
    /** Not claimable before this time (ISO-8601); default: now. */
    scheduledStart: z.iso.datetime({ offset: true }).optional(),
  })
  .refine((v) => v.flowId !== undefined || v.flowName !== undefined, {
    message: "give flowId or flowName",
    path: ["flowId"],
  });
export type FlowRunCreate = z.infer<typeof FlowRunCreate>;

/** How a run's image became ready on its agent. */
export const IMAGE_SOURCES = ["present", "pulled", "built"] as const;

/** What the agent reports of an attempt's steps (POST /api/flow-runs/:id/phases), in its own clock. */
export const AgentPhases = z.object({
  imageReady: Timestamp.optional(),
  imageSource: z.enum(IMAGE_SOURCES).optional(),
  containerCreated: Timestamp.optional(),
  containerStarted: Timestamp.optional(),
  cleanedUp: Timestamp.optional(),
});
export type AgentPhases = z.infer<typeof AgentPhases>;

export const PhasesReport = AgentPhases.extend({ epoch: z.number().int().nonnegative() });
export type PhasesReport = z.infer<typeof PhasesReport>;

/**
 * Where the current attempt's time went, one timestamp per step; null for a step not reached (or not
 * reported). queued: when it was due; claimed: by the server; runtimeUp and flowFinished: the container's
 * Running and final state writes; the others, the agent's.
 */
export const RunPhases = z.object({
  queued: Timestamp,
  claimed: Timestamp.nullable(),
  imageReady: Timestamp.nullable(),
  imageSource: z.enum(IMAGE_SOURCES).nullable(),
  containerCreated: Timestamp.nullable(),
  containerStarted: Timestamp.nullable(),
  runtimeUp: Timestamp.nullable(),
  flowFinished: Timestamp.nullable(),
  cleanedUp: Timestamp.nullable(),
});
export type RunPhases = z.infer<typeof RunPhases>;

export const FlowRun = z.object({
  id: Id,
  flowId: Id,
  flowName: z.string(),
  flowVersion: z.number().int(),
  state: FlowRunStateName,
  stateMessage: z.string().nullable(),
  /** Incremented on every state change; writers send it back as expectedVersion. */
  version: z.number().int().nonnegative(),
  labels: Labels,
  parameters: JsonRecord,
  idempotencyKey: z.string().nullable(),
  agentId: z.string().nullable(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  startedAt: Timestamp.nullable(),
  endedAt: Timestamp.nullable(),
  /** When the run's container last reported in (POST /api/flow-runs/:id/heartbeat); null before the first. */
  lastHeartbeatAt: Timestamp.nullable().optional(),
  /** 0 until first claimed, then +1 on every claim: the attempt number, and the fencing token of its writes. */
  epoch: z.number().int().nonnegative(),
  /** Until when the claiming agent holds the run unless it renews; null when no agent holds it. */
  leaseExpiresAt: Timestamp.nullable(),
  /** No agent may claim the run before this time. Runs created before start times existed have their creation time. */
  scheduledStart: Timestamp,
  /** The schedule clock (its key) whose slot made the run; null for a run someone asked for. */
  clock: z.string().nullable(),
  /** Where the current attempt's time went (absent from servers that predate it). */
  phases: RunPhases.optional(),
});
export type FlowRun = z.infer<typeof FlowRun>;

export const FlowRunView = FlowRun.extend({
  /** For a Scheduled run: why its last attempt was given up, if it was, and why no agent is picking it up, if none can. */
  pickup: z.string().optional(),
});
export type FlowRunView = z.infer<typeof FlowRunView>;

export const FlowRunCreated = z.object({ flowRun: FlowRunView, created: z.boolean() });
export type FlowRunCreated = z.infer<typeof FlowRunCreated>;

/** The writer's lease epoch: a write that carries one is refused (BERTH_E_STALE_LEASE) unless it is the run's. */
const Epoch = z.number().int().nonnegative();

export const TaskRun = z.object({
  taskSlug: z.string().min(1).max(500),
  taskName: z.string().min(1).max(500),
  state: TaskRunStateName,
  message: z.string().max(MAX_STATE_MESSAGE_LENGTH).nullable().optional(),
  attempt: z.number().int().positive(),
  updatedAt: Timestamp.optional(),
});
export type TaskRun = z.infer<typeof TaskRun>;

export const TaskRunsUpdate = z.object({ taskRuns: z.array(TaskRun).min(1).max(10_000), epoch: Epoch.optional() });
export type TaskRunsUpdate = z.infer<typeof TaskRunsUpdate>;

export const LogLine = z.object({
  at: Timestamp,
  level: LogLevel,
  message: z.string().max(MAX_LOG_MESSAGE_LENGTH),
  task: z.string().max(500).nullable().optional(),
  /**
   * The line's number in its attempt (1, 2, ...), given by a flow-run container: a line sent again after a
   * lost reply is stored once. Lines without one are always stored.
   */
  seq: z.number().int().positive().optional(),
  /** For output the agent collected from the container: the stream it was written to; null for console lines. */
  stream: z.enum(["stdout", "stderr"]).nullable().optional(),
});
export type LogLine = z.infer<typeof LogLine>;

export const LogsAppend = z.object({ logs: z.array(LogLine).min(1).max(10_000), epoch: Epoch.optional() });
export type LogsAppend = z.infer<typeof LogsAppend>;

export const StateChange = z.object({
  state: FlowRunStateName,
  message: z.string().max(MAX_STATE_MESSAGE_LENGTH).optional(),
  expectedVersion: z.number().int().nonnegative(),
  /** Sent by the run's own attempt; users' writes (cancel, CLI) leave it out and are not fenced. */
  epoch: Epoch.optional(),
  /**
   * Task states and log lines the attempt has not reported yet, recorded before the state (as POST …/task-runs
   * and …/logs would record them) once the write has passed its checks (epoch, version, transition): a run's
   * last report and its final state, or its first lines and Running, travel in one request. A write that then
   * loses its compare-and-swap to a concurrent writer may leave them recorded; sent again, lines are stored
   * once and task states replace their own.
   */
  taskRuns: z.array(TaskRun).max(STATE_REPORT_MAX).optional(),
  logs: z.array(LogLine).max(STATE_REPORT_MAX).optional(),
});
export type StateChange = z.infer<typeof StateChange>;

export const StoredLog = LogLine.omit({ seq: true }).extend({ id: z.number().int(), task: z.string().nullable() });
export type StoredLog = z.infer<typeof StoredLog>;

export const LogsPage = z.object({ logs: z.array(StoredLog), next: z.number().int() });
export type LogsPage = z.infer<typeof LogsPage>;

export const AgentRegister = z.object({
  name: Name,
  labels: Labels.default([]),
  concurrency: z.number().int().positive().max(1000).default(1),
});
export type AgentRegister = z.infer<typeof AgentRegister>;

/** The storage images an agent must keep when it collects garbage (GET /api/agents/:id/kept-images). */
export const KeptImages = z.object({
  /** The newest version's image of every flow, and the images of flow versions with runs not over or recent. */
  images: z.array(z.string()),
});
export type KeptImages = z.infer<typeof KeptImages>;

/**
 * Containers on an agent's engine that other agents made (POST /api/agents/:id/orphans): the server answers
 * which may be removed, those of runs that are over whose agent is gone for good.
 */
export const OrphanQuery = z.object({
  containers: z
    .array(
      z.object({
        /** The engine's id of the container. */
        container: z.string().min(1).max(200),
        /** Its labels: the agent that made it, and its run. */
        agentId: Id,
        flowRunId: Id,
      }),
    )
    .max(1000),
});
export type OrphanQuery = z.infer<typeof OrphanQuery>;

export const OrphanReply = z.object({
  /** The containers to remove, each with why. */
  remove: z.array(z.object({ container: z.string(), reason: z.string() })),
});
export type OrphanReply = z.infer<typeof OrphanReply>;

/** What an agent says of itself with each heartbeat: the runs it holds, its free disk, why it is unhealthy. */
export const AgentHealthReport = z.object({
  slotsUsed: z.number().int().nonnegative(),
  diskFreeBytes: z.number().int().nonnegative().nullable(),
  /** Empty when healthy; otherwise one sentence each, as its /health says. */
  reasons: z.array(z.string().max(500)).max(10),
});
export type AgentHealthReport = z.infer<typeof AgentHealthReport>;

export const AgentRecord = z.object({
  id: Id,
  name: z.string(),
  labels: Labels,
  concurrency: z.number().int(),
  /** draining: stopping, it claims nothing more and waits for its runs. */
  status: z.enum(["online", "unhealthy", "draining", "stopped", "lost"]),
  createdAt: Timestamp,
  lastHeartbeatAt: Timestamp,
  /** True while one of its claims is parked at the server: the agent is idle, waiting for work. */
  waiting: z.boolean().optional(),
  /** As of its last heartbeat that said (agents that predate it say nothing: null). */
  health: AgentHealthReport.extend({ at: Timestamp }).nullable().optional(),
});
export type AgentRecord = z.infer<typeof AgentRecord>;

export const HeldRun = z.object({ id: Id, epoch: Epoch });
export type HeldRun = z.infer<typeof HeldRun>;

export const AgentHeartbeat = z.object({
  status: z.enum(["online", "unhealthy", "draining", "stopped"]).default("online"),
  /** The runs the agent believes it holds: their leases are renewed, or they come back in lostRunIds. */
  runs: z.array(HeldRun).max(10_000).default([]),
  health: AgentHealthReport.optional(),
});
export type AgentHeartbeat = z.infer<typeof AgentHeartbeat>;

export const AgentHeartbeatReply = z.object({
  /** Runs of this agent that a user asked to cancel (Cancelling, or Cancelled before they started): stop them. */
  cancelRunIds: z.array(Id),
  /** Runs the agent listed that it no longer holds (another attempt owns them, or they ended): stop them at once. */
  lostRunIds: z.array(Id),
});
export type AgentHeartbeatReply = z.infer<typeof AgentHeartbeatReply>;

/**
 * An agent's watch for cancels (POST /api/agents/:id/cancels): answered as soon as one of its runs is
 * Cancelling that it has not already been told of (`known`), or after `waitMs` with none.
 */
export const CancelWatch = z.object({
  /** Runs the agent is already stopping: not news, so they do not end the wait. */
  known: z.array(Id).max(10_000).default([]),
  waitMs: z.number().int().nonnegative().max(60_000).default(20_000),
});
export type CancelWatch = z.infer<typeof CancelWatch>;

export const CancelWatchReply = z.object({
  /** Every run of this agent that is Cancelling now (the known ones included): stop their containers. */
  cancelRunIds: z.array(Id),
});
export type CancelWatchReply = z.infer<typeof CancelWatchReply>;

export const ClaimRequest = z.object({
  max: z.number().int().positive().max(100).default(1),
  /** How long to wait for a matching run before answering with none (long-poll). */
  waitMs: z.number().int().nonnegative().max(60_000).default(DEFAULT_CLAIM_WAIT_MS),
  /**
   * Flows (by id: one id per flow version) the agent holds already: a claimed run of one of them comes without
   * its flow, which can be large (a 10,000-task flow is about 460 KiB).
   */
  knownFlows: z.array(Id).max(MAX_KNOWN_FLOWS).default([]),
});
export type ClaimRequest = z.infer<typeof ClaimRequest>;

export const ClaimedRun = z.object({
  flowRun: FlowRun,
  /** The run's flow version; absent when the claim listed it in `knownFlows`. */
  flow: FlowRecord.optional(),
  /**
   * The token of this run at this epoch, for its container and nothing else: it can read and write this run
   * only, and dies when the run is final or claimed again. Absent from servers that predate it.
   */
  runToken: z.string().optional(),
});
export type ClaimedRun = z.infer<typeof ClaimedRun>;

export const ClaimReply = z.object({
  claims: z.array(ClaimedRun),
  /**
   * How long the server waits for a claimed run to leave Submitted before it reschedules it
   * (server.startTimeout). An agent that prepares a run for longer (a pull, a build) refreshes the run's
   * Submitted state well within it. Absent from servers that predate it.
   */
  startTimeoutMs: z.number().int().positive().optional(),
});
export type ClaimReply = z.infer<typeof ClaimReply>;

// Envelopes and queries of the routes that have no domain type of their own.

export const FlowList = z.object({ flows: z.array(FlowRecord) });
export type FlowList = z.infer<typeof FlowList>;

export const FlowRunList = z.object({ flowRuns: z.array(FlowRunView) });
export type FlowRunList = z.infer<typeof FlowRunList>;

/** Query of GET /api/flow-runs. Query values arrive as strings, hence the coercion. */
export const FlowRunListQuery = z.strictObject({
  flowId: Id.optional(),
  flowName: Name.optional(),
  state: FlowRunStateName.optional(),
  /** Runs carrying this label. */
  label: Label.optional(),
  /** Runs created at or after this instant, and before this one (ISO-8601 with an offset). */
  createdSince: z.iso.datetime({ offset: true }).optional(),
  createdBefore: z.iso.datetime({ offset: true }).optional(),
  /** The next page: the runs after this one (the last run of the page before), in the same order. */
  after: Id.optional(),
  limit: z.coerce.number().int().positive().max(1000).default(100),
});
/** What a client may send (all optional). */
export type FlowRunListQuery = Partial<z.output<typeof FlowRunListQuery>>;

/** Body of POST /api/flow-runs/:id/heartbeat (optional: no body is an unfenced heartbeat). */
export const FlowRunHeartbeat = z.object({ epoch: Epoch.optional() });
export type FlowRunHeartbeat = z.infer<typeof FlowRunHeartbeat>;

export const FlowRunHeartbeatReply = z.object({
  /** The run's current state: a container that sees Cancelling stops its flow. */
  state: FlowRunStateName,
  /** The run's current epoch: a container whose epoch differs belongs to a superseded attempt. */
  epoch: Epoch,
});
export type FlowRunHeartbeatReply = z.infer<typeof FlowRunHeartbeatReply>;

export const TaskRunList = z.object({ taskRuns: z.array(TaskRun) });

/** One entry of a flow run's state history, oldest first. */
export const FlowRunStateEntry = z.object({
  state: FlowRunStateName,
  message: z.string().nullable(),
  version: z.number().int(),
  agentId: z.string().nullable(),
  at: Timestamp,
});
export type FlowRunStateEntry = z.infer<typeof FlowRunStateEntry>;
export const FlowRunStateHistory = z.object({ states: z.array(FlowRunStateEntry) });
export type FlowRunStateHistory = z.infer<typeof FlowRunStateHistory>;
export type TaskRunList = z.infer<typeof TaskRunList>;

/** Query of GET /api/flow-runs/:id/logs. With waitMs > 0 and nothing newer than `after`, the server long-polls. */
export const LogsQuery = z.strictObject({
  after: z.coerce.number().int().nonnegative().default(0),
  limit: z.coerce.number().int().positive().max(10_000).default(1000),
  waitMs: z.coerce.number().int().nonnegative().max(60_000).default(0),
});
/** What a client may send (all optional). */
export type LogsQuery = Partial<z.output<typeof LogsQuery>>;

// Orchestration: concurrency limits and schedules.

/** Body of PUT /api/concurrency-limits/:label. */
export const ConcurrencyLimitSet = z.strictObject({ max: z.number().int().positive().max(100_000) });
export type ConcurrencyLimitSet = z.infer<typeof ConcurrencyLimitSet>;

/** At most `max` runs carrying `label` Submitted, Running or Cancelling at once, across every agent. */
export const ConcurrencyLimit = z.object({
  label: Label,
  max: z.number().int().positive(),
  /** The runs holding its slots now, oldest claim first. */
  holders: z.array(Id),
});
export type ConcurrencyLimit = z.infer<typeof ConcurrencyLimit>;
export const ConcurrencyLimitList = z.object({ limits: z.array(ConcurrencyLimit) });
export type ConcurrencyLimitList = z.infer<typeof ConcurrencyLimitList>;

/** What the scheduler did with one slot of a clock. */
export const SLOT_OUTCOMES = ["created", "missed", "paused"] as const;
export const ScheduleTick = z.object({
  clock: z.string(),
  slot: Timestamp,
  /** created: a run was made for it; missed: it passed while the server was down, and catchUp skipped it; paused: it passed while the schedule was paused. */
  outcome: z.enum(SLOT_OUTCOMES),
  flowRunId: Id.nullable(),
  /** When the scheduler decided. */
  at: Timestamp,
});
export type ScheduleTick = z.infer<typeof ScheduleTick>;

/** A flow's schedule as the scheduler follows it: the newest version's clocks. */
export const ScheduleView = z.object({
  flowName: z.string(),
  flowVersion: z.number().int(),
  paused: z.boolean(),
  catchUp: CatchUp,
  clocks: z.array(
    z.object({
      key: z.string(),
      spec: ClockSpec,
      /** e.g. `cron "0 2 * * *" in Europe/Berlin`, `every 30s`. */
      description: z.string(),
      /** The clock's next slot after now; null when it has none (past endAt). */
      next: Timestamp.nullable(),
    }),
  ),
  /** The newest slots handled, newest first. */
  ticks: z.array(ScheduleTick),
});
export type ScheduleView = z.infer<typeof ScheduleView>;
export const ScheduleList = z.object({ schedules: z.array(ScheduleView) });
export type ScheduleList = z.infer<typeof ScheduleList>;

export const AgentList = z.object({ agents: z.array(AgentRecord) });
export type AgentList = z.infer<typeof AgentList>;

export const Ok = z.object({ ok: z.literal(true) });
export type Ok = z.infer<typeof Ok>;

export const ErrorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

export const Health = z.object({ status: z.literal("ok"), version: z.string(), store: z.string() });
export type Health = z.infer<typeof Health>;

/** Roles of the tokens an operator creates; `run` tokens are minted by claims, never created. */
export const TOKEN_ROLES = ["admin", "agent"] as const;
export const TokenRole = z.enum(TOKEN_ROLES);
export type TokenRole = z.infer<typeof TokenRole>;

export const TokenCreate = z.object({
  role: TokenRole,
  /** For an agent token, the one agent name it may register, heartbeat and claim as; a label for an admin token. */
  name: Name.optional(),
  /**
   * For an agent token: the only labels its agent may register with, so that it can claim only runs of these
   * labels (another team's runs carry labels it may not take). Default: any labels.
   */
  labels: Labels.optional(),
});
export type TokenCreate = z.infer<typeof TokenCreate>;

export const TokenRecord = z.object({
  id: Id,
  role: TokenRole,
  name: z.string().nullable(),
  /** An agent token's allowed labels; null for any. */
  labels: z.array(z.string()).nullable(),
  createdAt: Timestamp,
  revokedAt: Timestamp.nullable(),
});
export type TokenRecord = z.infer<typeof TokenRecord>;

/** The answer to a token's creation: the only time its secret is shown. */
export const TokenCreated = TokenRecord.extend({ token: z.string() });
export type TokenCreated = z.infer<typeof TokenCreated>;
export const TokenList = z.object({ tokens: z.array(TokenRecord) });
export type TokenList = z.infer<typeof TokenList>;

/** The longest secret value stored. */
export const MAX_SECRET_LENGTH = 64 * 1024;
export const SecretSet = z.object({ value: z.string().min(1).max(MAX_SECRET_LENGTH) });
export const SecretInfo = z.object({ name: z.string(), createdAt: Timestamp, updatedAt: Timestamp });
export type SecretInfo = z.infer<typeof SecretInfo>;
export const SecretList = z.object({ secrets: z.array(SecretInfo) });
export type SecretList = z.infer<typeof SecretList>;
export const SecretNameParams = z.strictObject({ name: SecretName });
/** A run's request for the values of its flow's secrets. */
export const RunSecretsRequest = z.object({ names: z.array(SecretName).min(1).max(100) });
export const RunSecrets = z.object({ secrets: z.record(z.string(), z.string()) });
export type RunSecrets = z.infer<typeof RunSecrets>;

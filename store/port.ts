/**
 * The StateStore port: where run *state* lives. The server talks to state only through this interface, and
 * one contract test suite (test/store-contract.test.ts) runs against every implementation.
 *
 * Every method is async so that networked stores (PostgreSQL) fit the same port as the embedded one.
 */
import type {
  AgentHealthReport,
  AgentPhases,
  AgentRecord,
  AgentRegister,
  ConcurrencyLimit,
  ScheduleTick,
  FlowRecord,
  FlowCreate,
  FlowRun,
  FlowRunStateName,
  FlowRunStateEntry,
  HeldRun,
  LogLine,
  StoredLog,
  TaskRun,
  TokenRecord,
  TokenRole,
  SecretInfo,
} from "../wire/schema.js";

import type { RunsSnapshot } from "./run-metrics.js";

/** A stored token: its record and the sha256 (hex) of its secret, never the secret itself. */
export interface StoredToken extends TokenRecord {
  hash: string;
}

/**
 * An agent as stored: its record and, while one of its claims is parked at a server replica, until when
 * (the server's `presence` turns this into `waiting` and decides whether the agent is lost).
 */
export interface StoredAgent extends AgentRecord {
  waitingUntil: string | null;
}

/** A secret as stored: its value sealed by the server (server/secrets.ts), opaque to the store. */
export interface SealedSecret {
  name: string;
  sealed: string;
}

export interface NewFlowRun {
  flow: FlowRecord;
  parameters: Record<string, unknown>;
  labels: string[];
  idempotencyKey?: string | undefined;
  /** Not claimable before this time; default: now. */
  scheduledStart?: Date | undefined;
}

/** What the scheduler decided for one slot of a clock (server/scheduler.ts). */
export interface SlotDecision {
  slot: Date;
  outcome: ScheduleTick["outcome"];
  /** For "created": the run to make, starting at the slot. */
  run?: Omit<NewFlowRun, "idempotencyKey" | "scheduledStart">;
}

/** One clock's decisions, as one version of a flow saw its schedule (see StateStore.applySlots). */
export interface AppliedSlots {
  flow: FlowRecord;
  clock: string;
  paused: boolean;
  decisions: readonly SlotDecision[];
  cursor: Date;
}

export interface ScheduleState {
  paused: boolean;
  /** Per clock key: the slot time up to which its slots have been handled. */
  cursors: Record<string, string>;
}

export interface FlowRunFilter {
  flowId?: string | undefined;
  flowName?: string | undefined;
  state?: FlowRunStateName | undefined;
  /** Runs claimed by this agent. */
  agentId?: string | undefined;
  /** Runs carrying this label. */
  label?: string | undefined;
  /** Runs created at or after this instant (ISO-8601), and before this one. */
  createdSince?: string | undefined;
  createdBefore?: string | undefined;
  /** The page after this run (its id), in the same order: for paging through more runs than `limit`. */
  after?: string | undefined;
  /** At most this many, newest first; default 100. */
  limit?: number | undefined;
}

export interface StateWrite {
  state: FlowRunStateName;
  message?: string | null | undefined;
  expectedVersion: number;
  /** Set when the write comes from an agent taking the run (claim). */
  agentId?: string | undefined;
  /** The writer's lease epoch: when set and not the run's, the write is refused (BERTH_E_STALE_LEASE). */
  epoch?: number | undefined;
}

export interface LeaseRenewal {
  /** Listed runs the agent no longer holds: not its own, another epoch, or no longer Submitted/Running/Cancelling. */
  lostRunIds: string[];
}

export interface StateStore {
  /** A short description for /health, for example "sqlite:/var/lib/berth/berth.db". */
  readonly description: string;

  /**
   * Registers a flow. When the newest version of `name` has the same content hash, returns it with
   * `created: false` and writes nothing. A docker storage's `context` must be kept already, at its size:
   * else BERTH_E_BUILD_CONTEXT_NOT_FOUND (or BERTH_E_VALIDATION for a wrong size), writing nothing.
   * A new version takes over the flow's schedule in the same transaction: the scheduler's unstarted runs
   * due after now are removed with their slots (to be made again for the new version), a clock the new
   * version keeps keeps its cursor, and a new clock starts from now.
   */
  registerFlow(input: FlowCreate): Promise<{ flow: FlowRecord; created: boolean }>;
  getFlow(id: string): Promise<FlowRecord | undefined>;
  /** The newest version of a flow by name, or a given version. */
  getFlowByName(name: string, version?: number): Promise<FlowRecord | undefined>;
  listFlows(): Promise<FlowRecord[]>;

  /**
   * Creates a Scheduled run. With an idempotency key already used, returns that run and `created: false`.
   * `onCommitted` is called as soon as other transactions (claims) can see the outcome, which may come before
   * the write is durable and acknowledged: a store that syncs after committing (SQLite) acknowledges every
   * write made on top of it only once both are on disk, so a claim woken then hands out nothing that a crash
   * could take back.
   */
  createFlowRun(input: NewFlowRun, onCommitted?: (created: boolean) => void): Promise<{ flowRun: FlowRun; created: boolean }>;
  getFlowRun(id: string): Promise<FlowRun | undefined>;
  listFlowRuns(filter: FlowRunFilter): Promise<FlowRun[]>;

  /**
   * Compare-and-swap on the run's version, fenced by `write.epoch` when given, both checked in the write
   * itself: applies the write only if the stored version equals `expectedVersion` (and the epoch matches),
   * then increments the version. Throws BerthError BERTH_E_STALE_LEASE for another epoch (checked first),
   * BERTH_E_STALE_VERSION for another version, BERTH_E_FLOW_RUN_NOT_FOUND for an unknown run. Going back to
   * Scheduled forgets the attempt (agent, lease, start and heartbeat times); a final state drops the lease.
   * Transition rules are the caller's (server/states.ts).
   */
  setFlowRunState(id: string, write: StateWrite): Promise<FlowRun>;

  /**
   * Records that the run's container is alive (no version change); undefined for an unknown run. With an
   * epoch that is not the run's, throws BERTH_E_STALE_LEASE and records nothing.
   */
  heartbeatFlowRun(id: string, epoch?: number): Promise<FlowRun | undefined>;

  /**
   * Merges what the agent reports of an attempt's steps into the run's phases (a step reported again keeps the
   * newer time). BERTH_E_STALE_LEASE for another attempt's epoch; undefined when the run does not exist.
   */
  recordPhases(id: string, epoch: number, phases: AgentPhases): Promise<FlowRun | undefined>;

  /**
   * Atomically hands up to `max` Scheduled runs whose labels the agent satisfies and whose scheduled start
   * has come to the agent: each becomes Submitted with `agentId` set, its epoch incremented and a lease of
   * `leaseMs`, earliest start first. A run is passed over while a concurrency limit of one of its labels, or
   * its flow's maxConcurrentRuns (the newest version's), has every slot taken by Submitted, Running or
   * Cancelling runs; the limits are checked inside the same transaction. Two concurrent claims never return
   * the same run, nor together exceed a limit.
   */
  claimFlowRuns(agentId: string, agentLabels: readonly string[], max: number, leaseMs: number): Promise<FlowRun[]>;

  /**
   * The agent `agentId` as stored, and the runs claimed for it with its stored labels, as claimFlowRuns does;
   * undefined, with nothing claimed, when no such agent is registered. One round trip where the store can.
   */
  claimForAgent(agentId: string, max: number, leaseMs: number): Promise<{ agent: StoredAgent; runs: FlowRun[] } | undefined>;

  /**
   * The flow versions (ids) whose runs may still need their image: runs Scheduled, Submitted, Running or
   * Cancelling, and runs created since `createdSince` (image garbage collection keeps them).
   */
  flowIdsInUse(createdSince: Date): Promise<string[]>;

  /** How many runs each flow has in each state, and the due Scheduled runs per label set (for /metrics). */
  runsSnapshot(): Promise<RunsSnapshot>;

  /** The earliest scheduled start after now of a Scheduled run these agent labels could take; undefined for none. */
  nextScheduledStart(agentLabels: readonly string[]): Promise<string | undefined>;

  /** Sets (creates or changes) the limit of a label. */
  setConcurrencyLimit(label: string, max: number): Promise<ConcurrencyLimit>;
  /** Removes a label's limit; false when it had none. */
  deleteConcurrencyLimit(label: string): Promise<boolean>;
  listConcurrencyLimits(): Promise<ConcurrencyLimit[]>;
  /** Runs Submitted, Running or Cancelling that carry `label`, or are of flow `flowName`; oldest claim first. */
  listActiveRuns(filter: { label?: string; flowName?: string }, limit: number): Promise<FlowRun[]>;

  // The scheduler's (server/scheduler.ts).
  /** The newest version of each flow whose schedule has at least one clock. */
  listScheduledFlows(): Promise<FlowRecord[]>;
  getScheduleState(flowName: string): Promise<ScheduleState>;
  /**
   * Records that a scheduler pass runs at `at` (on any server) and returns when the one before it ran,
   * undefined for the first ever.
   */
  recordSchedulerPass(at: Date): Promise<Date | undefined>;
  /**
   * Records the decisions for slots of one clock, each at most once whoever decides it (a slot already
   * recorded is left as it is), makes a run for each new "created" one, and moves the clock's cursor on to
   * `cursor` (never back). Returns the runs made; undefined, writing nothing, when the schedule is no longer
   * as the decisions saw it: `flow` is not the newest version, the clock is not in its schedule, or the
   * schedule's paused flag is not `paused` (another server changed it meanwhile).
   */
  applySlots(slots: AppliedSlots): Promise<FlowRun[] | undefined>;
  /** The scheduler's runs of a clock still Scheduled and never claimed, starting in [from, before), earliest first. */
  listUnclaimedSlotRuns(flowName: string, clock: string, from: Date, before: Date): Promise<FlowRun[]>;
  /** Removes such runs (never claimed), marking their slots `outcome`; a run claimed meanwhile is left alone. */
  dropSlotRuns(runIds: readonly string[], outcome: "missed" | "paused"): Promise<string[]>;
  /**
   * Pauses or resumes a schedule. Pausing drops its unclaimed runs due after now (their slots: "paused");
   * resuming records the slots that passed since the last paused pass as paused, and every clock goes on
   * from now.
   */
  setSchedulePaused(flowName: string, paused: boolean): Promise<{ dropped: string[] }>;
  /** The newest `limit` slots handled for the flow, newest first. */
  listScheduleTicks(flowName: string, limit: number): Promise<ScheduleTick[]>;
  /** Keeps the newest `keep` slots of the flow up to `before`, and every later one; returns how many were removed. */
  pruneScheduleTicks(flowName: string, keep: number, before: Date): Promise<number>;

  /**
   * Extends by `leaseMs` the lease of each listed run the agent still holds (its agent, the same epoch, and
   * Submitted, Running or Cancelling); every other listed run is lost.
   */
  renewLeases(agentId: string, runs: readonly HeldRun[], leaseMs: number): Promise<LeaseRenewal>;

  // What the reaper scans (server/reaper.ts), each served by an index; at most `limit` runs, oldest first.
  /** Runs in one of `states` whose lease ran out before `before`. */
  listExpiredLeases(states: readonly FlowRunStateName[], before: Date, limit: number): Promise<FlowRun[]>;
  /** Running runs whose container last reported (heartbeat, or start when none yet) before `before`. */
  listSilentRunningRuns(before: Date, limit: number): Promise<FlowRun[]>;
  /** Runs in `state` whose last state change was before `before`. */
  listRunsUpdatedBefore(state: FlowRunStateName, before: Date, limit: number): Promise<FlowRun[]>;

  /** Every state the run has been in, oldest first. */
  listFlowRunStates(flowRunId: string): Promise<FlowRunStateEntry[]>;

  /**
   * Insert or replace by (run, task slug). Throws BERTH_E_FLOW_RUN_NOT_FOUND for an unknown run, and
   * BERTH_E_STALE_LEASE (writing nothing) for an epoch that is not the run's.
   */
  upsertTaskRuns(flowRunId: string, taskRuns: TaskRun[], epoch?: number): Promise<void>;
  listTaskRuns(flowRunId: string): Promise<TaskRun[]>;

  /**
   * Throws BERTH_E_FLOW_RUN_NOT_FOUND for an unknown run, BERTH_E_STALE_LEASE (writing nothing) for a stale
   * epoch. A line with a `seq` already stored for the run and attempt (`epoch`, 0 without one) is not stored
   * again. With `limitBytes`, at most that much message text is kept for the run (store/log-limits.ts).
   */
  appendLogs(flowRunId: string, logs: LogLine[], epoch?: number, limitBytes?: number): Promise<void>;
  /**
   * Removes the logs of up to `limit` runs that ended before `before`, oldest first; returns how many runs'
   * logs went. A run is looked at once: later calls pass over it.
   */
  removeLogsOfRunsEndedBefore(before: Date, limit: number): Promise<number>;
  /** Logs with id > `after`, oldest first. */
  listLogs(flowRunId: string, after: number, limit: number): Promise<StoredLog[]>;

  /**
   * Keeps a build context (a tar archive) under its sha256, which the caller has checked. Putting content
   * that is already there only renews its grace period (`created: false`).
   */
  putBuildContext(sha256: string, data: Buffer): Promise<{ created: boolean }>;
  /** The size of a kept build context, or undefined when there is none. */
  buildContextSize(sha256: string): Promise<number | undefined>;
  getBuildContext(sha256: string): Promise<Buffer | undefined>;
  /** Removes build contexts kept before `createdBefore` that no flow version names; returns their digests. */
  deleteUnusedBuildContexts(createdBefore: Date): Promise<string[]>;

  /**
   * Registers an agent by name: a name already known gets that agent back (labels, concurrency updated,
   * online, heartbeat now) with `created: false`, so an agent keeps its id, and its containers, across restarts.
   */
  registerAgent(input: AgentRegister): Promise<{ agent: StoredAgent; created: boolean }>;
  getAgent(id: string): Promise<StoredAgent | undefined>;
  /** Records a heartbeat; with `health`, also what the agent says of itself (kept until its next report). */
  heartbeatAgent(id: string, status: AgentRecord["status"], health?: AgentHealthReport): Promise<StoredAgent | undefined>;
  listAgents(): Promise<StoredAgent[]>;
  /**
   * Records that a claim of the agent is parked until `until` (on whichever server replica), so that every
   * replica sees the agent as alive and waiting. Later marks replace earlier ones.
   */
  markAgentWaiting(id: string, until: string): Promise<void>;
  /** Ends the mark `until` set, unless a later claim of the agent has replaced it since. */
  clearAgentWaiting(id: string, until: string): Promise<void>;

  // Tokens and secrets (server/auth.ts, server/secrets.ts).
  createToken(input: { role: TokenRole; name: string | null; labels: string[] | null; hash: string }): Promise<StoredToken>;
  /** The token with this hash, revoked or not; undefined when there is none. */
  findToken(hash: string): Promise<StoredToken | undefined>;
  /**
   * The token with this hash and the agent `agentId`, each undefined when there is none, read together: an
   * agent's request about itself (a claim, a heartbeat) needs both, and reads them in one round trip.
   */
  findTokenAndAgent(hash: string, agentId: string): Promise<{ token: StoredToken | undefined; agent: StoredAgent | undefined }>;
  listTokens(): Promise<TokenRecord[]>;
  /** Revokes a token (idempotent); undefined for an unknown id. */
  revokeToken(id: string): Promise<TokenRecord | undefined>;
  /** Sets a secret's sealed value; `created` is false when it replaced one. */
  putSecret(secret: SealedSecret): Promise<{ created: boolean }>;
  listSecrets(): Promise<SecretInfo[]>;
  /** The sealed values of these secrets (every secret when `names` is undefined); unknown names are left out. */
  getSecrets(names?: readonly string[]): Promise<SealedSecret[]>;
  /** False when there was no such secret. */
  deleteSecret(name: string): Promise<boolean>;

  /** Idempotent. */
  close(): Promise<void>;
}

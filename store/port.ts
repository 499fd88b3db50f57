/**
 * The StateStore port: where run *state* lives. The server talks to state only through this interface, and
 * one contract test suite (test/store-contract.test.ts) runs against every implementation.
 *
 * Every method is async so that networked stores (PostgreSQL) fit the same port as the embedded one.
 */
import type {
  Agent,
  AgentRegister,
  Flow,
  FlowCreate,
  FlowRun,
  FlowRunStateName,
  FlowRunStateEntry,
  LogLine,
  StoredLog,
  TaskRun,
} from "../api/schema.js";

export interface NewFlowRun {
  flow: Flow;
  parameters: Record<string, unknown>;
  labels: string[];
  idempotencyKey?: string | undefined;
}

export interface FlowRunFilter {
  flowId?: string | undefined;
  flowName?: string | undefined;
  state?: FlowRunStateName | undefined;
  /** Runs claimed by this agent. */
  agentId?: string | undefined;
  /** At most this many, newest first; default 100. */
  limit?: number | undefined;
}

export interface StateWrite {
  state: FlowRunStateName;
  message?: string | null | undefined;
  expectedVersion: number;
  /** Set when the write comes from an agent taking the run (claim). */
  agentId?: string | undefined;
}

export interface StateStore {
  /** A short description for /health, for example "sqlite:/var/lib/berth/berth.db". */
  readonly description: string;

  /**
   * Registers a flow. When the newest version of `name` has the same content hash, returns it with
   * `created: false` and writes nothing.
   */
  registerFlow(input: FlowCreate): Promise<{ flow: Flow; created: boolean }>;
  getFlow(id: string): Promise<Flow | undefined>;
  /** The newest version of a flow by name, or a given version. */
  getFlowByName(name: string, version?: number): Promise<Flow | undefined>;
  listFlows(): Promise<Flow[]>;

  /** Creates a Scheduled run. With an idempotency key already used, returns that run and `created: false`. */
  createFlowRun(input: NewFlowRun): Promise<{ flowRun: FlowRun; created: boolean }>;
  getFlowRun(id: string): Promise<FlowRun | undefined>;
  listFlowRuns(filter: FlowRunFilter): Promise<FlowRun[]>;

  /**
   * Compare-and-swap on the run's version: applies the write only if the stored version equals
   * `expectedVersion`, then increments it. Throws BerthError BERTH_E_STALE_VERSION otherwise, and
   * BERTH_E_FLOW_RUN_NOT_FOUND for an unknown run. Transition rules are the caller's (server/states.ts).
   */
  setFlowRunState(id: string, write: StateWrite): Promise<FlowRun>;

  /** Records that the run's container is alive (no version change); undefined for an unknown run. */
  heartbeatFlowRun(id: string): Promise<FlowRun | undefined>;

  /**
   * Atomically hands up to `max` Scheduled runs whose labels the agent satisfies to the agent: each becomes
   * Submitted with `agentId` set, oldest first. Two concurrent claims never return the same run.
   */
  claimFlowRuns(agentId: string, agentLabels: readonly string[], max: number): Promise<FlowRun[]>;

  /** Insert or replace by (run, task slug). Throws BERTH_E_FLOW_RUN_NOT_FOUND for an unknown run. */
  /** Every state the run has been in, oldest first. */
  listFlowRunStates(flowRunId: string): Promise<FlowRunStateEntry[]>;

  upsertTaskRuns(flowRunId: string, taskRuns: TaskRun[]): Promise<void>;
  listTaskRuns(flowRunId: string): Promise<TaskRun[]>;

  /** Throws BERTH_E_FLOW_RUN_NOT_FOUND for an unknown run. */
  appendLogs(flowRunId: string, logs: LogLine[]): Promise<void>;
  /** Logs with id > `after`, oldest first. */
  listLogs(flowRunId: string, after: number, limit: number): Promise<StoredLog[]>;

  registerAgent(input: AgentRegister): Promise<Agent>;
  getAgent(id: string): Promise<Agent | undefined>;
  heartbeatAgent(id: string, status: Agent["status"]): Promise<Agent | undefined>;
  listAgents(): Promise<Agent[]>;

  /** Idempotent. */
  close(): Promise<void>;
}

/**
 * ApiClient: one typed method per route of the berth HTTP API, used by the CLI, the agent and the flow-run
 * container. Every method takes an optional AbortSignal last, validates the response with the wire schema,
 * and fails only with BerthError (see http.ts for how transport failures are worded).
 *
 * The writes of a run's own attempt take its lease `epoch`: the server refuses them with BERTH_E_STALE_LEASE
 * once another attempt owns the run. Leave it out for writes on a user's behalf (they are not fenced).
 */
import type { z } from "zod";
import { getBytes, head, putBytes } from "./http.js";
import { RunClient, enc } from "./run-client.js";
import {
  AgentRecord,
  AgentHeartbeatReply,
  AgentList,
  CancelWatchReply,
  ClaimReply,
  KeptImages,
  OrphanQuery,
  OrphanReply,
  ConcurrencyLimit,
  ConcurrencyLimitList,
  ScheduleList,
  ScheduleView,
  FlowRecord,
  FlowList,
  FlowRegistered,
  FlowRun,
  FlowRunCreated,
  FlowRunHeartbeatReply,
  FlowRunList,
  FlowRunView,
  Health,
  LogsPage,
  Ok,
  TaskRunList,
  FlowRunStateHistory,
  DEFAULT_CLAIM_WAIT_MS,
  BuildContextStored,
  RunSecrets,
  SecretList,
  TokenCreated,
  TokenList,
  TokenRecord,
} from "../wire/schema.js";
import type {
  AgentHeartbeat,
  AgentRegister,
  CancelWatch,
  PhasesReport,
  ClaimRequest,
  FlowCreate,
  FlowRunCreate,
  FlowRunListQuery,
  LogsQuery,
  TaskRun,
  FlowRunStateEntry,
  SecretInfo,
  TokenCreate,
} from "../wire/schema.js";

export type { ApiClientOptions } from "./run-client.js";


export class ApiClient extends RunClient {
  /** The answers' schemas: every answer this client reads is checked against the wire contract. */
  protected override readonly replies = {
    flowRecord: FlowRecord,
    flowRunView: FlowRunView,
    flowRun: FlowRun,
    flowRunHeartbeat: FlowRunHeartbeatReply,
    ok: Ok,
    runSecrets: RunSecrets,
    health: Health,
  };

  /** Registers a flow; `created` is false when the newest version already had this content hash. */
  registerFlow(flow: z.input<typeof FlowCreate>, signal?: AbortSignal): Promise<FlowRegistered> {
    return this.call({ method: "POST", path: "/api/flows", body: flow, response: FlowRegistered, signal });
  }

  /** Every version of every flow, newest version first per name. */
  listFlows(signal?: AbortSignal): Promise<FlowList> {
    return this.call({ method: "GET", path: "/api/flows", response: FlowList, signal });
  }


  /** Creates a Scheduled run; with a repeated idempotencyKey, returns the existing run and `created: false`. */
  createFlowRun(input: z.input<typeof FlowRunCreate>, signal?: AbortSignal): Promise<FlowRunCreated> {
    return this.call({ method: "POST", path: "/api/flow-runs", body: input, response: FlowRunCreated, signal });
  }

  /** Flow runs, newest first. */
  listFlowRuns(query: FlowRunListQuery = {}, signal?: AbortSignal): Promise<FlowRunList> {
    return this.call({ method: "GET", path: "/api/flow-runs", query: { ...query }, response: FlowRunList, signal });
  }



  cancelFlowRun(id: string, signal?: AbortSignal): Promise<FlowRun> {
    return this.call({ method: "POST", path: `/api/flow-runs/${enc(id)}/cancel`, response: FlowRun, signal });
  }


  /** Reports steps of an attempt (the agent's): image ready, container created and started, cleaned up. */
  reportPhases(id: string, report: PhasesReport, signal?: AbortSignal): Promise<FlowRun> {
    return this.call({ method: "POST", path: `/api/flow-runs/${enc(id)}/phases`, body: report, response: FlowRun, signal });
  }

  /** Every state the run has been in, oldest first. */
  async listFlowRunStates(flowRunId: string, signal?: AbortSignal): Promise<FlowRunStateEntry[]> {
    return (await this.call({ method: "GET", path: `/api/flow-runs/${enc(flowRunId)}/states`, response: FlowRunStateHistory, signal })).states;
  }

  async listTaskRuns(flowRunId: string, signal?: AbortSignal): Promise<TaskRun[]> {
    return (await this.call({ method: "GET", path: `/api/flow-runs/${enc(flowRunId)}/task-runs`, response: TaskRunList, signal })).taskRuns;
  }



  /** Logs after `after`, oldest first; with `waitMs`, the server holds the request until there are some. */
  getLogs(flowRunId: string, query: LogsQuery = {}, signal?: AbortSignal): Promise<LogsPage> {
    const path = `/api/flow-runs/${enc(flowRunId)}/logs`;
    return this.call({ method: "GET", path, query: { ...query }, response: LogsPage, signal, waitMs: query.waitMs });
  }

  /** Registering a name the server knows gets that agent back (same id), so a restarted agent finds its containers. */
  registerAgent(input: z.input<typeof AgentRegister>, signal?: AbortSignal): Promise<AgentRecord> {
    return this.call({ method: "POST", path: "/api/agents", body: input, response: AgentRecord, signal });
  }

  /** Agents, with status "lost" for those silent too long. */
  listAgents(signal?: AbortSignal): Promise<AgentList> {
    return this.call({ method: "GET", path: "/api/agents", response: AgentList, signal });
  }

  /**
   * Reports the agent alive and renews the leases of `heartbeat.runs` (the runs it holds, with their epochs);
   * the answer lists runs to cancel, and listed runs the agent has lost and must stop at once.
   */
  heartbeatAgent(agentId: string, heartbeat: z.input<typeof AgentHeartbeat> = {}, signal?: AbortSignal): Promise<AgentHeartbeatReply> {
    return this.call({ method: "POST", path: `/api/agents/${enc(agentId)}/heartbeat`, body: heartbeat, response: AgentHeartbeatReply, signal });
  }

  /** The storage images the agent must keep when it collects garbage. */
  keptImages(agentId: string, signal?: AbortSignal): Promise<KeptImages> {
    return this.call({ method: "GET", path: `/api/agents/${enc(agentId)}/kept-images`, response: KeptImages, signal });
  }

  /** Which containers other agents left on this agent's engine may be removed. */
  orphans(agentId: string, query: OrphanQuery, signal?: AbortSignal): Promise<OrphanReply> {
    return this.call({ method: "POST", path: `/api/agents/${enc(agentId)}/orphans`, body: query, response: OrphanReply, signal });
  }

  /** Waits up to `waitMs` for one of the agent's runs to be Cancelling that `known` does not list; answers with all of them. */
  watchCancels(agentId: string, request: z.input<typeof CancelWatch> = {}, signal?: AbortSignal): Promise<CancelWatchReply> {
    return this.call({
      method: "POST",
      path: `/api/agents/${enc(agentId)}/cancels`,
      body: request,
      response: CancelWatchReply,
      signal,
      waitMs: request.waitMs ?? 20_000,
    });
  }

  /** Claims runs for the agent, waiting up to `waitMs` (server default 20s) for one; [] when none came. */
  claim(agentId: string, request: z.input<typeof ClaimRequest> = {}, signal?: AbortSignal): Promise<ClaimReply> {
    return this.call({
      method: "POST",
      path: `/api/agents/${enc(agentId)}/claim`,
      body: request,
      response: ClaimReply,
      signal,
      waitMs: request.waitMs ?? DEFAULT_CLAIM_WAIT_MS,
    });
  }

  listSchedules(signal?: AbortSignal): Promise<ScheduleList> {
    return this.call({ method: "GET", path: "/api/schedules", response: ScheduleList, signal });
  }

  getSchedule(flowName: string, options: { ticks?: number } = {}, signal?: AbortSignal): Promise<ScheduleView> {
    const query = options.ticks === undefined ? "" : `?ticks=${options.ticks}`;
    return this.call({ method: "GET", path: `/api/schedules/${enc(flowName)}${query}`, response: ScheduleView, signal });
  }

  /** Pauses (true) or resumes (false) a flow's schedule. */
  pauseSchedule(flowName: string, paused: boolean, signal?: AbortSignal): Promise<ScheduleView> {
    return this.call({ method: "POST", path: `/api/schedules/${enc(flowName)}/${paused ? "pause" : "resume"}`, response: ScheduleView, signal });
  }

  async listConcurrencyLimits(signal?: AbortSignal): Promise<ConcurrencyLimit[]> {
    return (await this.call({ method: "GET", path: "/api/concurrency-limits", response: ConcurrencyLimitList, signal })).limits;
  }

  setConcurrencyLimit(label: string, max: number, signal?: AbortSignal): Promise<ConcurrencyLimit> {
    return this.call({ method: "PUT", path: `/api/concurrency-limits/${enc(label)}`, body: { max }, response: ConcurrencyLimit, signal });
  }

  async deleteConcurrencyLimit(label: string, signal?: AbortSignal): Promise<void> {
    await this.call({ method: "DELETE", path: `/api/concurrency-limits/${enc(label)}`, response: Ok, signal });
  }

  /** Creates a token; the answer is the only place its secret appears. */
  createToken(input: TokenCreate, signal?: AbortSignal): Promise<TokenCreated> {
    return this.call({ method: "POST", path: "/api/tokens", body: input, response: TokenCreated, signal });
  }

  async listTokens(signal?: AbortSignal): Promise<TokenRecord[]> {
    return (await this.call({ method: "GET", path: "/api/tokens", response: TokenList, signal })).tokens;
  }

  revokeToken(id: string, signal?: AbortSignal): Promise<TokenRecord> {
    return this.call({ method: "POST", path: `/api/tokens/${enc(id)}/revoke`, response: TokenRecord, signal });
  }

  async setSecret(name: string, value: string, signal?: AbortSignal): Promise<void> {
    await this.call({ method: "PUT", path: `/api/secrets/${enc(name)}`, body: { value }, response: Ok, signal });
  }

  async listSecrets(signal?: AbortSignal): Promise<SecretInfo[]> {
    return (await this.call({ method: "GET", path: "/api/secrets", response: SecretList, signal })).secrets;
  }

  async deleteSecret(name: string, signal?: AbortSignal): Promise<void> {
    await this.call({ method: "DELETE", path: `/api/secrets/${enc(name)}`, response: Ok, signal });
  }


  /** Whether the server keeps the build context with this digest. */
  hasBuildContext(sha256: string, signal?: AbortSignal): Promise<boolean> {
    return head(this.http, { path: `/api/build-contexts/${enc(sha256)}`, signal });
  }

  /** Uploads a build context (a tar archive) under its sha256; `created` is false when it was kept already. */
  uploadBuildContext(sha256: string, archive: Buffer, signal?: AbortSignal): Promise<BuildContextStored> {
    return putBytes(this.http, {
      path: `/api/build-contexts/${enc(sha256)}`,
      data: archive,
      contentType: "application/x-tar",
      response: BuildContextStored,
      signal,
      extraMs: transferMs(archive.length),
    });
  }

  /** Downloads a build context; `size`, when known, gives a large one the time it needs. */
  downloadBuildContext(sha256: string, size?: number, signal?: AbortSignal): Promise<Buffer> {
    return getBytes(this.http, { path: `/api/build-contexts/${enc(sha256)}`, accept: "application/x-tar", signal, extraMs: transferMs(size ?? 0) });
  }

}

/** Time allowed for moving `bytes`, on top of the request timeout: 30 s per 10 MB, so a slow link is not cut off. */
function transferMs(bytes: number): number {
  return Math.ceil(bytes / 10_000_000) * 30_000;
}


/**
 * RunClient: the routes a flow-run container uses (its run, its flow, state and task-run writes, logs,
 * heartbeats, secrets), without zod. The container trusts the server's answers (the server's own schemas
 * shaped them); everything else uses ApiClient, which extends this class and checks every answer against the
 * wire contract. Loading zod costs more CPU than a whole trivial run, so nothing here may import it.
 */
import type { z } from "zod";
import { BerthError, describeError } from "../wire/errors.js";
import { parseApiUrls } from "../shared/api-urls.js";
import { currentUrl, requestJson, type HttpOptions, type JsonRequest, type Transport } from "./http.js";
import type { FlowRecord, FlowRun, FlowRunHeartbeatReply, FlowRunView, Health, LogLine, Ok, RunSecrets, StateChange, TaskRun } from "../wire/schema.js";

export interface ApiClientOptions {
  /** The server's URL, for example "http://127.0.0.1:4200"; several, comma-separated, for replicas. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>`; default: none. */
  token?: string | undefined;
  /** Per-request timeout in ms, on top of any long-poll wait; default 30000. */
  timeoutMs?: number | undefined;
  /** The fetch to use; default: the global one (client/transport.ts has a keep-alive one). */
  fetch?: Transport | undefined;
}

/** Schemas of the answers RunClient reads; none in RunClient itself (trusted), all in ApiClient. */
interface RunReplies {
  flowRecord?: z.ZodType<FlowRecord>;
  flowRunView?: z.ZodType<FlowRunView>;
  flowRun?: z.ZodType<FlowRun>;
  flowRunHeartbeat?: z.ZodType<FlowRunHeartbeatReply>;
  ok?: z.ZodType<Ok>;
  runSecrets?: z.ZodType<RunSecrets>;
  health?: z.ZodType<Health>;
}

export class RunClient {
  /** Every server this client may use, in order. */
  readonly baseUrls: readonly string[];
  protected readonly http: HttpOptions;

  /** The answers' schemas: none here, where answers are trusted. */
  protected readonly replies: RunReplies = {};

  constructor(options: ApiClientOptions) {
    let baseUrls: string[];
    try {
      baseUrls = parseApiUrls(options.baseUrl);
    } catch (err) {
      throw new BerthError(
        "BERTH_E_CONFIG",
        `invalid API URL "${options.baseUrl}" (${describeError(err)}): use e.g. http://127.0.0.1:4200, or several separated by commas`,
        { cause: err },
      );
    }
    this.baseUrls = baseUrls;
    this.http = { baseUrls, at: { index: 0 }, token: options.token, timeoutMs: options.timeoutMs ?? 30_000, fetch: options.fetch ?? globalThis.fetch };
  }

  /** The server requests go to now (the first, until it cannot be reached). */
  get baseUrl(): string {
    return currentUrl(this.http);
  }

  /** The server's liveness (no token needed). */
  health(signal?: AbortSignal): Promise<Health> {
    return this.call({ method: "GET", path: "/health", response: this.replies.health, signal });
  }

  getFlow(id: string, signal?: AbortSignal): Promise<FlowRecord> {
    return this.call({ method: "GET", path: `/api/flows/${enc(id)}`, response: this.replies.flowRecord, signal });
  }

  getFlowRun(id: string, signal?: AbortSignal): Promise<FlowRunView> {
    return this.call({ method: "GET", path: `/api/flow-runs/${enc(id)}`, response: this.replies.flowRunView, signal });
  }

  /**
   * Compare-and-swap: fails with BERTH_E_STALE_VERSION when `expectedVersion` is not the run's version, and
   * first with BERTH_E_STALE_LEASE when `change.epoch` is given and is not the run's epoch.
   */
  setFlowRunState(id: string, change: StateChange, signal?: AbortSignal): Promise<FlowRun> {
    return this.call({ method: "POST", path: `/api/flow-runs/${enc(id)}/state`, body: change, response: this.replies.flowRun, signal });
  }

  /**
   * Reports the run's container alive; the answer carries the run's state (Cancelling means stop) and epoch.
   * With `epoch`, fails with BERTH_E_STALE_LEASE (recording nothing) once another attempt owns the run.
   */
  heartbeatFlowRun(id: string, epoch?: number, signal?: AbortSignal): Promise<FlowRunHeartbeatReply> {
    const body = epoch === undefined ? {} : { epoch };
    return this.call({ method: "POST", path: `/api/flow-runs/${enc(id)}/heartbeat`, body, response: this.replies.flowRunHeartbeat, signal });
  }

  /** With `epoch`, fails with BERTH_E_STALE_LEASE (recording nothing) once another attempt owns the run. */
  async updateTaskRuns(flowRunId: string, taskRuns: TaskRun[], epoch?: number, signal?: AbortSignal): Promise<void> {
    const body = epoch === undefined ? { taskRuns } : { taskRuns, epoch };
    await this.call({ method: "POST", path: `/api/flow-runs/${enc(flowRunId)}/task-runs`, body, response: this.replies.ok, signal });
  }

  /** With `epoch`, fails with BERTH_E_STALE_LEASE (recording nothing) once another attempt owns the run. */
  async appendLogs(flowRunId: string, logs: LogLine[], epoch?: number, signal?: AbortSignal): Promise<void> {
    const body = epoch === undefined ? { logs } : { logs, epoch };
    await this.call({ method: "POST", path: `/api/flow-runs/${enc(flowRunId)}/logs`, body, response: this.replies.ok, signal });
  }

  /** The values of secrets the run's flow reads, with the run's own token. */
  async runSecrets(flowRunId: string, names: string[], signal?: AbortSignal): Promise<Record<string, string>> {
    return (await this.call({ method: "POST", path: `/api/flow-runs/${enc(flowRunId)}/secrets`, body: { names }, response: this.replies.runSecrets, signal })).secrets;
  }

  protected call<S extends z.ZodType>(req: JsonRequest<S>): Promise<z.output<S>> {
    return requestJson(this.http, req);
  }
}

export function enc(id: string): string {
  return encodeURIComponent(id);
}

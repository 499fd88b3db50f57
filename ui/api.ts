/**
 * The web UI's client of the berth API: the routes the CLI uses, typed by the same wire types (type-only
 * imports: nothing of zod reaches the page). The token the user gives is kept in this browser tab's session
 * only, and sent as the CLI sends it.
 */
import type {
  AgentList,
  FlowList,
  FlowRecord,
  FlowRun,
  FlowRunCreated,
  FlowRunList,
  FlowRunStateHistory,
  FlowRunView,
  LogsPage,
  ScheduleList,
  TaskRunList,
} from "../wire/schema.js";

const TOKEN_KEY = "berth.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Listener = () => void;
const unauthorizedListeners = new Set<Listener>();

/** Called when the server answers 401: the page then asks for a token. */
export function onUnauthorized(listener: Listener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token === null || token === "") sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token.trim());
}

async function call<T>(method: "GET" | "POST", path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }), ...(signal ? { signal } : {}) });
  const text = await response.text();
  const parsed: unknown = text === "" ? undefined : JSON.parse(text);
  if (!response.ok) {
    const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    if (response.status === 401) for (const listener of unauthorizedListeners) listener();
    throw new ApiError(response.status, error?.code ?? "BERTH_E_HTTP", error?.message ?? `${method} ${path}: HTTP ${response.status}`);
  }
  return parsed as T;
}

const query = (params: Record<string, string | number | undefined>): string => {
  const entries = Object.entries(params).filter((e): e is [string, string | number] => e[1] !== undefined && e[1] !== "");
  return entries.length === 0 ? "" : `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)])).toString()}`;
};
const enc = encodeURIComponent;

export interface RunFilter {
  flowName?: string;
  state?: string;
  label?: string;
  createdSince?: string;
  after?: string;
  limit?: number;
}

export const api = {
  flows: (signal?: AbortSignal) => call<FlowList>("GET", "/api/flows", undefined, signal),
  flow: (id: string, signal?: AbortSignal) => call<FlowRecord>("GET", `/api/flows/${enc(id)}`, undefined, signal),
  runs: (filter: RunFilter, signal?: AbortSignal) => call<FlowRunList>("GET", `/api/flow-runs${query({ ...filter })}`, undefined, signal),
  run: (id: string, signal?: AbortSignal) => call<FlowRunView>("GET", `/api/flow-runs/${enc(id)}`, undefined, signal),
  states: (id: string, signal?: AbortSignal) => call<FlowRunStateHistory>("GET", `/api/flow-runs/${enc(id)}/states`, undefined, signal),
  taskRuns: (id: string, signal?: AbortSignal) => call<TaskRunList>("GET", `/api/flow-runs/${enc(id)}/task-runs`, undefined, signal),
  logs: (id: string, after: number, waitMs: number, signal?: AbortSignal) =>
    call<LogsPage>("GET", `/api/flow-runs/${enc(id)}/logs${query({ after, waitMs, limit: 1000 })}`, undefined, signal),
  createRun: (input: { flowName?: string; flowId?: string; parameters?: Record<string, unknown>; labels?: string[] }) =>
    call<FlowRunCreated>("POST", "/api/flow-runs", input),
  cancel: (id: string) => call<FlowRun>("POST", `/api/flow-runs/${enc(id)}/cancel`, {}),
  agents: (signal?: AbortSignal) => call<AgentList>("GET", "/api/agents", undefined, signal),
  schedules: (signal?: AbortSignal) => call<ScheduleList>("GET", "/api/schedules", undefined, signal),
};

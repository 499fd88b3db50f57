/**
 * The client's transport: one JSON request over global fetch, bounded by a timeout and the caller's signal,
 * with every failure turned into a BerthError a user can act on. It loads no zod (it only takes the caller's
 * schemas): this module is loaded inside every flow-run container at startup.
 */
import type { z } from "zod";
import { BerthError, isErrorCode } from "../wire/errors.js";
import { formatMs } from "../shared/text.js";

/** What the client needs of a fetch: global fetch, or client/transport.ts's keep-alive one. */
export type Transport = (
  url: URL,
  init: { method: string; headers: Record<string, string>; body: string | Buffer | null; signal: AbortSignal },
) => Promise<{ status: number; headers: { get(name: string): string | null }; arrayBuffer(): Promise<ArrayBuffer> }>;

export interface HttpOptions {
  /** One or more servers (replicas): requests go to the current one, and move on when it cannot be reached. */
  baseUrls: readonly string[];
  /** Which of baseUrls is current; shared by every request of one client. */
  at: { index: number };
  token?: string | undefined;
  timeoutMs: number;
  fetch: Transport;
}

export interface JsonRequest<S extends z.ZodType> {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined> | undefined;
  body?: unknown;
  /** The answer's schema; without one the answer is trusted as the caller's type (the flow-run container). */
  response: S | undefined;
  signal?: AbortSignal | undefined;
  /** Added to the timeout: a long-poll legitimately holds the request this much longer. */
  waitMs?: number | undefined;
}

interface Exchange {
  method: "GET" | "POST" | "PUT" | "DELETE" | "HEAD";
  path: string;
  query?: Record<string, string | number | undefined> | undefined;
  body?: { data: string | Buffer; contentType: string } | undefined;
  accept: string;
  signal?: AbortSignal | undefined;
  /** Added to the transport's timeout. */
  extraMs?: number | undefined;
}

interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
  what: string;
}

/** The server requests go to now. */
export function currentUrl(http: HttpOptions): string {
  return http.baseUrls[http.at.index % http.baseUrls.length] ?? "";
}

/** System errors of a connection that was never made: the request did not reach any server. */
const NOT_DELIVERED = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "EADDRNOTAVAIL"]);

/**
 * One request to the current server. When it cannot be reached, the next server becomes current; when the
 * request was certainly not delivered (the connection was refused), it is sent to the next server at once,
 * each server tried once. A request that may have arrived (a timeout, a reset) is not sent again here.
 */
async function exchange(http: HttpOptions, req: Exchange): Promise<Answer> {
  const count = http.baseUrls.length;
  const start = http.at.index % count;
  for (let tried = 0; ; tried++) {
    const index = (start + tried) % count;
    try {
      return await exchangeOnce(http, req, http.baseUrls[index] ?? "");
    } catch (err) {
      const unreachable = err instanceof BerthError && err.code === "BERTH_E_SERVER_UNREACHABLE";
      if (!unreachable || count === 1) throw err;
      // Only this request's own move: two requests failing at once move the current server once.
      if (http.at.index % count === index) http.at.index = (index + 1) % count;
      const system = (err.details as { system?: string; syscall?: string } | undefined) ?? {};
      const neverSent = system.system !== undefined && NOT_DELIVERED.has(system.system) && (system.syscall === "connect" || system.syscall === "getaddrinfo");
      if (tried + 1 >= count || !neverSent) throw err;
    }
  }
}

async function exchangeOnce(http: HttpOptions, req: Exchange, baseUrl: string): Promise<Answer> {
  const url = new URL(baseUrl + req.path);
  for (const [key, value] of Object.entries(req.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
  const timeoutMs = http.timeoutMs + (req.extraMs ?? 0);
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), timeoutMs);
  const signal = req.signal ? AbortSignal.any([timeout.signal, req.signal]) : timeout.signal;
  const headers: Record<string, string> = { accept: req.accept };
  if (http.token) headers.authorization = `Bearer ${http.token}`;
  if (req.body) headers["content-type"] = req.body.contentType;
  const what = `${req.method} ${req.path}`;
  try {
    const res = await http.fetch(url, { method: req.method, headers, body: req.body ? req.body.data : null, signal });
    const body = req.method === "HEAD" ? Buffer.alloc(0) : Buffer.from(await res.arrayBuffer());
    return { status: res.status, contentType: res.headers.get("content-type") ?? "no content type", body, what };
  } catch (err) {
    if (req.signal?.aborted) throw new BerthError("BERTH_E_ABORTED", `${what} was aborted`, { cause: err });
    const reason = timeout.signal.aborted ? `no answer within ${formatMs(timeoutMs)}` : networkReason(err);
    const system = timeout.signal.aborted ? undefined : systemError(err);
    throw new BerthError(
      "BERTH_E_SERVER_UNREACHABLE",
      `cannot reach the berth server at ${baseUrl} (${reason}): is \`berth server\` running? Set --api or BERTH_API_URL`,
      { cause: err, ...(system ? { details: system } : {}) },
    );
  } finally {
    clearTimeout(timer);
  }
}

/** The error an answer that is not 2xx carries: from its berth error body, or from its status when it has none. */
function failure(http: HttpOptions, answer: Answer): BerthError {
  if (answer.body.length === 0) return bodilessFailure(http, answer);
  let json: unknown;
  try {
    json = JSON.parse(answer.body.toString("utf8"));
  } catch (err) {
    return notJson(http, answer, err);
  }
  return errorFromBody(currentUrl(http), answer.what, answer.status, json);
}

/** A HEAD's answer, or a proxy's empty one: only the status says what went wrong. */
function bodilessFailure(http: HttpOptions, { status, what }: Answer): BerthError {
  const at = `the server at ${currentUrl(http)} answered ${what} with HTTP ${status}`;
  if (status === 401 || status === 403) {
    return new BerthError(
      "BERTH_E_UNAUTHORIZED",
      `${at}: ${http.token ? "it does not accept this API token" : "it requires an API token"}; set --token or BERTH_API_TOKEN`,
      { details: { status } },
    );
  }
  if (status === 503) return new BerthError("BERTH_E_UNAVAILABLE", `${at}: it is not ready; try again shortly`, { details: { status } });
  // A proxy in front of the server may set a lower limit than the server's own.
  if (status === 413) return new BerthError("BERTH_E_PAYLOAD_TOO_LARGE", `${at}: the request body is too large for it (or for a proxy in front of it)`, { details: { status } });
  return new BerthError("BERTH_E_BAD_RESPONSE", `${at} and no body: is --api pointing at a berth server?`, { details: { status } });
}

function notJson(http: HttpOptions, { status, contentType, what, body }: Answer, cause: unknown): BerthError {
  return new BerthError(
    "BERTH_E_BAD_RESPONSE",
    `the server at ${currentUrl(http)} answered ${what} with HTTP ${status} and ${contentType}, not JSON: is --api pointing at a berth server?`,
    { cause, details: { status, body: body.toString("utf8").slice(0, 500) } },
  );
}

/** The JSON of a 2xx answer, in the shape `schema` expects (when given); any other answer becomes its error. */
function readJson<S extends z.ZodType>(http: HttpOptions, answer: Answer, schema: S | undefined): z.output<S> {
  if (answer.status < 200 || answer.status >= 300) throw failure(http, answer);
  const text = answer.body.toString("utf8");
  let json: unknown;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch (err) {
    throw notJson(http, answer, err);
  }
  if (schema === undefined) return json as z.output<S>;
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new BerthError(
      "BERTH_E_BAD_RESPONSE",
      `the server at ${currentUrl(http)} answered ${answer.what} with an unexpected shape: are the client and server versions compatible?`,
      { cause: parsed.error, details: { issues: parsed.error.issues.slice(0, 10).map((i) => ({ path: i.path.join("."), message: i.message })) } },
    );
  }
  return parsed.data;
}

export async function requestJson<S extends z.ZodType>(http: HttpOptions, req: JsonRequest<S>): Promise<z.output<S>> {
  const answer = await exchange(http, {
    method: req.method,
    path: req.path,
    query: req.query,
    body: req.body === undefined ? undefined : { data: JSON.stringify(req.body), contentType: "application/json" },
    accept: "application/json",
    signal: req.signal,
    extraMs: req.waitMs,
  });
  return readJson(http, answer, req.response);
}

export interface BytesTransfer {
  path: string;
  signal?: AbortSignal | undefined;
  /** Added to the transport's timeout: large transfers take longer. */
  extraMs?: number | undefined;
}

/** Whether the resource at `path` exists (HEAD: 2xx yes, 404 no, anything else its error). */
export async function head(http: HttpOptions, req: Omit<BytesTransfer, "extraMs">): Promise<boolean> {
  const answer = await exchange(http, { ...req, method: "HEAD", accept: "*/*" });
  if (answer.status === 404) return false;
  if (answer.status < 200 || answer.status >= 300) throw failure(http, answer);
  return true;
}

/** Sends bytes as `contentType` (PUT) and reads the JSON answer in the shape `response` expects. */
export async function putBytes<S extends z.ZodType>(
  http: HttpOptions,
  req: BytesTransfer & { data: Buffer; contentType: string; response: S },
): Promise<z.output<S>> {
  const answer = await exchange(http, { ...req, method: "PUT", body: { data: req.data, contentType: req.contentType }, accept: "application/json" });
  return readJson(http, answer, req.response);
}

/** The bytes at `path` (GET); an answer that is not 2xx becomes its error. */
export async function getBytes(http: HttpOptions, req: BytesTransfer & { accept: string }): Promise<Buffer> {
  const answer = await exchange(http, { ...req, method: "GET", accept: `${req.accept}, application/json;q=0.5` });
  if (answer.status < 200 || answer.status >= 300) throw failure(http, answer);
  return answer.body;
}

function errorFromBody(baseUrl: string, what: string, status: number, json: unknown): BerthError {
  const error = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  if (typeof error !== "object" || error === null || typeof error.code !== "string" || typeof error.message !== "string") {
    return new BerthError("BERTH_E_BAD_RESPONSE", `the server at ${baseUrl} answered ${what} with HTTP ${status} and no berth error body`, {
      details: { status, body: json },
    });
  }
  const { code, message, details } = error as { code: string; message: string; details?: unknown };
  if (isErrorCode(code)) return new BerthError(code, message, { details });
  // A newer server's code: keep its words rather than lose them.
  return new BerthError("BERTH_E_INTERNAL", `${code}: ${message}`, { details: { code, status, details } });
}

interface NetworkError {
  code?: unknown;
  syscall?: unknown;
  message?: unknown;
  errors?: unknown;
}

/** The system error of a failed fetch (ECONNREFUSED in connect, ...), if it has one. */
function systemError(err: unknown): { system: string; syscall?: string } | undefined {
  const cause = ((err as { cause?: unknown } | null)?.cause ?? err) as NetworkError | undefined;
  const first = Array.isArray(cause?.errors) ? (cause.errors[0] as NetworkError | undefined) : undefined;
  const code = cause?.code ?? first?.code;
  const syscall = cause?.syscall ?? first?.syscall;
  if (typeof code !== "string") return undefined;
  return typeof syscall === "string" ? { system: code, syscall } : { system: code };
}

/** "connect ECONNREFUSED", "getaddrinfo ENOTFOUND", ...: fetch hides the system error in `cause`. */
function networkReason(err: unknown): string {
  const cause = ((err as { cause?: unknown } | null)?.cause ?? err) as NetworkError | undefined;
  const first = Array.isArray(cause?.errors) ? (cause.errors[0] as NetworkError | undefined) : undefined;
  const code = cause?.code ?? first?.code;
  const syscall = cause?.syscall ?? first?.syscall;
  if (typeof code === "string") return typeof syscall === "string" ? `${syscall} ${code}` : code;
  return typeof cause?.message === "string" && cause.message !== "" ? cause.message : String(err);
}

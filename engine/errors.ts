/**
 * Turns what dockerode and docker-modem throw (socket errors, `(HTTP code 404) ... - message` errors, aborts)
 * into BerthErrors with codes, keeping the original as `cause`.
 */
import { BerthError, isBerthError, type ErrorCode } from "../wire/errors.js";

/** Socket errors that mean "nobody is listening there", as opposed to an engine that answered with a failure. */
const UNREACHABLE_CODES = new Set(["ENOENT", "ECONNREFUSED", "EACCES", "EPERM", "ENOTFOUND", "EHOSTUNREACH", "ETIMEDOUT", "ECONNRESET"]);

interface ModemError {
  statusCode?: number;
  json?: unknown;
  code?: string;
  syscall?: string;
  name?: string;
  message?: string;
}

export function statusOf(err: unknown): number | undefined {
  return typeof err === "object" && err !== null ? (err as ModemError).statusCode : undefined;
}

/** The engine's own words, without docker-modem's "(HTTP code 404) no such image - " prefix. */
export function engineMessage(err: unknown): string {
  if (typeof err !== "object" || err === null) return String(err);
  const { json, message } = err as ModemError;
  if (typeof json === "object" && json !== null && typeof (json as { message?: unknown }).message === "string") {
    return (json as { message: string }).message.trim();
  }
  if (typeof json === "string" && json.trim() !== "") return json.trim();
  if (Buffer.isBuffer(json) && json.length > 0) return json.toString("utf8").trim();
  return (message ?? String(err)).replace(/^\(HTTP code \d+\) [^-]*- /, "").trim();
}

export function isUnreachable(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const { code, statusCode } = err as ModemError;
  return statusCode === undefined && code !== undefined && UNREACHABLE_CODES.has(code);
}

export function isAbort(err: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  return typeof err === "object" && err !== null && (err as ModemError).name === "AbortError";
}

export function unreachableError(where: string, err: unknown, reason?: string): BerthError {
  const modem = (typeof err === "object" && err !== null ? err : {}) as ModemError;
  const why = reason ?? ([modem.syscall, modem.code].filter(Boolean).join(" ") || engineMessage(err));
  const hint = modem.code === "EACCES" || modem.code === "EPERM"
    ? "does this user have permission to use it (the docker group)?"
    : "is dockerd running?";
  return new BerthError("BERTH_E_DOCKER_UNAVAILABLE", `cannot reach the Docker engine at ${where} (${why}): ${hint}`, {
    cause: err,
  });
}

export function abortedError(what: string, err: unknown): BerthError {
  return new BerthError("BERTH_E_ABORTED", `${what} was aborted`, { cause: err });
}

/**
 * The one mapping every call goes through. `code` is used when the engine answered with a failure that has
 * no more specific meaning; 404 and 409 keep theirs.
 */
export function toBerthError(
  err: unknown,
  context: { where: string; what: string; code: ErrorCode; notFound?: ErrorCode; signal?: AbortSignal },
): BerthError {
  if (isBerthError(err)) return err;
  if (isAbort(err, context.signal)) return abortedError(context.what, err);
  if (isUnreachable(err)) return unreachableError(context.where, err);
  const status = statusOf(err);
  const code: ErrorCode = status === 404 ? (context.notFound ?? "BERTH_E_NOT_FOUND") : status === 409 ? "BERTH_E_CONFLICT" : context.code;
  return new BerthError(code, `${context.what} failed: ${engineMessage(err)}`, {
    cause: err,
    ...(status === undefined ? {} : { details: { engineStatus: status } }),
  });
}

/**
 * Errors with identity. Every error berth raises on purpose is a `BerthError` with a stable code; the code
 * decides the HTTP status in exactly one table (`ERROR_CODES`), and the wire body is always
 * `{ error: { code, message, details? } }`. docs/errors.md documents every code; a test keeps the two in step.
 */

export const ERROR_CODES = {
  BERTH_E_VALIDATION: 400,
  BERTH_E_BAD_REQUEST: 400,
  BERTH_E_UNAUTHORIZED: 401,
  BERTH_E_NOT_ALLOWED: 403,
  /** The request's token is valid, but its role (or the run or agent it is bound to) may not do this. */
  BERTH_E_FORBIDDEN: 403,
  BERTH_E_NOT_FOUND: 404,
  BERTH_E_FLOW_NOT_FOUND: 404,
  BERTH_E_FLOW_RUN_NOT_FOUND: 404,
  BERTH_E_AGENT_NOT_FOUND: 404,
  /** A build context the server does not keep (never uploaded, or removed as unused). */
  BERTH_E_BUILD_CONTEXT_NOT_FOUND: 404,
  BERTH_E_STALE_VERSION: 409,
  BERTH_E_INVALID_TRANSITION: 409,
  /** The writer's epoch is not the run's current epoch: another attempt owns this run. */
  BERTH_E_STALE_LEASE: 409,
  BERTH_E_CONFLICT: 409,
  BERTH_E_PARAMETERS: 422,
  BERTH_E_PAYLOAD_TOO_LARGE: 413,
  BERTH_E_UNSUPPORTED_MEDIA_TYPE: 415,
  BERTH_E_INTERNAL: 500,
  BERTH_E_UNAVAILABLE: 503,
  // Client-side and local errors: never sent by the server, but still coded.
  BERTH_E_SERVER_UNREACHABLE: 503,
  /** The server answered, but not with a berth response (a proxy's HTML page, another service on the port). */
  BERTH_E_BAD_RESPONSE: 502,
  BERTH_E_FLOW_FILE: 400,
  BERTH_E_FLOW_DEFINITION: 400,
  BERTH_E_DOCKER_UNAVAILABLE: 503,
  BERTH_E_IMAGE_NOT_FOUND: 404,
  BERTH_E_IMAGE_BUILD: 500,
  BERTH_E_HEALTHCHECK: 500,
  BERTH_E_PUSH: 502,
  BERTH_E_CONFIG: 400,
  /** A command-line argument berth cannot use (a malformed --param, an unknown --state). */
  BERTH_E_USAGE: 400,
  BERTH_E_TIMEOUT: 504,
  BERTH_E_ABORTED: 499,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

/**
 * The brand of BerthError (see shared/brand.ts, which wire/ sits below): errors thrown by another copy of
 * berth, or crossing from a flow's bundle, are still recognised by isBerthError.
 */
const BERTH_ERROR = Symbol.for("berth.BerthError");

export class BerthError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BerthError";
    this.code = code;
    this.details = options.details;
  }

  get status(): number {
    return ERROR_CODES[this.code];
  }

  toBody(): ErrorBody {
    const error: ErrorBody["error"] = { code: this.code, message: this.message };
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

Object.defineProperty(BerthError.prototype, BERTH_ERROR, { value: true, enumerable: false });

/** Whether `err` is a BerthError (from any copy of berth), with `code` when one is given. */
export function isBerthError(err: unknown, code?: ErrorCode): err is BerthError {
  if (typeof err !== "object" || err === null || (err as Record<symbol, unknown>)[BERTH_ERROR] !== true) return false;
  return code === undefined || (err as BerthError).code === code;
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** A one-line description of any thrown value, for logs and user-facing messages. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

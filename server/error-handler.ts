/**
 * The server's one error mapping. Every failure leaves as `{ error: { code, message, details? } }` with the
 * status from wire/errors.ts; only a bug gives a 500, and it is logged with its stack.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from "fastify-type-provider-zod";
import { BerthError, isBerthError, type ErrorCode } from "../wire/errors.js";
import type { ZodApp } from "./routes/shared.js";

export interface ValidationIssue {
  /** "body", "querystring", "params" or "headers". */
  in: string;
  /** Dotted path inside that part of the request; "" for the whole of it. */
  path: string;
  message: string;
}

/** Fastify's own 4xx errors (body parsing, content type, size) by status. */
const CODE_BY_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: "BERTH_E_BAD_REQUEST",
  401: "BERTH_E_UNAUTHORIZED",
  404: "BERTH_E_NOT_FOUND",
  413: "BERTH_E_PAYLOAD_TOO_LARGE",
  415: "BERTH_E_UNSUPPORTED_MEDIA_TYPE",
};

export function installErrorHandlers(app: ZodApp): void {
  app.setErrorHandler((err: FastifyError, request, reply) => sendError(toBerthError(err, request), err, request, reply));
  app.setNotFoundHandler((request, reply) =>
    sendError(new BerthError("BERTH_E_NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0] ?? ""}`), undefined, request, reply),
  );
}

function toBerthError(err: FastifyError, request: FastifyRequest): BerthError {
  if (isBerthError(err)) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const where = err.validationContext ?? "request";
    const issues: ValidationIssue[] = err.validation.map((issue) => ({
      in: where,
      path: issue.instancePath.split("/").filter(Boolean).join("."),
      message: issue.message ?? "invalid",
    }));
    const summary = issues
      .slice(0, 5)
      .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
      .join("; ");
    const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : "";
    return new BerthError("BERTH_E_VALIDATION", `invalid ${where} for ${request.method} ${routeOf(request)}: ${summary}${more}`, {
      details: { issues },
    });
  }
  if (isResponseSerializationError(err)) {
    return new BerthError("BERTH_E_INTERNAL", "the server built a response that does not match its own schema", { cause: err });
  }
  const status = typeof err.statusCode === "number" ? err.statusCode : 500;
  if (status === 413) {
    const limit = request.routeOptions.bodyLimit;
    const setting = (request.routeOptions.config as { bodyLimitSetting?: string } | undefined)?.bodyLimitSetting ?? "server.bodyLimit";
    return new BerthError("BERTH_E_PAYLOAD_TOO_LARGE", `the request body is larger than this server accepts for ${request.method} ${routeOf(request)}: at most ${limit ?? "?"} bytes (${setting})`, {
      cause: err,
      details: { limit: limit ?? null },
    });
  }
  if (status === 415) {
    const sent = request.headers["content-type"] ?? "no content type";
    const wanted = request.url.startsWith("/api/build-contexts/") ? "application/x-tar" : "application/json";
    return new BerthError("BERTH_E_UNSUPPORTED_MEDIA_TYPE", `${request.method} ${routeOf(request)} does not take ${sent}: send ${wanted}`, {
      cause: err,
      details: { contentType: sent },
    });
  }
  if (status >= 400 && status < 500) {
    const code = CODE_BY_STATUS[status] ?? "BERTH_E_BAD_REQUEST";
    return new BerthError(code, err.message || "bad request", { cause: err, details: err.code ? { reason: err.code } : undefined });
  }
  if (status === 503) return new BerthError("BERTH_E_UNAVAILABLE", err.message || "the server is unavailable", { cause: err });
  return new BerthError("BERTH_E_INTERNAL", "internal server error: see the server log", { cause: err });
}

/**
 * Errors the router raises before any route is found (a path that is not valid URL encoding, a parameter
 * longer than the router takes): Fastify's `frameworkErrors` option, so they too leave in berth's shape.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const message =
    err.code === "FST_ERR_MAX_PARAM_LENGTH"
      ? "a path parameter is longer than 100 characters: no berth id or name is that long"
      : `the request path is not valid URL encoding (${err.message})`;
  sendError(new BerthError("BERTH_E_BAD_REQUEST", message, { cause: err, details: { reason: err.code } }), err, request, reply);
}

function sendError(err: BerthError, original: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err.status >= 500) request.log.error({ err: original ?? err }, `${request.method} ${request.url} failed: ${err.message}`);
  else request.log.debug({ code: err.code }, err.message);
  return reply.code(err.status).type("application/json; charset=utf-8").send(err.toBody());
}

function routeOf(request: FastifyRequest): string {
  return request.routeOptions.url ?? request.url.split("?")[0] ?? "";
}

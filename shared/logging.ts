/**
 * A tiny pino-compatible logger. Records go to one process-wide sink so that a flow-run container can
 * redirect every line (environment, task and user logs alike) to the server by swapping the sink, without
 * flows/ knowing anything about HTTP.
 */
import { describeError } from "../wire/errors.js";
import type { LogLevel } from "../wire/schema.js";

export interface LogRecord {
  level: LogLevel;
  message: string;
  /** The logger's bindings merged with the call's fields (an `err` field is rendered into `message`). */
  fields: Record<string, unknown>;
  /** ISO-8601 time of the call. */
  at: string;
}

export type LogSink = (record: LogRecord) => void;

type LogMethod = (objOrMsg: Record<string, unknown> | string, msg?: string) => void;

export interface Logger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  child(bindings: Record<string, unknown>): Logger;
}

/** Writes a record to the console: debug/info to stdout, warn/error to stderr. */
export const consoleSink: LogSink = (record) => {
  const line = `${record.at} ${record.level.toUpperCase()} ${record.message}${renderFields(record.fields)}`;
  if (record.level === "warn" || record.level === "error") console.error(line);
  else console.log(line);
};

let sink: LogSink = consoleSink;

/** Replaces the process-wide sink; returns the previous one so the caller can restore it. */
export function setLogSink(next: LogSink): LogSink {
  const previous = sink;
  sink = next;
  return previous;
}

export function getLogSink(): LogSink {
  return sink;
}

/**
 * A logger with `bindings` on every record. Without `target`, the process-wide sink is looked up on every
 * call, so loggers created at import time still follow a later `setLogSink`.
 */
export function createLogger(bindings: Record<string, unknown> = {}, target?: LogSink): Logger {
  const emit = (level: LogLevel, objOrMsg: Record<string, unknown> | string, msg?: string): void => {
    (target ?? sink)(makeRecord(level, bindings, objOrMsg, msg));
  };
  return {
    debug: (o, m) => emit("debug", o, m),
    info: (o, m) => emit("info", o, m),
    warn: (o, m) => emit("warn", o, m),
    error: (o, m) => emit("error", o, m),
    child: (more) => createLogger({ ...bindings, ...more }, target),
  };
}

function makeRecord(
  level: LogLevel,
  bindings: Record<string, unknown>,
  objOrMsg: Record<string, unknown> | string,
  msg: string | undefined,
): LogRecord {
  const at = new Date().toISOString();
  if (typeof objOrMsg === "string") return { level, message: objOrMsg, fields: { ...bindings }, at };
  const { err, msg: objMsg, ...rest } = objOrMsg;
  let message = msg ?? (typeof objMsg === "string" ? objMsg : "");
  if (err !== undefined) message = renderError(message, err);
  return { level, message, fields: { ...bindings, ...rest }, at };
}

function renderError(message: string, err: unknown): string {
  const text = describeError(err);
  const head = message === "" ? text : `${message}: ${text}`;
  const stack = err instanceof Error ? err.stack : undefined;
  // A stack's first line repeats the message; keep only the frames.
  const frames = stack?.split("\n").slice(1).join("\n");
  return frames ? `${head}\n${frames}` : head;
}

function renderFields(fields: Record<string, unknown>): string {
  if (Object.keys(fields).length === 0) return "";
  try {
    return ` ${JSON.stringify(fields)}`;
  } catch {
    return " [unserializable fields]";
  }
}

/**
 * Inside a flow-run container, a task's console output becomes run log lines attributed to that task,
 * and still reaches the container's stdout/stderr, framed (shared/output-frames.ts) so that the agent, which
 * ships the rest of the output, can tell these lines apart and recover any the runtime could not send.
 */
import { format } from "node:util";
import type { LogLevel } from "../wire/schema.js";
import { currentTask } from "../flows/context.js";
import { setLogSink, type LogRecord } from "../shared/logging.js";
import type { RunReporter } from "./reporter.js";
import { frameConsoleLine } from "../shared/output-frames.js";

type ConsoleMethod = "log" | "info" | "debug" | "warn" | "error";
const LEVELS: Record<ConsoleMethod, LogLevel> = { log: "info", info: "info", debug: "debug", warn: "warn", error: "error" };

/** Returns a function that restores the console and the previous log sink. */
export function captureConsole(reporter: RunReporter): () => void {
  const originals = new Map<ConsoleMethod, (...args: unknown[]) => void>();
  for (const method of Object.keys(LEVELS) as ConsoleMethod[]) {
    const original = console[method].bind(console);
    originals.set(method, original);
    const stream = method === "warn" || method === "error" ? process.stderr : process.stdout;
    console[method] = (...args: unknown[]) => {
      const message = format(...args);
      const task = currentTask()?.slug ?? null;
      const seq = reporter.log(LEVELS[method], message, task);
      stream.write(frameConsoleLine(seq, LEVELS[method], task, message));
    };
  }
  const previousSink = setLogSink((record: LogRecord) => {
    // A record may name its task (the runner's failure lines do); otherwise it belongs to the running task.
    const task = typeof record.fields.task === "string" ? record.fields.task : (currentTask()?.slug ?? null);
    const seq = reporter.log(record.level, record.message, task);
    const stream = record.level === "warn" || record.level === "error" ? process.stderr : process.stdout;
    stream.write(frameConsoleLine(seq, record.level, task, record.message));
  });
  return () => {
    for (const [method, original] of originals) console[method] = original;
    setLogSink(previousSink);
  };
}

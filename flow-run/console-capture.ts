/**
 * Inside a flow-run container, a task's console output becomes run log lines attributed to that task,
 * and still reaches the container's stdout/stderr (what `docker logs` and failure reports show).
 */
import { format } from "node:util";
import type { LogLevel } from "../wire/schema.js";
import { currentTask } from "../flows/context.js";
import { setLogSink, type LogRecord } from "../shared/logging.js";
import type { RunReporter } from "./reporter.js";

type ConsoleMethod = "log" | "info" | "debug" | "warn" | "error";
const LEVELS: Record<ConsoleMethod, LogLevel> = { log: "info", info: "info", debug: "debug", warn: "warn", error: "error" };

/** Returns a function that restores the console and the previous log sink. */
export function captureConsole(reporter: RunReporter): () => void {
  const originals = new Map<ConsoleMethod, (...args: unknown[]) => void>();
  for (const method of Object.keys(LEVELS) as ConsoleMethod[]) {
    const original = console[method].bind(console);
    originals.set(method, original);
    console[method] = (...args: unknown[]) => {
      const message = format(...args);
      reporter.log(LEVELS[method], message, currentTask()?.slug ?? null);
      original(message);
    };
  }
  const previousSink = setLogSink((record: LogRecord) => {
    // A record may name its task (the runner's failure lines do); otherwise it belongs to the running task.
    const task = typeof record.fields.task === "string" ? record.fields.task : (currentTask()?.slug ?? null);
    reporter.log(record.level, record.message, task);
    const stream = record.level === "warn" || record.level === "error" ? process.stderr : process.stdout;
    stream.write(`${record.level}: ${record.message}\n`);
  });
  return () => {
    for (const [method, original] of originals) console[method] = original;
    setLogSink(previousSink);
  };
}

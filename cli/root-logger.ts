/**
 * The one pino root logger of a berth process. Human-readable lines (pino-pretty) on a terminal or with
 * BERTH_LOG_FORMAT=pretty, JSON lines otherwise. Secrets are redacted by path.
 */
import { pino, type Logger } from "pino";
import pretty from "pino-pretty";

const REDACT = ["apiToken", "token", "headers.authorization", "req.headers.authorization", "env.BERTH_API_TOKEN"];

export function createRootLogger(options: { level: string; format?: string | undefined; name?: string }): Logger {
  const tty = process.stdout.isTTY === true;
  const human = options.format ? options.format === "pretty" : tty;
  const base = { level: options.level, redact: { paths: REDACT, censor: "[redacted]" }, base: options.name ? { name: options.name } : null };
  if (!human) return pino(base, pino.destination({ sync: true }));
  // Synchronous, like the JSON destination: the last lines before an exit must not be lost.
  return pino(base, pretty({ sync: true, colorize: tty, translateTime: "HH:MM:ss", ignore: "pid,hostname", singleLine: true }));
}

/**
 * The one pino root logger of a berth process. Human-readable lines on a terminal (or with
 * BERTH_LOG_FORMAT=pretty), JSON lines otherwise. Secrets are redacted by path.
 */
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

const REDACT = ["apiToken", "token", "headers.authorization", "req.headers.authorization", "env.BERTH_API_TOKEN"];
const LEVELS: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const SKIP = new Set(["level", "time", "msg", "pid", "hostname", "err"]);

export function createLogger(options: { level: string; format?: string | undefined; name?: string }): Logger {
  const pretty = options.format ? options.format === "pretty" : process.stdout.isTTY === true;
  const base = { level: options.level, redact: { paths: REDACT, censor: "[redacted]" }, base: options.name ? { name: options.name } : null };
  return pretty ? pino(base, prettyStream()) : pino(base, pino.destination({ sync: true }));
}

function prettyStream(): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim() === "") continue;
        try {
          const record = JSON.parse(line) as Record<string, unknown>;
          const time = new Date(Number(record.time)).toISOString().slice(11, 19);
          const fields = Object.entries(record)
            .filter(([k]) => !SKIP.has(k) && k !== "name")
            .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
            .join(" ");
          const err = record.err as { message?: string } | undefined;
          const level = (LEVELS[Number(record.level)] ?? "info").padEnd(5);
          process.stdout.write(`${time} ${level} ${String(record.msg ?? "")}${err?.message ? `: ${err.message}` : ""}${fields ? `  ${fields}` : ""}\n`);
        } catch {
          process.stdout.write(`${line}\n`);
        }
      }
      done();
    },
  });
}

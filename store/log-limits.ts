/**
 * Bounds on a run's logs, the same on every store: at most `limitBytes` of message text per run; the line that
 * would pass the bound is replaced by one truncation line, and later lines are dropped (the append still
 * succeeds, so that no writer retries them). Lines the store already has (same attempt and seq) cost nothing.
 */
import { formatBytes } from "../shared/sizes.js";
import type { LogLine } from "../wire/schema.js";

/** log_bytes of a run whose logs were truncated: past any limit, so that every later line is dropped. */
export const TRUNCATED = Number.MAX_SAFE_INTEGER;
/** log_bytes of a run whose logs retention removed. */
export const LOGS_REMOVED = -1;

export interface LogBudget {
  /** What to store for `line`: itself, the truncation line in its place (`truncates`), or nothing. */
  admit(line: LogLine): { line: LogLine; truncates: boolean } | undefined;
  /** After a line was stored (not ignored as a duplicate). */
  stored(line: LogLine, truncates: boolean): void;
  /** The run's log_bytes after the append. */
  readonly used: number;
}

export function logBudget(used: number, limitBytes: number | undefined, now: string): LogBudget {
  let total = Math.max(0, used);
  return {
    admit(line) {
      if (limitBytes === undefined) return { line, truncates: false };
      if (total >= TRUNCATED) return undefined;
      if (total + Buffer.byteLength(line.message) <= limitBytes) return { line, truncates: false };
      const message = `logs truncated: this run's logs reached the server's limit of ${formatBytes(limitBytes)} (server.runLogLimit); later lines were dropped`;
      return { line: { at: now, level: "warn", message, task: null }, truncates: true };
    },
    stored(line, truncates) {
      total = truncates ? TRUNCATED : total + Buffer.byteLength(line.message);
    },
    get used() {
      return total;
    },
  };
}

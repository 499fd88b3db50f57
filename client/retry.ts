/**
 * Riding out a server restart: agents, flow-run containers and `berth run --watch` retry a call while the
 * server is unreachable, for a bounded time, and give up with the last error after that.
 */
import { backoffMs, sleep } from "../shared/backoff.js";

/** Errors that mean "the server is not answering right now", worth retrying. */
export function isServerDown(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === "BERTH_E_SERVER_UNREACHABLE" || code === "BERTH_E_UNAVAILABLE";
}

export interface RetryOptions {
  /** How long to keep retrying in all, in ms; 0 tries once. */
  forMs: number;
  signal?: AbortSignal | undefined;
  /** Called before each wait, with the error and the delay. */
  onRetry?: (err: unknown, delayMs: number) => void;
}

/**
 * Runs `fn`, retrying with backoff while the server is unreachable, for at most `forMs` in all; other errors,
 * and the last unreachable one, are thrown as they are. The waits hold the process open: a pending retry
 * is work that must still happen (a container's final state, its last log lines).
 */
export async function whileServerDown<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const deadline = Date.now() + options.forMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const delay = backoffMs(attempt, { maxMs: 5_000 });
      if (!isServerDown(err) || Date.now() + delay > deadline || options.signal?.aborted) throw err;
      options.onRetry?.(err, delay);
      await sleep(delay, options.signal, { keepAlive: true });
    }
  }
}

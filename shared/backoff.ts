/**
 * Exponential backoff with full jitter: attempt 0 waits up to `baseMs`, each further attempt doubles the
 * ceiling up to `maxMs`. Pure: the random source is a parameter, so tests control it.
 */
export function backoffMs(attempt: number, options: { baseMs?: number; maxMs?: number; random?: () => number } = {}): number {
  const base = options.baseMs ?? 250;
  const max = options.maxMs ?? 15_000;
  const ceiling = Math.min(max, base * 2 ** Math.max(0, Math.min(attempt, 30)));
  return Math.round(ceiling / 2 + (options.random ?? Math.random)() * (ceiling / 2));
}

/** Resolves after `ms`, or at once when `signal` aborts. Never rejects; the timer never holds the process. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref();
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** Errors that mean "the server is not answering right now", worth retrying. */
export function isServerDown(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === "BERTH_E_SERVER_UNREACHABLE" || code === "BERTH_E_UNAVAILABLE";
}

/**
 * Runs `fn`, retrying with backoff while the server is unreachable, for at most `forMs` in all; other errors,
 * and the last unreachable one, are thrown as they are. Lets agents and containers ride out a server restart.
 */
export async function whileServerDown<T>(
  fn: () => Promise<T>,
  options: { forMs: number; signal?: AbortSignal | undefined; onRetry?: (err: unknown, delayMs: number) => void },
): Promise<T> {
  const deadline = Date.now() + options.forMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const delay = backoffMs(attempt, { maxMs: 5_000 });
      if (!isServerDown(err) || Date.now() + delay > deadline || options.signal?.aborted) throw err;
      options.onRetry?.(err, delay);
      await sleep(delay, options.signal);
    }
  }
}

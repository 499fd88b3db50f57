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

/**
 * Resolves after `ms`, or at once when `signal` aborts. Never rejects. The timer does not hold the process
 * open unless `keepAlive` says the wait is work in progress (a retry that must still happen).
 */
export function sleep(ms: number, signal?: AbortSignal, options: { keepAlive?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    if (!options.keepAlive) timer.unref();
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

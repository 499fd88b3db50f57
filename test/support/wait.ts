/**
 * The one way tests wait for something they cannot await: `until` checks a condition every few ms and fails,
 * naming what it waited for, once `timeoutMs` has passed. Prefer awaiting an event (the logs long-poll, a
 * process's output, an engine wait); use this where none exists.
 */
export interface UntilOptions {
  /** Give up after this long; default 10 s. */
  timeoutMs?: number;
  /** Check this often; default 25 ms. */
  everyMs?: number;
}

/** Resolves with how long it took once `check` holds; rejects naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, options: UntilOptions = {}): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 25));
  }
  return Date.now() - started;
}

/** Resolves once `url` answers with less than a 5xx. */
export function httpAnswers(url: string, options: UntilOptions = {}): Promise<number> {
  return until(
    `${url} to answer`,
    () => fetch(url, { signal: AbortSignal.timeout(1_000) }).then((res) => res.status < 500, () => false),
    { everyMs: 50, timeoutMs: 15_000, ...options },
  );
}

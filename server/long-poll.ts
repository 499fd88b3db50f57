/** The long-poll loop shared by claims and logs, and detection of a client that went away mid-poll. */
import type { FastifyReply } from "fastify";
import type { Notifier } from "./notifier.js";

export interface LongPollOptions<T> {
  notifier: Notifier;
  topic: string;
  waitMs: number;
  /** Any of these aborting ends the wait (client gone, server closing). */
  signals: readonly AbortSignal[];
  /** One look for work; undefined when there is none yet. */
  attempt: () => Promise<T | undefined>;
  /**
   * After a look that found nothing: in how many ms work will be there without any notification (a run whose
   * start comes), so that the poll looks again then; undefined for "only when notified".
   */
  dueInMs?: () => Promise<number | undefined>;
  /** Called before each wait for a notification, after a look that found nothing. */
  beforeWait?: () => Promise<void>;
}

/**
 * Tries `attempt` now and again each time `topic` is notified, until it yields something, `waitMs` passes or
 * a signal aborts; then undefined. After the wait ends it does not try again: a claim made for a client that
 * has gone would hand a run to nobody.
 */
export async function longPoll<T>(options: LongPollOptions<T>): Promise<T | undefined> {
  if (options.waitMs <= 0) return options.attempt();
  const ended = new AbortController();
  const end = (): void => ended.abort();
  const deadline = performance.now() + options.waitMs;
  const timer = setTimeout(end, options.waitMs);
  timer.unref();
  for (const signal of options.signals) {
    if (signal.aborted) end();
    else signal.addEventListener("abort", end, { once: true });
  }
  try {
    for (;;) {
      // Subscribe before looking, so that work arriving during the look still wakes us.
      const round = new AbortController();
      const woke = options.notifier.next(options.topic, AbortSignal.any([ended.signal, round.signal]));
      try {
        const result = await options.attempt();
        if (result !== undefined) return result;
        const dueInMs = await options.dueInMs?.();
        await options.beforeWait?.();
        // Work due only after the wait ends needs no timer (and a start weeks away must not overflow one).
        const due = dueInMs === undefined || dueInMs >= deadline - performance.now() ? undefined : dueTimer(dueInMs);
        // Not notified (and not due) means the wait is over (time, client gone, closing), whichever signal said so.
        const again = await (due ? Promise.race([woke, due.elapsed]) : woke);
        due?.cancel();
        if (!again || ended.signal.aborted) return undefined;
      } finally {
        round.abort();
      }
    }
  } finally {
    clearTimeout(timer);
    end();
    for (const signal of options.signals) signal.removeEventListener("abort", end);
  }
}

/** Resolves true after `ms` (at least 0), unless cancelled first. */
function dueTimer(ms: number): { elapsed: Promise<boolean>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), Math.max(0, ms));
  });
  return { elapsed, cancel: () => clearTimeout(timer) };
}

/** Aborts when the client closes the connection before the response has been sent. */
export function disconnectSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const response = reply.raw;
  response.once("close", () => {
    if (!response.writableFinished) controller.abort();
  });
  return controller.signal;
}

/**
 * berth's exit statuses, so that scripts can tell a flow that failed from berth failing to do what it was
 * asked:
 * - 0: done (for `run --watch` and `execute`: the flow run ended Success);
 * - 1: the flow run berth watched or executed ended Failed or Cancelled;
 * - 2: an error: bad arguments, an unreachable server or engine, a refused request (the message says what
 *   to do);
 * - 130: interrupted (SIGINT/SIGTERM).
 */
export const EXIT = {
  ok: 0,
  runNotSuccessful: 1,
  error: 2,
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

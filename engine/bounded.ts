/**
 * A bound on engine calls that must not wait forever: a Docker engine that accepts a request and never answers
 * (a stuck dockerd, a socket that stalls) would otherwise leave the caller hanging without a word.
 */
import { BerthError } from "../wire/errors.js";

/** Longest an engine call on a cleanup or background path may take before it counts as failed. */
export const ENGINE_CALL_MS = 20_000;

/** Rejects with BERTH_E_DOCKER_UNAVAILABLE when `promise` takes longer than `ms`. */
export function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BerthError("BERTH_E_DOCKER_UNAVAILABLE", `the Docker engine did not answer within ${ms} ms while ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

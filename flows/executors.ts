/**
 * Executors decide how many task attempts may be in flight at once; the runner does the scheduling. A
 * synchronous task always runs to completion inline, so concurrency only matters for asynchronous ones.
 */
import { BerthError } from "../wire/errors.js";

export interface Executor {
  /** The most asynchronous task attempts (retry waits included) in flight at once; at least 1. */
  readonly maxConcurrency: number;
}

/** One task at a time, in topological order. */
export class LocalExecutor implements Executor {
  readonly maxConcurrency = 1;
}

export interface ConcurrentExecutorOptions {
  /** Tasks in flight at once (default 8; Infinity for no limit). */
  maxConcurrency?: number;
}

/** Runs independent asynchronous tasks concurrently, up to `maxConcurrency` at once. */
export class ConcurrentExecutor implements Executor {
  readonly maxConcurrency: number;

  constructor({ maxConcurrency = 8 }: ConcurrentExecutorOptions = {}) {
    if (!(maxConcurrency >= 1) || (Number.isFinite(maxConcurrency) && !Number.isInteger(maxConcurrency))) {
      throw new BerthError("BERTH_E_CONFIG", `maxConcurrency must be a whole number of at least 1, got ${maxConcurrency}`);
    }
    this.maxConcurrency = maxConcurrency;
  }
}

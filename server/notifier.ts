/**
 * Wake-ups for long-polls. A claim or log request that finds nothing parks on a topic and retries the moment
 * the topic is notified, so an idle agent starts a new run within milliseconds instead of a poll interval.
 * An interface, because several server replicas on PostgreSQL need LISTEN/NOTIFY behind the same calls.
 *
 * Topics: RUNS_TOPIC when a run becomes claimable; logsTopic(id) when a run gets logs or reaches a final state;
 * cancelsTopic(agentId) when a run the agent holds becomes Cancelling.
 */
import { EventEmitter } from "node:events";

export const RUNS_TOPIC = "runs";
export const logsTopic = (flowRunId: string): string => `logs:${flowRunId}`;
/** Notified when one of an agent's runs is to be cancelled (Cancelling): its cancel watch answers at once. */
export const cancelsTopic = (agentId: string): string => `cancels:${agentId}`;

export interface Notifier {
  notify(topic: string): void;
  /**
   * Resolves true at the first notify of `topic` after this call returns; false as soon as `signal` aborts or
   * the notifier closes. Never rejects. Call it *before* checking for work, so that work arriving during the
   * check is not missed.
   */
  next(topic: string, signal: AbortSignal): Promise<boolean>;
  /** Resolves every pending `next` with false. Idempotent. */
  close(): Promise<void>;
}

/** The in-process notifier, for one server process (SQLite). */
export class LocalNotifier implements Notifier {
  private readonly emitter = new EventEmitter();
  private readonly closing = new AbortController();

  constructor() {
    // Hundreds of parked claims on one topic are normal, not a leak.
    this.emitter.setMaxListeners(0);
  }

  notify(topic: string): void {
    this.emitter.emit(topic);
  }

  next(topic: string, signal: AbortSignal): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      if (signal.aborted || this.closing.signal.aborted) return resolve(false);
      const settle = (notified: boolean): void => {
        this.emitter.off(topic, onNotify);
        signal.removeEventListener("abort", onAbort);
        this.closing.signal.removeEventListener("abort", onAbort);
        resolve(notified);
      };
      const onNotify = (): void => settle(true);
      const onAbort = (): void => settle(false);
      this.emitter.on(topic, onNotify);
      signal.addEventListener("abort", onAbort, { once: true });
      this.closing.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** How many `next` calls are parked on `topic`: lets tests prove waiters are cleaned up. */
  waiting(topic: string): number {
    return this.emitter.listenerCount(topic);
  }

  async close(): Promise<void> {
    this.closing.abort();
  }
}

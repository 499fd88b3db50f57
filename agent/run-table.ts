/**
 * The flow runs an agent holds right now, each with the lifecycle that runs it, and the slots they take.
 * The claim loop waits here for a free slot; draining waits here for every run to end.
 */
import type { RunLifecycle } from "./run-lifecycle.js";

interface Entry {
  lifecycle: RunLifecycle;
  done: Promise<void>;
}

export class RunTable {
  private readonly entries = new Map<string, Entry>();
  private freed: (() => void) | undefined;

  get size(): number {
    return this.entries.size;
  }

  ids(): string[] {
    return [...this.entries.keys()];
  }

  has(flowRunId: string): boolean {
    return this.entries.has(flowRunId);
  }

  get(flowRunId: string): RunLifecycle | undefined {
    return this.entries.get(flowRunId)?.lifecycle;
  }

  lifecycles(): RunLifecycle[] {
    return [...this.entries.values()].map((e) => e.lifecycle);
  }

  /** Holds a slot for the run until `running` settles (it never rejects: lifecycles record their own failures). */
  track(lifecycle: RunLifecycle, running: Promise<void>): void {
    const id = lifecycle.flowRunId;
    const entry: Entry = { lifecycle, done: Promise.resolve() };
    entry.done = running.finally(() => {
      // A newer attempt at the same run may hold the slot by now: only this attempt's entry goes.
      if (this.entries.get(id) === entry) this.entries.delete(id);
      this.wake();
    });
    this.entries.set(id, entry);
  }

  /** Resolves the next time a slot frees up, or at once after `wake()`. */
  slotFreed(): Promise<void> {
    return new Promise<void>((resolve) => {
      const previous = this.freed;
      this.freed = () => {
        previous?.();
        resolve();
      };
    });
  }

  /** Releases whoever waits in `slotFreed` (a slot freed, or the agent is stopping). */
  wake(): void {
    const freed = this.freed;
    this.freed = undefined;
    freed?.();
  }

  /** Resolves once every run held now has ended. */
  async settled(): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => e.done));
  }
}

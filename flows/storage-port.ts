/**
 * What flows/ and environments/ need of a storage: the real classes live in storage/ and implement it.
 * Kept as a port so the engine stays free of Docker and file-system code.
 */
import type { Flow } from "./flow.js";

export interface Storage {
  /** Flow name → location inside this storage. */
  readonly flows: Record<string, string>;
  /** Labels an agent needs to run flows from this storage. */
  readonly labels?: readonly string[];
  /** Records a flow; returns its location. */
  addFlow(flow: Flow): string;
  /** Loads the flow stored at `location`. */
  getFlow(location: string): Promise<Flow>;
  /** Produces the storage (an image, a directory). */
  build?(context?: unknown): Promise<unknown>;
  /** The storage's description for the server. */
  serialize(): unknown;
}

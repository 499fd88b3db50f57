/** Inputs for tests: valid by default, with unique names so tests never collide. */
import { randomUUID } from "node:crypto";
import type { z } from "zod";
import type { FlowCreate } from "../../wire/schema.js";

export function uniqueName(prefix = "flow"): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export function flowInput(overrides: Partial<FlowCreate> = {}): FlowCreate {
  const name = overrides.name ?? uniqueName();
  return {
    name,
    labels: [],
    storage: { type: "docker", image: `localhost:5000/dev/${name}:abc`, flows: { [name]: `/opt/berth/flows/${name}.mjs` } },
    environment: { type: "LocalEnvironment", className: "LocalEnvironment", labels: [], metadata: {} },
    contentHash: randomUUID(),
    parameters: [],
    tasks: [{ slug: "say-hello", name: "say hello" }],
    recovery: { onLost: "fail", maxAttempts: 3 },
    runTimeoutMs: null,
    schedule: [],
    catchUp: "latest",
    maxConcurrentRuns: null,
    resources: { memoryBytes: null, cpus: null, pids: null },
    runAs: "user",
    placement: [],
    ...overrides,
  };
}

/** The same, as a wire body (what a client sends). */
export function flowBody(overrides: Partial<z.input<typeof FlowCreate>> = {}): z.input<typeof FlowCreate> {
  return flowInput(overrides as Partial<FlowCreate>);
}

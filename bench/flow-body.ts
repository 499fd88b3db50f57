/** A flow to queue runs of in the benchmarks that talk to a store directly: nothing in it is ever run. */
import type { FlowCreate } from "../wire/schema.js";

export function benchFlow(name: string, labels: string[] = []): FlowCreate {
  return {
    name,
    labels,
    storage: { type: "local", directory: "/tmp", flows: {} },
    environment: { type: "LocalEnvironment", className: "LocalEnvironment", labels: [], metadata: {} },
    contentHash: name,
    parameters: [],
    tasks: [],
    recovery: { onLost: "fail", maxAttempts: 3 },
    runTimeoutMs: null,
    schedule: [],
    catchUp: "latest",
    maxConcurrentRuns: null,
    resources: { memoryBytes: null, cpus: null, pids: null },
    runAs: "user",
    placement: [],
  };
}

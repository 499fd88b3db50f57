/**
 * The wire contract's plain values, without zod: what the flow-run container and the SDK need from the
 * contract (state names, limits, paths). wire/schema.ts re-exports them next to the schemas; code that runs in
 * every flow-run container imports them from here, so that loading it never loads zod.
 */
export const FLOW_RUN_STATES = ["Scheduled", "Submitted", "Running", "Success", "Failed", "Cancelling", "Cancelled"] as const;
export type FlowRunStateName = (typeof FLOW_RUN_STATES)[number];
export const FINAL_FLOW_RUN_STATES: readonly FlowRunStateName[] = ["Success", "Failed", "Cancelled"];

export const TASK_RUN_STATES = [
  "Pending",
  "Running",
  "Retrying",
  "Success",
  "Failed",
  "TriggerFailed",
  "TimedOut",
  "Cancelled",
] as const;

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** Where flows live inside a storage image (and where an agent mounts a LocalStorage directory). */
export const IMAGE_FLOWS_DIR = "/opt/berth/flows";

/** The longest state or task-run message the server stores; writers cut longer ones (shared/text.ts). */
export const MAX_STATE_MESSAGE_LENGTH = 20_000;
/** Most task states, and most log lines, a flow-run state write may carry (StateChange). */
export const STATE_REPORT_MAX = 2_000;

/** The longest log message the server stores; senders cut longer ones rather than lose them. */
export const MAX_LOG_MESSAGE_LENGTH = 100_000;

/** Exit code of a flow-run container whose attempt stopped because another attempt owns its run. */
export const EXIT_SUPERSEDED = 75;

/** How long a claim waits for a matching run when the agent does not say (the agent's default, too). */
export const DEFAULT_CLAIM_WAIT_MS = 20_000;

/** The most flow versions a claim may say its agent holds (and so the most an agent keeps). */
export const MAX_KNOWN_FLOWS = 500;

/** What a label may not contain: spaces, commas or control characters. */
export const LABEL = /^[^\s,\p{Cc}]+$/u;

/**
 * Free-form JSON a user gives (run parameters, environment metadata, parameter defaults) is bounded in size
 * (wire/schema.ts), and in depth (64 levels) as the server reads a request (shared/json-limits.ts), so that no
 * stored value can make a later read or response fail. The size bounds apply to what a request sends (the
 * `...Input` schemas), never to what the server answers: a value stored before a bound existed must still be
 * served.
 */
export const JSON_SIZE_LIMITS = { parameters: 1024 * 1024, metadata: 64 * 1024, parameterDefault: 64 * 1024 } as const;

/** Who a flow's code runs as in its container. */
export const RUN_AS = ["user", "root"] as const;

/** What the scheduler does with slots that passed while the server was down (see server/scheduler.ts). */
export const CATCH_UP = ["none", "latest", "all"] as const;

/** What happens to a Running run whose container went silent: "fail" it, or "reschedule" it while attempts remain. */
export const ON_LOST = ["fail", "reschedule"] as const;

/** Claims a run may have in all, counting the first. */
export const MAX_ATTEMPTS = { min: 1, max: 100, default: 3 } as const;

/** The bounds of a flow's resources (memory in bytes, CPUs, processes). */
export const RESOURCE_BOUNDS = {
  memoryBytes: { min: 6 * 1024 ** 2, max: 2 ** 50 },
  cpus: { min: 0.01, max: 1024 },
  pids: { min: 16, max: 4_194_304 },
} as const;

/** A Swarm placement constraint: "node.<attribute> == value" or "!=", as `docker service create --constraint` takes. */
export const PLACEMENT_CONSTRAINT = /^\s*node\.[A-Za-z0-9_.-]+\s*(==|!=)\s*[^\s\x00-\x1f]+\s*$/;
export const PLACEMENT_CONSTRAINT_HELP = 'a placement constraint reads "node.ATTRIBUTE==VALUE" or "node.ATTRIBUTE!=VALUE", for example "node.labels.zone==a"';

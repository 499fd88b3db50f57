/**
 * What an agent tells a flow-run container through its environment, and how the container reads it back.
 * Loaded in every flow-run container at start: no zod, no configuration schema (config/schema.ts uses the
 * defaults below), only what reading a few variables needs.
 */
import { parseApiUrls } from "../shared/api-urls.js";
import { BerthError } from "../wire/errors.js";
import type { StorageSpec } from "../wire/schema.js";

/** What a flow-run container is told by its agent, through its environment. */
export interface FlowRunSettings {
  /** The API as the container reaches it. */
  apiUrl: string;
  /** The run's own token, minted by its claim: never the agent's. */
  apiToken: string | undefined;
  flowRunId: string;
  /** The attempt's lease epoch: every write the container makes carries it (fencing). */
  epoch: number | undefined;
  /** How often the container reports itself alive. */
  heartbeatIntervalMs: number;
  /** How long the container's writes wait out an unreachable server. */
  serverDownForMs: number;
  /**
   * The run and its flow as the agent claimed them, so the container need not ask the server for them. Absent
   * when they would not fit in a variable (large parameters), or from an agent that predates it: the
   * container then reads them from the server.
   */
  run?: RunDescription | undefined;
}

/** A claimed run as its container needs it: where its flow is, and what it runs with. */
export interface RunDescription {
  flowId: string;
  flowName: string;
  /** The run's version when its container was started (its state writes compare-and-swap from it). */
  version: number;
  parameters: Record<string, unknown>;
  /** The flow's storage, listing only this flow. */
  storage: StorageSpec;
}

/** The timings of a container started without them (by hand, or by an agent of an earlier berth). */
export const FLOW_RUN_DEFAULTS = { heartbeatIntervalMs: 10_000, serverDownForMs: 300_000 } as const;

/** The longest run description an agent puts in a container's environment (Linux allows 128 KiB per variable). */
export const MAX_RUN_DESCRIPTION_BYTES = 64 * 1024;

/**
 * Set on a warm container (agent/warm-pool.ts): how long it waits for its run on standard input, in ms.
 * The run's own variables (below) then come on that input.
 */
export const WARM_TTL_ENV = "BERTH_WARM_TTL_MS";

/** The variables a flow-run container's settings travel in. */
export const FLOW_RUN_ENV = {
  apiUrl: "BERTH_API_URL",
  apiToken: "BERTH_API_TOKEN",
  flowRunId: "BERTH_FLOW_RUN_ID",
  epoch: "BERTH_FLOW_RUN_EPOCH",
  heartbeatIntervalMs: "BERTH_RUN_HEARTBEAT_INTERVAL_MS",
  serverDownForMs: "BERTH_SERVER_DOWN_FOR_MS",
  run: "BERTH_FLOW_RUN",
} as const satisfies Record<keyof FlowRunSettings, string>;

/** The environment an agent gives a flow-run container. */
export function flowRunEnvironment(settings: FlowRunSettings): Record<string, string> {
  const env: Record<string, string> = {
    [FLOW_RUN_ENV.apiUrl]: settings.apiUrl,
    [FLOW_RUN_ENV.flowRunId]: settings.flowRunId,
    [FLOW_RUN_ENV.heartbeatIntervalMs]: String(settings.heartbeatIntervalMs),
    [FLOW_RUN_ENV.serverDownForMs]: String(settings.serverDownForMs),
  };
  if (settings.epoch !== undefined) env[FLOW_RUN_ENV.epoch] = String(settings.epoch);
  if (settings.apiToken) env[FLOW_RUN_ENV.apiToken] = settings.apiToken;
  if (settings.run) {
    const json = JSON.stringify(settings.run);
    if (Buffer.byteLength(json) <= MAX_RUN_DESCRIPTION_BYTES) env[FLOW_RUN_ENV.run] = json;
  }
  return env;
}

/** The variables that belong to one run (the rest are the agent's, the same for all its runs). */
export const RUN_VARIABLES: readonly string[] = [FLOW_RUN_ENV.flowRunId, FLOW_RUN_ENV.apiToken, FLOW_RUN_ENV.epoch, FLOW_RUN_ENV.run];

/** What a container started by hand (or by an agent of an earlier berth) runs with: the configuration's defaults. */
const REQUIRED_FLOW_RUN_ENV = [FLOW_RUN_ENV.apiUrl, FLOW_RUN_ENV.flowRunId];

/**
 * A flow-run container's settings, read back from its environment. BERTH_API_URL and BERTH_FLOW_RUN_ID are
 * required (a clear error names what is missing); the timings default to the configuration's defaults.
 */
export function readFlowRunSettings(env: Record<string, string | undefined>): FlowRunSettings {
  const missing = REQUIRED_FLOW_RUN_ENV.filter((name) => !env[name]);
  if (missing.length > 0) {
    throw new BerthError(
      "BERTH_E_CONFIG",
      `berth execute flow-run needs ${missing.join(" and ")} in its environment: it runs in a container an agent starts, which sets them`,
    );
  }
  const problems: string[] = [];
  const apiUrl = env[FLOW_RUN_ENV.apiUrl]!;
  try {
    parseApiUrls(apiUrl);
  } catch (err) {
    problems.push(`${FLOW_RUN_ENV.apiUrl}: ${(err as Error).message}: write it like http://127.0.0.1:4200, or several separated by commas`);
  }
  const count = (name: string, positive: boolean): number | undefined => {
    const text = env[name];
    if (!text) return undefined;
    const value = Number(text);
    if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(value) || (positive && value === 0)) {
      problems.push(`${name}: ${JSON.stringify(text)} is not a ${positive ? "positive" : "non-negative"} whole number`);
      return undefined;
    }
    return value;
  };
  const epoch = count(FLOW_RUN_ENV.epoch, false);
  const heartbeatIntervalMs = count(FLOW_RUN_ENV.heartbeatIntervalMs, true);
  const serverDownForMs = count(FLOW_RUN_ENV.serverDownForMs, false);
  const run = readRunDescription(env[FLOW_RUN_ENV.run], problems);
  if (problems.length > 0) {
    throw new BerthError("BERTH_E_CONFIG", `berth execute flow-run: its environment is not what an agent sets (${problems.join("; ")})`);
  }
  return {
    apiUrl,
    apiToken: env[FLOW_RUN_ENV.apiToken] || undefined,
    flowRunId: env[FLOW_RUN_ENV.flowRunId]!,
    epoch,
    heartbeatIntervalMs: heartbeatIntervalMs ?? FLOW_RUN_DEFAULTS.heartbeatIntervalMs,
    serverDownForMs: serverDownForMs ?? FLOW_RUN_DEFAULTS.serverDownForMs,
    ...(run ? { run } : {}),
  };
}

function readRunDescription(text: string | undefined, problems: string[]): RunDescription | undefined {
  if (!text) return undefined;
  let value: Partial<RunDescription> | null;
  try {
    value = JSON.parse(text) as Partial<RunDescription> | null;
  } catch (err) {
    problems.push(`${FLOW_RUN_ENV.run}: not JSON (${(err as Error).message})`);
    return undefined;
  }
  const valid =
    typeof value === "object" &&
    value !== null &&
    typeof value.flowId === "string" &&
    typeof value.flowName === "string" &&
    Number.isSafeInteger(value.version) &&
    typeof value.parameters === "object" &&
    value.parameters !== null &&
    typeof value.storage === "object" &&
    value.storage !== null &&
    typeof value.storage.flows === "object";
  if (!valid) {
    problems.push(`${FLOW_RUN_ENV.run}: not a run description (flowId, flowName, version, parameters, storage)`);
    return undefined;
  }
  return value as RunDescription;
}

/**
 * Loads the configuration: defaults < config file < BERTH_* environment variables < flags, then one parse.
 * The environment is passed in, never read at import.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { BerthError } from "../wire/errors.js";
import { ConfigSchema, type Config, type ConfigInput } from "./schema.js";

type Layer = Record<string, unknown>;

export interface LoadConfigOptions {
  env: Record<string, string | undefined>;
  cwd: string;
  /** Explicit config file (--config); else BERTH_CONFIG; else ./berth.config.json when present. */
  file?: string | undefined;
  /** Values from flags, in the config's shape. */
  flags?: Layer;
}

/** BERTH_* variable → config path. List values are comma-separated. */
const ENV_PATHS: Record<string, { path: string[]; list?: boolean; boolean?: boolean }> = {
  BERTH_API_URL: { path: ["apiUrl"] },
  BERTH_API_TOKEN: { path: ["apiToken"] },
  BERTH_API_TOKEN_FILE: { path: ["apiTokenFile"] },
  BERTH_INSECURE: { path: ["server", "insecure"], boolean: true },
  BERTH_SERVER_KEY: { path: ["server", "key"] },
  BERTH_SERVER_KEY_FILE: { path: ["server", "keyFile"] },
  BERTH_LOG_LEVEL: { path: ["logLevel"] },
  BERTH_HOME: { path: ["home"] },
  BERTH_SERVER_HOST: { path: ["server", "host"] },
  BERTH_SERVER_PORT: { path: ["server", "port"] },
  BERTH_DB: { path: ["server", "db"] },
  BERTH_AGENT_LOST_AFTER: { path: ["server", "agentLostAfter"] },
  BERTH_SERVER_LEASE: { path: ["server", "lease"] },
  BERTH_SERVER_START_TIMEOUT: { path: ["server", "startTimeout"] },
  BERTH_SERVER_RUN_HEARTBEAT_TIMEOUT: { path: ["server", "runHeartbeatTimeout"] },
  BERTH_SERVER_CANCEL_TIMEOUT: { path: ["server", "cancelTimeout"] },
  BERTH_SERVER_AGENT_GONE_AFTER: { path: ["server", "agentGoneAfter"] },
  BERTH_SERVER_REAPER_INTERVAL: { path: ["server", "reaperInterval"] },
  BERTH_SERVER_SCHEDULER_INTERVAL: { path: ["server", "schedulerInterval"] },
  BERTH_AGENT_NAME: { path: ["agent", "name"] },
  BERTH_AGENT_LABELS: { path: ["agent", "labels"], list: true },
  BERTH_AGENT_CONCURRENCY: { path: ["agent", "concurrency"] },
  BERTH_AGENT_NETWORK: { path: ["agent", "network"] },
  BERTH_AGENT_PULL_POLICY: { path: ["agent", "pullPolicy"] },
  BERTH_AGENT_BACKEND: { path: ["agent", "backend"] },
  BERTH_AGENT_WARM_POOL: { path: ["agent", "warmPool"] },
  BERTH_AGENT_BUILD_ON_PULL_FAILURE: { path: ["agent", "buildOnPullFailure"], boolean: true },
  BERTH_AGENT_BUILD_TIMEOUT: { path: ["agent", "buildTimeout"] },
  BERTH_AGENT_CONTAINER_API_URL: { path: ["agent", "containerApiUrl"] },
  BERTH_AGENT_CLAIM_WAIT: { path: ["agent", "claimWait"] },
  BERTH_AGENT_HEARTBEAT_INTERVAL: { path: ["agent", "heartbeatInterval"] },
  BERTH_AGENT_DRAIN_TIMEOUT: { path: ["agent", "drainTimeout"] },
  BERTH_AGENT_STOP_GRACE: { path: ["agent", "stopGrace"] },
  BERTH_AGENT_LEASE_TIMEOUT: { path: ["agent", "leaseTimeout"] },
  BERTH_AGENT_RUN_HEARTBEAT_INTERVAL: { path: ["agent", "runHeartbeatInterval"] },
  BERTH_AGENT_ALLOW_LOCAL_DIRS: { path: ["agent", "allowLocalDirs"], list: true },
  BERTH_AGENT_MEMORY: { path: ["agent", "memory"] },
  BERTH_AGENT_ALLOW_ROOT: { path: ["agent", "allowRoot"], boolean: true },
  BERTH_AGENT_ALLOW_IMAGES: { path: ["agent", "allowImages"], list: true },
  BERTH_AGENT_CPUS: { path: ["agent", "cpus"] },
  BERTH_AGENT_PIDS_LIMIT: { path: ["agent", "pidsLimit"] },
  BERTH_AGENT_HTTP: { path: ["agent", "http"] },
  BERTH_AGENT_DISK_PATH: { path: ["agent", "diskPath"] },
  BERTH_AGENT_DISK_LOW_WATERMARK: { path: ["agent", "diskLowWatermark"] },
  BERTH_AGENT_DISK_HIGH_WATERMARK: { path: ["agent", "diskHighWatermark"] },
  BERTH_SERVER_DOWN_FOR: { path: ["serverDownFor"] },
  // Before serverDownFor applied to clients too, it was the agent's: the old name still works.
  BERTH_AGENT_SERVER_DOWN_FOR: { path: ["serverDownFor"] },
  BERTH_SERVER_BODY_LIMIT: { path: ["server", "bodyLimit"] },
  BERTH_SERVER_BUILD_CONTEXT_LIMIT: { path: ["server", "buildContextLimit"] },
  BERTH_SERVER_RUN_LOG_LIMIT: { path: ["server", "runLogLimit"] },
  BERTH_SERVER_LOG_RETENTION: { path: ["server", "logRetention"] },
};

export function loadConfig(options: LoadConfigOptions): Config {
  const merged = [fileLayer(options), envLayer(options.env), options.flags ?? {}].reduce(deepMerge, {});
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(describeIssue).join("; ");
    throw new BerthError("BERTH_E_CONFIG", `invalid configuration: ${problems}`, { details: parsed.error.issues });
  }
  return parsed.data;
}

/** The configuration with nothing but defaults and `input` (no file, no environment): for code and tests. */
export function defaultConfig(input: ConfigInput = {}): Config {
  return loadConfig({ env: {}, cwd: "/nonexistent", flags: input as Layer });
}

function fileLayer(options: LoadConfigOptions): Layer {
  const explicit = options.file ?? options.env.BERTH_CONFIG;
  const file = explicit ? path.resolve(options.cwd, explicit) : path.join(options.cwd, "berth.config.json");
  if (!existsSync(file)) {
    if (explicit) throw new BerthError("BERTH_E_CONFIG", `config file not found: ${file}`);
    return {};
  }
  try {
    const value: unknown = JSON.parse(readFileSync(file, "utf8"));
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("the top level must be an object");
    return value as Layer;
  } catch (err) {
    throw new BerthError("BERTH_E_CONFIG", `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function envLayer(env: Record<string, string | undefined>): Layer {
  const layer: Layer = {};
  for (const [name, spec] of Object.entries(ENV_PATHS)) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    const value = spec.list ? raw.split(",").map((s) => s.trim()).filter(Boolean) : spec.boolean ? parseBoolean(name, raw) : raw;
    setPath(layer, spec.path, value);
  }
  return layer;
}

function parseBoolean(name: string, raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off"].includes(value)) return false;
  throw new BerthError("BERTH_E_CONFIG", `${name}="${raw}" is not a boolean: use true or false`);
}

function setPath(target: Layer, keys: string[], value: unknown): void {
  let node = target;
  for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as Layer;
  node[keys[keys.length - 1]!] = value;
}

function deepMerge(base: Layer, over: Layer): Layer {
  const out: Layer = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const current = out[key];
    out[key] =
      isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isPlainObject(v: unknown): v is Layer {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Settings that moved, by their old path: a config file that still uses one is told where it went. */
const MOVED: Readonly<Record<string, string>> = { "agent.serverDownFor": "serverDownFor" };

function describeIssue(issue: { path: PropertyKey[]; message: string; code: string; keys?: string[] }): string {
  const where = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys" && issue.keys) {
    return issue.keys
      .map((key) => {
        const full = where ? `${where}.${key}` : key;
        const moved = MOVED[full];
        return moved ? `${full} is now ${moved}` : `${full} is not a berth setting`;
      })
      .join("; ");
  }
  return `${where || "config"}: ${issue.message}`;
}

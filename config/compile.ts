/**
 * The one step from a Config to what each part of berth runs with: the server's options, the agent's
 * options, and the environment of a flow-run container (which the container reads back with
 * `readFlowRunSettings`, config/flow-run-env.ts). Every default lives in config/schema.ts (the flow-run
 * container's own, which it reads without the schema, in config/flow-run-env.ts) and nowhere else; this only renames into
 * `...Ms` fields and resolves what depends on other settings (an agent's name, its containers' network).
 */
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Config, PullPolicy } from "./schema.js";
import { allLoopback } from "../shared/api-urls.js";
import type { FlowRunSettings } from "./flow-run-env.js";

export { flowRunEnvironment, readFlowRunSettings, type FlowRunSettings, type RunDescription } from "./flow-run-env.js";

/** What `buildServer` and `berth server` run with. */
export interface ServerOptions {
  /** Interface and port to listen on. */
  host: string;
  port: number;
  /** SQLite file path (or ":memory:"). */
  db: string;
  /** The admin token; when none is set, `berth server` takes it from a token file (see config/tokens.ts). */
  apiToken: string | undefined;
  /** The token file given in the configuration, if one was. */
  apiTokenFile: string | undefined;
  /** The admin token file of a server on loopback that was given no token: <home>/admin.token. */
  homeTokenFile: string;
  /** Serve without tokens (see the configuration's server.insecure). */
  insecure: boolean;
  /** The server's key (base64), or the file it is kept in. */
  key: string | undefined;
  keyFile: string;
  /** Largest accepted request body in bytes. */
  bodyLimitBytes: number;
  /** Largest accepted build context in bytes. */
  buildContextLimitBytes: number;
  /** Most log text (bytes of messages) kept per run. */
  runLogLimitBytes: number;
  /** Logs of runs ended longer ago are removed by the reaper; 0 keeps them. */
  logRetentionMs: number;
  /** An agent silent for longer than this is shown as lost and no longer counted for pickup. */
  agentLostAfterMs: number;
  /** An agent silent for longer than this is gone for good: its leftover containers of finished runs may be removed. */
  agentGoneAfterMs: number;
  /** How long a claim, and each renewal by an agent heartbeat, holds a run for its agent. */
  leaseMs: number;
  /** How often the reaper looks for lost runs; 0 never (call reapOnce yourself). */
  reaperIntervalMs: number;
  schedulerIntervalMs: number;
  /** A run claimed this long ago and still not Running goes back to Scheduled. */
  startTimeoutMs: number;
  /** A Running run whose container has been silent this long is lost (see the flow's recovery). */
  runHeartbeatTimeoutMs: number;
  /** A Cancelling run unconfirmed this long, with its agent lost, is recorded Cancelled. */
  cancelTimeoutMs: number;
}

export function compileServerOptions(config: Config): ServerOptions {
  const { server } = config;
  return {
    host: server.host,
    port: server.port,
    db: server.db ?? path.join(config.home, "berth.db"),
    apiToken: config.apiToken,
    apiTokenFile: config.apiTokenFile,
    homeTokenFile: homeTokenFile(config.home),
    insecure: server.insecure,
    key: server.key,
    keyFile: server.keyFile ?? path.join(config.home, "server.key"),
    bodyLimitBytes: server.bodyLimit,
    buildContextLimitBytes: server.buildContextLimit,
    runLogLimitBytes: server.runLogLimit,
    logRetentionMs: server.logRetention,
    agentLostAfterMs: server.agentLostAfter,
    agentGoneAfterMs: server.agentGoneAfter,
    leaseMs: server.lease,
    reaperIntervalMs: server.reaperInterval,
    schedulerIntervalMs: server.schedulerInterval,
    startTimeoutMs: server.startTimeout,
    runHeartbeatTimeoutMs: server.runHeartbeatTimeout,
    cancelTimeoutMs: server.cancelTimeout,
  };
}

/** The admin token a server on loopback generates when given none, and clients on its machine read. */
export function homeTokenFile(home: string): string {
  return path.join(home, "admin.token");
}

/** What a Docker agent runs with. */
export interface AgentOptions {
  /** Shown in `berth agents`; the agent keeps its id (and its containers) across restarts by this name. */
  name: string;
  /** The agent runs only flow runs whose labels are all among these. */
  labels: string[];
  /** How many flow runs at once. */
  concurrency: number;
  /** Containers on the agent's engine, or services on the swarm it manages. */
  backend: "docker" | "swarm";
  /** The API URL the agent uses. */
  apiUrl: string;
  apiToken: string | undefined;
  /** Docker network for flow-run containers; undefined for the engine's default. */
  network: string | undefined;
  pullPolicy: PullPolicy;
  /** When a pull fails, build the image here from the registered build context. */
  buildOnPullFailure: boolean;
  buildTimeoutMs: number;
  /** Extra environment for flow-run containers (berth's own variables win). */
  env: Record<string, string>;
  /** Long-poll length of one claim request. */
  claimWaitMs: number;
  /** How often the agent heartbeats and renews its leases. */
  heartbeatIntervalMs: number;
  /** On stop, how long running flow runs may take to finish. */
  drainTimeoutMs: number;
  /** SIGTERM-to-SIGKILL grace when stopping a container. */
  stopGraceMs: number;
  /** Leave finished containers for inspection. */
  keepContainers: boolean;
  /** Idle started containers per hot shape (0: none), and how long each waits for a run. */
  warmPool: { size: number; ttlMs: number };
  /** Limits of every flow-run container: memory in bytes and CPUs (none when undefined), and processes. */
  limits: { memoryBytes: number | undefined; cpus: number | undefined; pids: number };
  /** Glob patterns of the storage images the agent runs; none for any. */
  allowImages: string[];
  /** Whether flows that ask to run as root may. */
  allowRoot: boolean;
  /** The only host directories (absolute) under which a LocalStorage flow's directory is mounted: <home>/flows and --allow-local-dir. */
  allowLocalDirs: string[];
  /** Stop a run's container when its lease could not be renewed for this long. */
  leaseTimeoutMs: number;
  /** How long the agent's writes wait out an unreachable server. */
  serverDownForMs: number;
  /** What every flow-run container of this agent is told, but for the run's id, epoch and token. */
  flowRun: Omit<FlowRunSettings, "flowRunId" | "epoch" | "apiToken" | "run">;
  /** Where /health and /metrics are served; none when undefined. */
  http: { host: string; port: number } | undefined;
  /** The path whose filesystem's free space /health watches, and the least free space that is healthy. */
  disk: { path: string; lowWatermarkBytes: number; highWatermarkBytes: number };
}

export function compileAgentOptions(config: Config): AgentOptions {
  const { agent } = config;
  const containerApiUrl = agent.containerApiUrl ?? config.apiUrl;
  return {
    name: agent.name ?? `agent-${os.hostname()}`,
    labels: agent.labels,
    concurrency: agent.concurrency,
    backend: agent.backend,
    apiUrl: config.apiUrl,
    apiToken: config.apiToken,
    network: agent.network ?? defaultNetwork(containerApiUrl),
    pullPolicy: agent.pullPolicy,
    // An agent that runs only allowed images builds none: a build would run the flow author's own Dockerfile
    // steps and could tag any allowed name on this host.
    buildOnPullFailure: agent.buildOnPullFailure && agent.allowImages.length === 0,
    buildTimeoutMs: agent.buildTimeout,
    env: agent.env,
    claimWaitMs: agent.claimWait,
    heartbeatIntervalMs: agent.heartbeatInterval,
    drainTimeoutMs: agent.drainTimeout,
    stopGraceMs: agent.stopGrace,
    keepContainers: agent.keepContainers,
    warmPool: { size: agent.warmPool, ttlMs: agent.warmPoolTtl },
    limits: { memoryBytes: agent.memory, cpus: agent.cpus, pids: agent.pidsLimit },
    allowRoot: agent.allowRoot,
    allowImages: agent.allowImages,
    // <home>/flows, not the home itself: the home may hold the server's database.
    allowLocalDirs: [...new Set([path.join(config.home, "flows"), ...agent.allowLocalDirs].map((dir) => path.resolve(dir)))],
    leaseTimeoutMs: agent.leaseTimeout,
    serverDownForMs: config.serverDownFor,
    flowRun: {
      apiUrl: containerApiUrl,
      heartbeatIntervalMs: agent.runHeartbeatInterval,
      serverDownForMs: config.serverDownFor,
    },
    http: agent.http,
    // Docker's data root where the agent sees it (an agent on the host); else its home, usually on the same disk.
    disk: { path: agent.diskPath ?? (existsSync(DOCKER_DATA_ROOT) ? DOCKER_DATA_ROOT : config.home), lowWatermarkBytes: agent.diskLowWatermark, highWatermarkBytes: Math.max(agent.diskHighWatermark, agent.diskLowWatermark) },
  };
}

const DOCKER_DATA_ROOT = "/var/lib/docker";

/** Loopback API URLs are only reachable from containers on the host network. */
export function defaultNetwork(apiUrl: string): string | undefined {
  return allLoopback(apiUrl, (host) => host === "localhost" || host === "[::1]" || host.startsWith("127.")) ? "host" : undefined;
}


/**
 * berth's configuration: one zod schema, parsed once. Layers merge as defaults < config file < BERTH_*
 * environment variables < command-line flags (see config/load.ts). Durations are written like "30s" and
 * compiled once into `...Ms` numbers.
 */
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { MIN_MEMORY_BYTES, parseByteSize } from "../shared/sizes.js";
import { DEFAULT_CLAIM_WAIT_MS } from "../wire/schema.js";
import { parseApiUrls } from "../shared/api-urls.js";
import { FLOW_RUN_DEFAULTS } from "./flow-run-env.js";

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "250ms", "30s", "5m", "1h" or a number of milliseconds → milliseconds. */
export const Duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === "number") return Math.round(value);
  const match = DURATION.exec(value.trim());
  if (!match) {
    ctx.addIssue({ code: "custom", message: `"${value}" is not a duration: write it like 500ms, 30s, 5m or 1h` });
    return z.NEVER;
  }
  return Math.round(Number(match[1]) * UNIT_MS[(match[2] ?? "ms") as keyof typeof UNIT_MS]);
});

/** A Duration that must not be zero: a timeout of nothing would stop everything at once. */
const PositiveDuration = Duration.refine((ms) => ms >= 1, { message: "must be at least 1ms" });

/** HOST:PORT for a listening socket: a host name or IPv4 address (or [IPv6]) and a port (0: any free one). */
const ListenAddress = z.string().transform((value, ctx) => {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port > 65_535) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} is not an address to listen on: write it like 127.0.0.1:9464` });
    return z.NEVER;
  }
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
});

/** A memory size as Docker writes it ("512m", "2g", "1.5g"; k/m/g/t are powers of 1024) or a number of bytes. */
export const ByteSize = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = parseByteSize(value);
  if (bytes === undefined) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} is not a size: write it like 512m or 2g` });
    return z.NEVER;
  }
  return bytes;
});

/** When an agent pulls a flow's image: always, only when it is not on the host, or never. */
export const PULL_POLICIES = ["always", "if-not-present", "never"] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];

/** One API URL, or several separated by commas (server replicas: clients fail over). */
export const ApiUrls = z.string().superRefine((value, ctx) => {
  try {
    parseApiUrls(value);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: `${(err as Error).message}: write it like http://127.0.0.1:4200, or several separated by commas` });
  }
});

const Label = z.string().min(1).regex(/^[^\s,\p{Cc}]+$/u, "labels have no spaces, commas or control characters");

// Strict objects: a key berth does not know (a typo, a setting that moved) is an error naming it, not ignored.
export const ConfigSchema = z.strictObject({
  /** The server's URL, for clients and agents; several, comma-separated, for replicas. Default http://127.0.0.1:4200. */
  apiUrl: ApiUrls.default("http://127.0.0.1:4200"),
  /**
   * Bearer token: the server's admin token when set there, sent by clients when set here. Default none: the
   * server then keeps a generated one in apiTokenFile, and clients on its machine read it there.
   */
  apiToken: z.string().min(1).optional(),
  /**
   * A file holding the admin token: the server creates it (readable by its owner only) when it does not exist,
   * clients read it. Default <home>/admin.token, used by the server only on loopback and by clients only for a
   * loopback API URL.
   */
  apiTokenFile: z.string().min(1).optional(),
  /** debug | info | warn | error. Default info. */
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
  /** Where berth keeps its files (SQLite database, logs). Default ~/.berth. */
  home: z.string().default(path.join(os.homedir(), ".berth")),
  /** How long agents, flow-run containers and `berth run --watch` wait out an unreachable server. Default 5m. */
  serverDownFor: Duration.default(FLOW_RUN_DEFAULTS.serverDownForMs),
  server: z
    .strictObject({
      /** Default 127.0.0.1. */
      host: z.string().default("127.0.0.1"),
      /** Default 4200. */
      port: z.coerce.number().int().min(0).max(65_535).default(4200),
      /** SQLite file path, or a postgres:// URL. Default <home>/berth.db. */
      db: z.string().optional(),
      /**
       * Serve without tokens: anyone who reaches the server, and the code of every flow run on the host network,
       * is an admin. Default false; a server bound to anything but loopback needs a token, or this.
       */
      insecure: z.boolean().default(false),
      /** The key run tokens are signed with and secrets encrypted with: base64 of 32 bytes or more. Default: keyFile's. */
      key: z.string().min(1).optional(),
      /** Where the server keeps its generated key (created readable by its owner only). Default <home>/server.key. */
      keyFile: z.string().min(1).optional(),
      /** An agent not heard from for this long is lost. Default 60s. */
      agentLostAfter: Duration.default(60_000),
      /** An agent not heard from for this long is gone for good: other agents on its engine remove its containers of runs that are over. Default 10m. */
      agentGoneAfter: PositiveDuration.default(10 * 60_000),
      /** A claim's lease; agents renew it with every heartbeat. Default 30s. */
      lease: Duration.default(30_000),
      /** A claimed run not Running after this long goes back to Scheduled. Default 60s. */
      startTimeout: PositiveDuration.default(60_000),
      /** A Running run whose container is silent this long is lost (failed or rescheduled). Default 45s. */
      runHeartbeatTimeout: Duration.default(45_000),
      /** A Cancelling run whose agent is lost is Cancelled after this long. Default 30s. */
      cancelTimeout: Duration.default(30_000),
      /** How often the server looks for lost runs. Default 5s. */
      reaperInterval: Duration.default(5_000),
      /** How often the scheduler makes the runs of schedules ahead of time (it also runs whenever a schedule changes). Default 10s. */
      schedulerInterval: Duration.default(10_000),
      /** Largest request body accepted, in bytes (log batches are large). Default 16 MiB. */
      bodyLimit: z.coerce.number().int().min(1024).default(16 * 1024 * 1024),
      /** Largest build context (a flow's bundle and the files its image copies) accepted, in bytes. Default 128 MiB. */
      buildContextLimit: z.coerce.number().int().min(1024).max(512 * 1024 * 1024).default(128 * 1024 * 1024),
      /** Most log text kept per run ("64m"); past it one truncation line is stored and later lines are dropped. Default 64m. */
      runLogLimit: ByteSize.default(64 * 1024 ** 2),
      /** Logs of runs that ended longer ago than this are removed by the reaper ("30d"); 0 keeps them. Default 0. */
      logRetention: Duration.default(0),
    })
    .prefault({}),
  agent: z
    .strictObject({
      /** Default agent-<hostname>. */
      name: z.string().min(1).optional(),
      /** Default none: the agent then runs only unlabelled flow runs. */
      labels: z.array(Label).default([]),
      /** Flow runs at once. Default 1. */
      concurrency: z.coerce.number().int().min(1).max(1000).default(1),
      /** Where runs go: "docker" (a container on the agent's engine) or "swarm" (a service of one task per run on the swarm the engine manages). Default docker. */
      backend: z.enum(["docker", "swarm"]).default("docker"),
      /** Docker network for flow-run containers. Default host when the API is on loopback. */
      network: z.string().min(1).optional(),
      /** always | if-not-present | never ("never": build from the registered context, never pull). Default if-not-present. */
      pullPolicy: z.enum(PULL_POLICIES).default("if-not-present"),
      /** When a pull fails, build the image here from the registered build context. Default true. */
      buildOnPullFailure: z.boolean().default(true),
      /** Longest a build of a storage image on the agent may take before it is stopped and its runs fail. Default 30m. */
      buildTimeout: PositiveDuration.default(30 * 60_000),
      /** Extra environment for flow-run containers. Default none. */
      env: z.record(z.string(), z.string()).default({}),
      /** The API URL as flow-run containers reach it (several, comma-separated, for replicas). Default: apiUrl. */
      containerApiUrl: ApiUrls.optional(),
      /** Long-poll length of a claim. Default 20s. */
      claimWait: Duration.default(DEFAULT_CLAIM_WAIT_MS),
      /** How often the agent reports itself alive and renews its leases. Default 10s. */
      heartbeatInterval: Duration.default(10_000),
      /** How often a flow-run container reports itself alive; keep it well under server.runHeartbeatTimeout. Default 10s. */
      runHeartbeatInterval: Duration.default(FLOW_RUN_DEFAULTS.heartbeatIntervalMs),
      /** How long a stopping agent waits for its flow runs. Default 60s. */
      drainTimeout: Duration.default(60_000),
      /** SIGTERM-to-SIGKILL grace for flow-run containers. Default 10s. */
      stopGrace: Duration.default(10_000),
      /** Keep finished containers. Default false. */
      keepContainers: z.boolean().default(false),
      /** Memory limit of each flow-run container ("512m", "2g"); at least 6m. Default none. */
      memory: ByteSize.refine((bytes) => bytes >= MIN_MEMORY_BYTES, { message: "must be at least 6m (Docker's smallest)" }).optional(),
      /** CPU limit of each flow-run container, in CPUs (1.5). Default none. */
      cpus: z.coerce.number().min(0.01).max(1024).optional(),
      /** Most processes (threads included) in each flow-run container, unless its flow sets resources.pids. Default 1024. */
      pidsLimit: z.coerce.number().int().min(16).max(4_194_304).default(1024),
      /** Glob patterns of the images the agent runs ("registry.example/team/**"); others fail. Default none: any. */
      allowImages: z.array(z.string().min(1)).default([]),
      /** Run flows that ask for it (runAs: "root") as root; others fail. Default false. */
      allowRoot: z.boolean().default(false),
      /** Host directories under which a LocalStorage flow's directory may be mounted, besides <home>/flows. Default none. */
      allowLocalDirs: z.array(z.string().min(1)).default([]),
      /** Stop a run's container when its lease was not renewed for this long; match the server's lease. Default 30s. */
      leaseTimeout: Duration.default(30_000),
      /** Serve the agent's /health and /metrics on this address ("127.0.0.1:9464"). Default none. */
      http: ListenAddress.optional(),
      /** Whose filesystem's free space the agent watches. Default: /var/lib/docker when the agent sees it, else home. */
      diskPath: z.string().min(1).optional(),
      /** Below this much free space on diskPath the agent reports itself unhealthy and removes unneeded images ("2g"). Default 2g. */
      diskLowWatermark: ByteSize.default(2 * 1024 ** 3),
      /** Image garbage collection goes on until this much is free ("4g"). Default 4g. */
      diskHighWatermark: ByteSize.default(4 * 1024 ** 3),
      /**
       * Started, idle flow-run containers kept per recently used container shape, each waiting for one run.
       * Default 0: none (every run starts a new container). Docker backend only.
       */
      warmPool: z.coerce.number().int().min(0).max(32).default(0),
      /** How long an idle warm container waits for a run before it exits (and is replaced when still wanted). Default 10m. */
      warmPoolTtl: PositiveDuration.default(10 * 60_000),
    })
    .superRefine((agent, ctx) => {
      // An agent held to allowed images builds none (a build runs the flow author's Dockerfile steps).
      if (agent.warmPool > 0 && agent.backend === "swarm") {
        ctx.addIssue({ code: "custom", path: ["warmPool"], message: "warm containers run on one Docker engine: a swarm's tasks cannot be handed a run (use --backend docker, or no --warm-pool)" });
      }
      if (agent.allowImages.length > 0 && agent.pullPolicy === "never") {
        ctx.addIssue({ code: "custom", path: ["pullPolicy"], message: 'pull policy "never" builds every image here, which --allow-image rules out: use "if-not-present" or "always"' });
      }
    })
    .prefault({}),
});

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

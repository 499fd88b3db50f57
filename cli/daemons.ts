/** Starting the long-running parts (server, agent) from a Config; shared by `server`, `agent` and `up`. */
import { mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import { BerthError } from "../wire/errors.js";
import type { Config } from "../config/schema.js";
import type { Agent } from "../agent/agent.js";
import type { PullPolicy } from "../agent/options.js";
import type { ContainerEngine } from "../engine/port.js";
import { clientFor } from "./context.js";
import { localEngine } from "./engine.js";
import { VERSION } from "./version.js";

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const db = config.server.db ?? path.join(config.home, "berth.db");
  if (/^postgres(ql)?:\/\//.test(db)) {
    throw new BerthError("BERTH_E_CONFIG", "the PostgreSQL store is not available in this version of berth: use a SQLite file for --db");
  }
  if (db !== ":memory:") mkdirSync(path.dirname(path.resolve(db)), { recursive: true });
  const { openSqliteStore } = await import("../store/sqlite.js");
  const { buildServer } = await import("../server/app.js");
  const store = await openSqliteStore(db);
  const app = await buildServer({
    store,
    logger,
    config: {
      version: VERSION,
      agentLostAfterMs: config.server.agentLostAfter,
      leaseMs: config.server.lease,
      startTimeoutMs: config.server.startTimeout,
      runHeartbeatTimeoutMs: config.server.runHeartbeatTimeout,
      cancelTimeoutMs: config.server.cancelTimeout,
      reaperIntervalMs: config.server.reaperInterval,
      ...(config.apiToken ? { apiToken: config.apiToken } : {}),
    },
  });
  try {
    await app.listen({ host: config.server.host, port: config.server.port });
  } catch (err) {
    await app.close();
    await store.close();
    const code = (err as { code?: string }).code;
    const hint = code === "EADDRINUSE" ? `: port ${config.server.port} is in use (is another berth server running?); choose another with --port` : "";
    throw new BerthError("BERTH_E_CONFIG", `cannot listen on ${config.server.host}:${config.server.port}${hint || `: ${(err as Error).message}`}`, { cause: err });
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.server.port;
  const url = `http://${config.server.host.includes(":") ? `[${config.server.host}]` : config.server.host}:${port}`;
  logger.info({ db: store.description, url }, `berth server ${VERSION} listening on ${url}`);
  let closed = false;
  return {
    url,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await store.close();
    },
  };
}

export async function startAgent(config: Config, logger: Logger, givenEngine?: ContainerEngine): Promise<Agent> {
  const { Agent } = await import("../agent/agent.js");
  const { ensureBerthImage } = await import("../images/index.js");
  const engine = givenEngine ?? (await localEngine());
  let berthImage: Promise<string> | undefined;
  const agent = new Agent(
    {
      client: clientFor(config),
      engine,
      logger,
      berthImage: () => (berthImage ??= ensureBerthImage(engine, { log: (line) => logger.info(line) })),
    },
    {
      name: config.agent.name ?? `agent-${os.hostname()}`,
      labels: config.agent.labels,
      concurrency: config.agent.concurrency,
      apiUrl: config.apiUrl,
      containerApiUrl: config.agent.containerApiUrl,
      apiToken: config.apiToken,
      network: config.agent.network,
      pullPolicy: config.agent.pullPolicy as PullPolicy,
      env: config.agent.env,
      claimWaitMs: config.agent.claimWait,
      heartbeatIntervalMs: config.agent.heartbeatInterval,
      drainTimeoutMs: config.agent.drainTimeout,
      stopGraceMs: config.agent.stopGrace,
      keepContainers: config.agent.keepContainers,
      leaseTimeoutMs: config.agent.leaseTimeout,
      serverDownForMs: config.agent.serverDownFor,
    },
  );
  await agent.start();
  return agent;
}

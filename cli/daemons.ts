/** Starting the long-running parts (server, agent) from compiled options; shared by `server`, `agent` and `up`. */
import { mkdirSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import type { Agent } from "../agent/agent.js";
import type { AgentOptions, ServerOptions } from "../config/compile.js";
import type { ContainerEngine } from "../engine/port.js";
import type { Notifier } from "../server/notifier.js";
import { BerthError } from "../wire/errors.js";
import { ApiClient } from "../client/api-client.js";
import { keepAliveTransport } from "../client/transport.js";
import { localEngine, swarmEngine } from "./engine.js";
import { VERSION } from "./version.js";

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions, logger: Logger): Promise<RunningServer> {
  const { db, host } = options;
  const postgres = /^postgres(ql)?:\/\//.test(db);
  if (!postgres && db !== ":memory:") mkdirSync(path.dirname(path.resolve(db)), { recursive: true });
  const openStore = postgres
    ? async (url: string) => (await import("../store/postgres.js")).openPostgresStore(url)
    : async (file: string) => (await import("../store/sqlite.js")).openSqliteStore(file);
  const { buildServer } = await import("../server/app.js");
  const { serverSecrets } = await import("../config/tokens.js");
  const secrets = serverSecrets(options);
  if (options.insecure) {
    logger.warn(`--insecure: this server accepts requests without a token; anyone who reaches ${host}:${options.port}, and any flow run on this host's network, is an admin`);
  }
  const store = await openStore(db);
  // On PostgreSQL, wake-ups reach the other servers of the database too (LISTEN/NOTIFY).
  let notifier: Notifier | undefined;
  if (postgres) {
    const { PostgresNotifier } = await import("../server/postgres-notifier.js");
    notifier = await PostgresNotifier.start({ url: db, logger }).catch(async (err: unknown) => {
      await store.close();
      throw err;
    });
  }
  const app = await buildServer({
    store,
    logger,
    options: { ...options, apiToken: secrets.apiToken },
    version: VERSION,
    serverKey: secrets.serverKey,
    ...(notifier ? { notifier } : {}),
  }).catch(async (err: unknown) => {
    await notifier?.close();
    await store.close();
    throw err;
  });
  try {
    await app.listen({ host, port: options.port });
  } catch (err) {
    await app.close();
    await notifier?.close();
    await store.close();
    const code = (err as { code?: string }).code;
    const hint = code === "EADDRINUSE" ? `: port ${options.port} is in use (is another berth server running?); choose another with --port` : "";
    throw new BerthError("BERTH_E_CONFIG", `cannot listen on ${host}:${options.port}${hint || `: ${(err as Error).message}`}`, { cause: err });
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  logger.info({ db: store.description, url }, `berth server ${VERSION} listening on ${url}`);
  if (secrets.tokenFile) logger.info(`the admin token is in ${secrets.tokenFile}: clients on this machine read it from there`);
  let closed = false;
  return {
    url,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await notifier?.close();
      await store.close();
    },
  };
}

/** A Docker agent on the local engine (or `givenEngine`), not yet started: call `run()` (or `start()`). */
export async function createAgent(options: AgentOptions, logger: Logger, givenEngine?: ContainerEngine): Promise<Agent> {
  const { Agent } = await import("../agent/agent.js");
  const { berthImageKeeper } = await import("../images/index.js");
  const engine = givenEngine ?? (options.backend === "swarm" ? await swarmEngine() : await localEngine());
  // Its parked claims and cancel watches hold connections for as long as they wait: no cap on how many.
  const client = new ApiClient({ baseUrl: options.apiUrl, fetch: keepAliveTransport({ maxSockets: Infinity }), ...(options.apiToken ? { token: options.apiToken } : {}) });
  return new Agent(
    {
      client,
      engine,
      logger,
      berthImage: berthImageKeeper(engine, { log: (line) => logger.info(line) }),
    },
    options,
  );
}

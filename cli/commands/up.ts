import { compileAgentOptions, compileServerOptions } from "../../config/compile.js";
import { clientToken, isLoopbackHost } from "../../config/tokens.js";
import { upRunNetwork } from "../up-network.js";
import { defined, resolveConfig, type GlobalOptions } from "../context.js";
import { createAgent, startServer } from "../daemons.js";
import { localEngine } from "../engine.js";
import { onShutdown } from "../process.js";
import { createRootLogger } from "../root-logger.js";

/** The quickstart: server and one agent in one process. The agent talks to the server it started. */
export async function upCommand(
  global: GlobalOptions,
  opts: { host?: string; port?: string; db?: string; label?: string[]; concurrency?: string },
): Promise<void> {
  const config = resolveConfig(global, {
    server: defined({ host: opts.host, port: opts.port, db: opts.db }),
    agent: defined({ labels: opts.label, concurrency: opts.concurrency ?? "2" }),
  });
  const logger = createRootLogger({ level: config.logLevel, format: process.env.BERTH_LOG_FORMAT });
  const { ensureBerthImage } = await import("../../images/index.js");
  const engine = await localEngine();
  await engine.ping();
  // Built before the agent starts, so the first flow run does not wait for it.
  const image = await ensureBerthImage(engine, { log: (line) => logger.info(line) });
  logger.info({ image }, "berth image ready");
  const server = await startServer(compileServerOptions(config), logger.child({ component: "server" }));
  // Runs reach the server on a network of their own rather than the host's, unless told otherwise.
  const runNetwork =
    config.agent.network === undefined && config.agent.containerApiUrl === undefined && isLoopbackHost(config.server.host)
      ? await upRunNetwork(engine, Number(new URL(server.url).port), logger)
      : undefined;
  const agentConfig = {
    ...config,
    apiUrl: server.url,
    agent: { ...config.agent, ...(runNetwork ? { network: runNetwork.network, containerApiUrl: runNetwork.apiUrl } : {}) },
  };
  const agent = await createAgent(compileAgentOptions({ ...agentConfig, apiToken: clientToken(agentConfig) }), logger.child({ component: "agent" }), engine);
  onShutdown({
    graceful: async () => {
      await agent.stop();
      await runNetwork?.close();
      await server.close();
    },
    forceful: () => agent.kill(),
  });
  await agent.start();
  logger.info(`berth is up at ${server.url}: register a flow with \`berth register FILE\`, then \`berth run NAME --watch\``);
  await agent.run();
}

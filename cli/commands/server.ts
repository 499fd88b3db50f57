import { compileServerOptions } from "../../config/compile.js";
import { createRootLogger } from "../root-logger.js";
import { defined, resolveConfig, type GlobalOptions } from "../context.js";
import { startServer } from "../daemons.js";
import { onShutdown } from "../process.js";

export async function serverCommand(global: GlobalOptions, opts: { host?: string; port?: string; db?: string; insecure?: boolean }): Promise<void> {
  const config = resolveConfig(global, { server: defined({ host: opts.host, port: opts.port, db: opts.db, insecure: opts.insecure }) });
  const logger = createRootLogger({ level: config.logLevel, format: process.env.BERTH_LOG_FORMAT, name: "server" });
  const server = await startServer(compileServerOptions(config), logger);
  onShutdown({
    graceful: async (signal) => {
      logger.info({ signal }, "server shutting down");
      await server.close();
    },
  });
}

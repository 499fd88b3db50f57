import { createRootLogger } from "../root-logger.js";
import { defined, resolveConfig, type GlobalOptions } from "../context.js";
import { startAgent } from "../daemons.js";
import { parseEnvPairs } from "../format.js";
import { onShutdown } from "../process.js";

export interface AgentFlags {
  api?: string;
  label?: string[];
  name?: string;
  concurrency?: string;
  network?: string;
  pullPolicy?: string;
  env?: string[];
  containerApi?: string;
  keepContainers?: boolean;
}

export async function agentCommand(global: GlobalOptions, opts: AgentFlags): Promise<void> {
  const config = resolveConfig(global, {
    ...defined({ apiUrl: opts.api }),
    agent: defined({
      labels: opts.label,
      name: opts.name,
      concurrency: opts.concurrency,
      network: opts.network,
      pullPolicy: opts.pullPolicy,
      env: opts.env ? parseEnvPairs(opts.env) : undefined,
      containerApiUrl: opts.containerApi,
      keepContainers: opts.keepContainers,
    }),
  });
  const logger = createRootLogger({ level: config.logLevel, format: process.env.BERTH_LOG_FORMAT, name: "agent" });
  const agent = await startAgent(config, logger);
  // The agent's own timers are unref'd (a library must not hold a process open), and while it waits for the
  // Docker engine it has no request in flight either: without this handle the process would simply end.
  const keepAlive = setInterval(() => {}, 1 << 30);
  onShutdown({
    graceful: async () => {
      await agent.stop();
      clearInterval(keepAlive);
    },
    forceful: () => agent.kill(),
  });
}

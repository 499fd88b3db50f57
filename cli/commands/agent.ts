import { compileAgentOptions } from "../../config/compile.js";
import { clientToken } from "../../config/tokens.js";
import { defined, resolveConfig, type GlobalOptions } from "../context.js";
import { createAgent } from "../daemons.js";
import { parseEnvPairs } from "../format.js";
import { onShutdown } from "../process.js";
import { createRootLogger } from "../root-logger.js";

export interface AgentFlags {
  api?: string;
  label?: string[];
  name?: string;
  concurrency?: string;
  network?: string;
  backend?: string;
  pullPolicy?: string;
  buildOnPullFailure?: boolean;
  env?: string[];
  containerApi?: string;
  keepContainers?: boolean;
  allowLocalDir?: string[];
  memory?: string;
  cpus?: string;
  pidsLimit?: string;
  allowRoot?: boolean;
  allowImage?: string[];
  http?: string;
  warmPool?: string;
}

export async function agentCommand(global: GlobalOptions, opts: AgentFlags): Promise<void> {
  const config = resolveConfig(global, {
    ...defined({ apiUrl: opts.api }),
    agent: defined({
      labels: opts.label,
      name: opts.name,
      concurrency: opts.concurrency,
      network: opts.network,
      backend: opts.backend,
      pullPolicy: opts.pullPolicy,
      buildOnPullFailure: opts.buildOnPullFailure,
      env: opts.env ? parseEnvPairs(opts.env) : undefined,
      containerApiUrl: opts.containerApi,
      keepContainers: opts.keepContainers,
      allowLocalDirs: opts.allowLocalDir,
      memory: opts.memory,
      cpus: opts.cpus,
      pidsLimit: opts.pidsLimit,
      allowRoot: opts.allowRoot,
      allowImages: opts.allowImage,
      http: opts.http,
      warmPool: opts.warmPool,
    }),
  });
  const logger = createRootLogger({ level: config.logLevel, format: process.env.BERTH_LOG_FORMAT, name: "agent" });
  // The token the CLI would send: the configured one, its file's, or a local server's (config/tokens.ts).
  const agent = await createAgent(compileAgentOptions({ ...config, apiToken: clientToken(config) }), logger);
  onShutdown({ graceful: () => agent.stop(), forceful: () => agent.kill() });
  await agent.run();
}

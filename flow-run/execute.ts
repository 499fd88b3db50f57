/**
 * `berth execute flow-run`: the entry point of every flow-run container.
 *
 * Loads the run and its flow's storage description from the server, loads the flow from storage (so a
 * custom environment class that exists only in storage is the one that runs), then calls
 * `environment.setup(storage)` and `environment.execute(storage, flowLocation)`. The default flow runner is
 * swapped for one that reports to the server. A flow that cannot be loaded ends Failed, saying why.
 */
import { ApiClient } from "../client/api-client.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import { getDefaultFlowRunnerClass, setDefaultFlowRunnerClass } from "../flows/defaults.js";
import { storageFromSpec } from "../storage/from-spec.js";
import { captureConsole } from "./console-capture.js";
import { RunReporter } from "./reporter.js";
import { RunContext } from "./run-context.js";
import { serverFlowRunnerClass } from "./server-runner.js";

export interface ExecuteOptions {
  apiUrl: string;
  apiToken?: string | undefined;
  flowRunId: string;
  /** The attempt's lease epoch, set by the agent (BERTH_FLOW_RUN_EPOCH). */
  epoch?: number | undefined;
  /** How long state writes wait out an unreachable server (default 5 min). */
  serverDownForMs?: number;
  /** How often the run reports it is alive (default 10 s). */
  heartbeatIntervalMs?: number;
  /** Aborted on SIGTERM: the run ends Cancelled. */
  signal?: AbortSignal;
  /** Diagnostics for the container's own output. */
  write?: (line: string) => void;
}

/** Exit code of an attempt that stopped because another attempt owns its run. */
export const EXIT_SUPERSEDED = 75;

/** Runs the flow run; resolves with the process exit code (0 only on Success). */
export async function executeFlowRun(options: ExecuteOptions): Promise<number> {
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const client = new ApiClient({ baseUrl: options.apiUrl, ...(options.apiToken ? { token: options.apiToken } : {}) });
  const flowRun = await client.getFlowRun(options.flowRunId);
  let context: RunContext | undefined;
  const reporter = new RunReporter({ client, flowRunId: flowRun.id, warn: write, epoch: options.epoch, onFenced: () => context?.fence() });
  context = new RunContext(client, reporter, flowRun, options.epoch, options.serverDownForMs ?? 300_000);
  const onAbort = () => context?.cancel("the container received SIGTERM");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const restoreConsole = captureConsole(reporter);
  const heartbeat = startHeartbeat(context, options.heartbeatIntervalMs ?? 10_000, write);
  const previousRunner = getDefaultFlowRunnerClass();
  setDefaultFlowRunnerClass(serverFlowRunnerClass(context));
  try {
    await runInEnvironment(context);
  } catch (err) {
    if (context.finalState === undefined && !context.fenced) {
      const message = isBerthError(err) ? err.message : `Unexpected error raised during flow run: ${describeError(err)}`;
      reporter.log("error", message);
      await reporter.flush();
      await context.setState("Failed", message).catch((e) => write(`berth: could not record the failure: ${describeError(e)}`));
    }
  } finally {
    setDefaultFlowRunnerClass(previousRunner);
    clearInterval(heartbeat);
    restoreConsole();
    options.signal?.removeEventListener("abort", onAbort);
    await reporter.flush();
    reporter.close();
  }
  if (context.fenced) {
    write(`berth: flow run ${flowRun.id} belongs to another attempt now (this was epoch ${options.epoch}); stopped`);
    return EXIT_SUPERSEDED;
  }
  if (context.finalState === undefined) {
    const message = "the environment's execute() returned without running the flow";
    await context.setState("Failed", message).catch((e) => write(`berth: could not record the failure: ${describeError(e)}`));
  }
  return context.finalState === "Success" ? 0 : 1;
}

async function runInEnvironment(context: RunContext): Promise<void> {
  const flowSpec = await context.client.getFlow(context.flowRun.flowId);
  const { storage, locate } = storageFromSpec(flowSpec.storage, { inContainer: true });
  const location = locate(flowSpec.name);
  if (!location) {
    throw new BerthError("BERTH_E_FLOW_FILE", `the storage of flow "${flowSpec.name}" does not list it (flows: ${Object.keys(flowSpec.storage.flows).join(", ") || "none"})`);
  }
  let flow;
  try {
    flow = await storage.getFlow(location);
  } catch (err) {
    throw new BerthError("BERTH_E_FLOW_FILE", `could not load flow "${flowSpec.name}" from storage at ${location}: ${describeError(err)}`, { cause: err });
  }
  const environment = flow.environment;
  await environment.setup(storage);
  await environment.execute(storage, location);
}

function startHeartbeat(context: RunContext, intervalMs: number, write: (line: string) => void): NodeJS.Timeout {
  const timer = setInterval(() => {
    context.client
      .heartbeatFlowRun(context.id, context.epoch)
      .then((reply) => {
        if (reply.state === "Cancelling") context.cancel("the run was cancelled");
      })
      .catch((err: unknown) => {
        if (isBerthError(err, "BERTH_E_STALE_LEASE")) context.fence();
        else write(`berth: heartbeat failed: ${describeError(err)}`);
      });
  }, intervalMs);
  timer.unref();
  return timer;
}

/**
 * `berth execute flow-run`: the entry point of every flow-run container.
 *
 * Takes the run and its flow's storage from its agent (through its environment; from the server when the
 * agent could not give them), loads the flow from storage (so a custom environment class that exists only
 * in storage is the one that runs), then calls
 * `environment.setup(storage)` and `environment.execute(storage, flowLocation)`. The default flow runner is
 * swapped for one that reports to the server. A flow that cannot be loaded ends Failed, saying why.
 */
import { RunClient } from "../client/run-client.js";
import { whileServerDown } from "../client/retry.js";
import { keepAliveTransport } from "../client/transport.js";
import type { Transport } from "../client/http.js";
import type { FlowRunSettings, RunDescription } from "../config/flow-run-env.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import { EXIT_SUPERSEDED } from "../wire/constants.js";
import { getDefaultFlowRunnerClass, setDefaultFlowRunnerClass } from "../flows/defaults.js";
import { setSecretResolver } from "../flows/task.js";
import { storageFromSpec } from "../storage/from-spec.js";
import { captureConsole } from "./console-capture.js";
import { RunReporter } from "./reporter.js";
import { RunContext } from "./run-context.js";
import { serverFlowRunnerClass } from "./server-runner.js";

export interface ExecuteOptions {
  /** What the agent told this container (config/compile.ts, read from its environment). */
  settings: FlowRunSettings;
  /** Aborted on SIGTERM: the run ends Cancelled. */
  signal?: AbortSignal;
  /** Diagnostics for the container's own output. */
  write?: (line: string) => void;
  /** The HTTP transport to the server (a warm container's, with its connection open); default: a new one. */
  transport?: Transport;
}

/** Exit code of an attempt that stopped because another attempt owns its run (the agent knows it too). */
export { EXIT_SUPERSEDED };

/** Runs the flow run; resolves with the process exit code (0 only on Success). */
export async function executeFlowRun(options: ExecuteOptions): Promise<number> {
  const { settings } = options;
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const client = new RunClient({ baseUrl: settings.apiUrl, fetch: options.transport ?? keepAliveTransport(), ...(settings.apiToken ? { token: settings.apiToken } : {}) });
  const waitOut = { forMs: settings.serverDownForMs, onRetry: (err: unknown) => write(`berth: ${describeError(err)}; retrying`) };
  const run = settings.run ?? (await describeRun(client, settings.flowRunId, waitOut));
  const flowRun = { id: settings.flowRunId, version: run.version, parameters: run.parameters };
  let context: RunContext | undefined;
  const reporter = new RunReporter({ client, flowRunId: flowRun.id, warn: write, epoch: settings.epoch, onFenced: () => context?.fence() });
  context = new RunContext(client, reporter, flowRun, settings.epoch, settings.serverDownForMs);
  const onAbort = () => context?.cancel("the container received SIGTERM");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const restoreConsole = captureConsole(reporter);
  const heartbeat = startHeartbeat(context, settings.heartbeatIntervalMs, write);
  const previousRunner = getDefaultFlowRunnerClass();
  setDefaultFlowRunnerClass(serverFlowRunnerClass(context));
  // Secret tasks read their values from the server with this run's token, when they run: never from the
  // environment, so no value is in the container's configuration.
  setSecretResolver(async (name, signal) => {
    const values = await whileServerDown(() => client.runSecrets(flowRun.id, [name], signal), { forMs: settings.serverDownForMs, signal });
    const value = Object.hasOwn(values, name) ? values[name] : undefined;
    if (typeof value !== "string") throw new BerthError("BERTH_E_NOT_FOUND", `the server sent no value for secret ${name}`);
    return value;
  });
  try {
    await runInEnvironment(run);
  } catch (err) {
    if (context.finalState === undefined && !context.fenced) {
      const message = isBerthError(err) ? err.message : `Unexpected error raised during flow run: ${describeError(err)}`;
      reporter.log("error", message);
      // The line travels with the state (or goes before it).
      await context.setState("Failed", message).catch((e) => write(`berth: could not record the failure: ${describeError(e)}`));
    }
  } finally {
    setDefaultFlowRunnerClass(previousRunner);
    setSecretResolver(undefined);
    clearInterval(heartbeat);
    restoreConsole();
    options.signal?.removeEventListener("abort", onAbort);
    // Every line the flow printed reaches the server, even across a server restart (within serverDownFor).
    await reporter.drain(settings.serverDownForMs);
    reporter.close();
  }
  if (context.fenced) {
    write(`berth: flow run ${flowRun.id} belongs to another attempt now (this was epoch ${settings.epoch}); stopped`);
    return EXIT_SUPERSEDED;
  }
  if (context.finalState === undefined) {
    const message = "the environment's execute() returned without running the flow";
    await context.setState("Failed", message).catch((e) => write(`berth: could not record the failure: ${describeError(e)}`));
  }
  return context.finalState === "Success" ? 0 : 1;
}

/** The run and its flow's storage, from the server: for a container whose agent did not give them. */
async function describeRun(client: RunClient, flowRunId: string, waitOut: { forMs: number; onRetry: (err: unknown) => void }): Promise<RunDescription> {
  const flowRun = await whileServerDown(() => client.getFlowRun(flowRunId), waitOut);
  const flow = await whileServerDown(() => client.getFlow(flowRun.flowId), waitOut);
  return { flowId: flow.id, flowName: flow.name, version: flowRun.version, parameters: flowRun.parameters, storage: flow.storage };
}

async function runInEnvironment(run: RunDescription): Promise<void> {
  const { storage, locate } = storageFromSpec(run.storage, { inContainer: true });
  const location = locate(run.flowName);
  if (!location) {
    throw new BerthError("BERTH_E_FLOW_FILE", `the storage of flow "${run.flowName}" does not list it (flows: ${Object.keys(run.storage.flows).join(", ") || "none"})`);
  }
  let flow;
  try {
    flow = await storage.getFlow(location);
  } catch (err) {
    throw new BerthError("BERTH_E_FLOW_FILE", `could not load flow "${run.flowName}" from storage at ${location}: ${describeError(err)}`, { cause: err });
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

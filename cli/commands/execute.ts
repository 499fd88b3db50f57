import path from "node:path";
import { getDefaultFlowRunnerClass, setDefaultFlowRunnerClass } from "../../flows/defaults.js";
import type { FlowRunner, RunOptions } from "../../flows/runner.js";
import type { FlowState } from "../../flows/state.js";
import { storageFromSpec } from "../../storage/from-spec.js";
import { parseParams } from "../format.js";

/** Runs a bundled flow module in this process, with no server, through its environment. */
export async function executeFlowFileCommand(location: string, opts: { param?: string[] }): Promise<void> {
  const absolute = path.resolve(location);
  const parameters = parseParams(opts.param ?? []);
  const { storage } = storageFromSpec({ type: "local", directory: path.dirname(absolute), flows: {} }, { inContainer: false });
  const flow = await storage.getFlow(absolute);
  let final: FlowState | undefined;
  // As PID 1 of a container, Node ignores SIGTERM unless it listens: `docker stop` would wait out its grace
  // period. The first signal cancels the flow (its tasks see their signal), a second one ends the process.
  const stopping = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy !== undefined) process.exit(signal === "SIGINT" ? 130 : 143);
    stoppedBy = signal;
    process.stderr.write(`berth execute: ${signal}: cancelling the flow (send it again to stop at once)\n`);
    stopping.abort();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const Base = getDefaultFlowRunnerClass();
  class RecordingRunner extends Base {
    override async run(options: RunOptions = {}): Promise<FlowState> {
      const signal = options.signal ? AbortSignal.any([options.signal, stopping.signal]) : stopping.signal;
      final = await super.run({ ...options, signal, parameters: { ...parameters, ...(options.parameters ?? {}) } });
      return final;
    }
  }
  setDefaultFlowRunnerClass(RecordingRunner as typeof FlowRunner);
  try {
    await flow.environment.setup(storage);
    await flow.environment.execute(storage, absolute);
  } finally {
    setDefaultFlowRunnerClass(Base);
  }
  const state = final as FlowState | undefined;
  process.stdout.write(`flow "${flow.name}": ${state?.name ?? "not run"}${state?.message ? ` (${state.message})` : ""}\n`);
  process.exit(stoppedBy !== undefined ? (stoppedBy === "SIGINT" ? 130 : 143) : state?.name === "Success" ? 0 : 1);
}

export async function healthcheckCommand(locations: string[]): Promise<void> {
  // Loaded here, not with the module: it checks with the wire schema (zod), which `execute flow-file` does not need.
  const { healthcheck, reportHealthcheck } = await import("../../storage/healthcheck.js");
  const results = await healthcheck(locations.map((l) => path.resolve(l)));
  const code = reportHealthcheck(results, (line) => process.stdout.write(`${line}\n`));
  process.exit(code);
}

import path from "node:path";
import { readFlowRunSettings } from "../../config/compile.js";
import { getDefaultFlowRunnerClass, setDefaultFlowRunnerClass } from "../../flows/defaults.js";
import type { FlowRunner, RunOptions } from "../../flows/runner.js";
import type { FlowState } from "../../flows/state.js";
import { healthcheck, reportHealthcheck } from "../../storage/healthcheck.js";
import { storageFromSpec } from "../../storage/from-spec.js";
import { parseParams } from "../format.js";

export async function executeFlowRunCommand(): Promise<void> {
  const settings = readFlowRunSettings(process.env);
  const { executeFlowRun } = await import("../../flow-run/execute.js");
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  const code = await executeFlowRun({ settings, signal: controller.signal });
  process.exit(code);
}

/** Runs a bundled flow module in this process, with no server, through its environment. */
export async function executeFlowFileCommand(location: string, opts: { param?: string[] }): Promise<void> {
  const absolute = path.resolve(location);
  const parameters = parseParams(opts.param ?? []);
  const { storage } = storageFromSpec({ type: "local", directory: path.dirname(absolute), flows: {} }, { inContainer: false });
  const flow = await storage.getFlow(absolute);
  let final: FlowState | undefined;
  const Base = getDefaultFlowRunnerClass();
  class RecordingRunner extends Base {
    override async run(options: RunOptions = {}): Promise<FlowState> {
      final = await super.run({ ...options, parameters: { ...parameters, ...(options.parameters ?? {}) } });
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
  process.exit(state?.name === "Success" ? 0 : 1);
}

export async function healthcheckCommand(locations: string[]): Promise<void> {
  const results = await healthcheck(locations.map((l) => path.resolve(l)));
  const code = reportHealthcheck(results, (line) => process.stdout.write(`${line}\n`));
  process.exit(code);
}

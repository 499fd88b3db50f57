/**
 * `berth execute flow-run`: the process every flow-run container runs (cli/main.ts starts it without the
 * command-line parser). It loads what a run needs and nothing else: no zod, no commander, no undici.
 */
import { readFlowRunSettings } from "../config/flow-run-env.js";
import { describeError, isBerthError } from "../wire/errors.js";
import { executeFlowRun } from "./execute.js";

export async function main(): Promise<never> {
  let code: number;
  try {
    const settings = readFlowRunSettings(process.env);
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    code = await executeFlowRun({ settings, signal: controller.signal });
  } catch (err) {
    const detail = isBerthError(err) || !process.env.BERTH_DEBUG ? "" : `\n${(err as Error)?.stack ?? ""}`;
    process.stderr.write(`berth: ${isBerthError(err) ? "" : "unexpected error: "}${describeError(err)}${detail}\n`);
    code = 1;
  }
  process.exit(code);
}

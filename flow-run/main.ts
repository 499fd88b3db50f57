/**
 * `berth execute flow-run`: the process every flow-run container runs (cli/main.ts starts it without the
 * command-line parser). It loads what a run needs and nothing else: no zod, no commander, no undici.
 *
 * A warm container (agent/warm-pool.ts) starts it before there is a run: with BERTH_WARM_TTL_MS set, it
 * loads berth, then waits on its standard input for the one run it will serve (the run's variables, as JSON
 * on one line). It exits without running anything when its time to live passes or its input ends first.
 */
import { readFlowRunSettings, WARM_TTL_ENV } from "../config/flow-run-env.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import { executeFlowRun } from "./execute.js";

export async function main(): Promise<never> {
  let code: number;
  try {
    const warmTtl = process.env[WARM_TTL_ENV];
    if (warmTtl) {
      const assignment = await waitForRun(Number(warmTtl));
      if (assignment === undefined) process.exit(0);
      // Into the process's environment, as a cold container has them: flows may read BERTH_FLOW_RUN_ID and
      // BERTH_FLOW_RUN_EPOCH there.
      Object.assign(process.env, assignment);
    }
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

/**
 * A warm container's wait: berth's SDK is loaded meanwhile (what the flow's module imports), then the first
 * line on standard input is the run's variables. Undefined when the input ends empty, when the time to live
 * passes, or on SIGTERM (the agent shrinking its pool).
 */
async function waitForRun(ttlMs: number): Promise<Record<string, string> | undefined> {
  // What berth's entry point (index.ts, which flows import as "berth") loads; that module itself is only
  // names, so loading these is what counts, and this folder may not import the root.
  const preload = Promise.all([
    import("../flows/flow.js"),
    import("../flows/builder.js"),
    import("../flows/executors.js"),
    import("../flows/schedules.js"),
    import("../flows/inputs.js"),
    import("../environments/index.js"),
    import("../storage/index.js"),
  ]);
  const line = await new Promise<string | undefined>((resolve) => {
    let text = "";
    const done = (value: string | undefined) => {
      clearTimeout(timer);
      process.stdin.pause();
      process.removeListener("SIGTERM", onTerm);
      resolve(value);
    };
    const onTerm = () => done(undefined);
    process.once("SIGTERM", onTerm);
    const timer = setTimeout(() => done(undefined), Number.isFinite(ttlMs) && ttlMs > 0 ? ttlMs : 0);
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk: string) => {
      text += chunk;
      const end = text.indexOf("\n");
      if (end >= 0) done(text.slice(0, end));
    });
    process.stdin.on("end", () => done(text.trim() === "" ? undefined : text));
  });
  await preload;
  if (line === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (err) {
    throw new BerthError("BERTH_E_CONFIG", `a warm container's run must come as one line of JSON on its standard input: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Object.values(parsed).some((v) => typeof v !== "string")) {
    throw new BerthError("BERTH_E_CONFIG", "a warm container's run must come as a JSON object of variables (strings)");
  }
  return parsed as Record<string, string>;
}

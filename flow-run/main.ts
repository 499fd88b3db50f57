/**
 * `berth execute flow-run`: the process every flow-run container runs (cli/main.ts starts it without the
 * command-line parser). It loads what a run needs and nothing else: no zod, no commander, no undici.
 *
 * A warm container (agent/warm-pool.ts) starts it before there is a run: with BERTH_WARM_TTL_MS set, it
 * loads berth, then waits on its standard input for the one run it will serve (the run's variables, as JSON
 * on one line). It exits without running anything when its time to live passes or its input ends first.
 * While it waits it readies what the run's first moments need (warmUp): no run's code, no run's data.
 */
import { keepAliveTransport } from "../client/transport.js";
import type { Transport } from "../client/http.js";
import { FLOW_RUN_ENV, readFlowRunSettings, WARM_TTL_ENV } from "../config/flow-run-env.js";
import { RunClient } from "../client/run-client.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import { executeFlowRun } from "./execute.js";

export async function main(): Promise<never> {
  let code: number;
  try {
    const warmTtl = process.env[WARM_TTL_ENV];
    const transport = keepAliveTransport();
    if (warmTtl) {
      const stopWarming = warmUp(transport, process.env[FLOW_RUN_ENV.apiUrl]);
      const assignment = await waitForRun(Number(warmTtl));
      stopWarming();
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
    code = await executeFlowRun({ settings, signal: controller.signal, transport });
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
  // What berth's entry point (index.ts, which flows import as "berth") loads, then the entry point itself by
  // that name (this folder may not import the root by path): a flow's `import "berth"` then finds it loaded,
  // as the same module, rather than resolving and loading a dozen more modules on the run's clock.
  const preload = Promise.all([
    import("../flows/flow.js"),
    import("../flows/builder.js"),
    import("../flows/executors.js"),
    import("../flows/schedules.js"),
    import("../flows/inputs.js"),
    import("../environments/index.js"),
    import("../storage/index.js"),
  ])
    .then(() => import(BERTH_PACKAGE).catch(() => undefined))
    // berth's code is compiled whole by now (cli/main.ts); the run's flow module compiles lazily, as usual.
    .finally(() => import("node:v8").then((v8) => v8.setFlagsFromString("--lazy"), () => undefined));
  // Its failure is the run's to report (below), not an unhandled rejection while the container waits.
  preload.catch(() => undefined);
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

/** Nothing but the reading of its arguments. */
function touch(..._values: unknown[]): void {}

/** berth's package name, which resolves to its entry point from inside the package too (package.json "exports"). */
const BERTH_PACKAGE: string = "berth";

/** How often a waiting warm container asks its server for /health: well within the server's keep-alive (72 s). */
const KEEP_WARM_MS = 30_000;

/**
 * What a warm container does while it waits, so that its run starts sooner: it opens its connection to the
 * server (asking /health, again now and then so that the server keeps it open), and defines a throwaway flow,
 * which compiles what loading the run's flow will call (defining tasks parses their functions' parameters),
 * and makes the console's streams. Nothing of it is anyone's run, and nothing is printed. Stops with the
 * returned function.
 */
function warmUp(transport: Transport, apiUrl: string | undefined): () => void {
  void Promise.all([import("../flows/flow.js"), import("../flows/task.js"), import("node:module")])
    .then(([{ Flow }, { task }, { createRequire }]) => {
      new Flow("berth warm-up").addTask(task(({ value }: { value?: number }) => value ?? 0, { name: "warm-up" }));
      // Every flow module berth bundles begins so (storage/bundle.ts): Node.js loads what that needs once.
      createRequire(import.meta.url);
    })
    .catch(() => undefined);
  // Node.js makes the console's streams at their first use (about 1 ms): the run's console capture would.
  touch(process.stdout, process.stderr);
  let client: RunClient;
  try {
    client = new RunClient({ baseUrl: apiUrl ?? "", fetch: transport });
  } catch {
    return () => {};
  }
  // Through the client the run's requests take: its code is compiled by the time the run's first one goes.
  const ask = (): void => void client.health(AbortSignal.timeout(5_000)).catch(() => undefined);
  ask();
  const timer = setInterval(ask, KEEP_WARM_MS);
  timer.unref();
  return () => clearInterval(timer);
}

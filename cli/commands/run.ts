import type { ApiClient } from "../../client/api-client.js";
import { whileServerDown } from "../../client/retry.js";
import { BerthError, describeError } from "../../wire/errors.js";
import { FINAL_FLOW_RUN_STATES, type FlowRunCreate, type FlowRunStateEntry, type FlowRunView } from "../../wire/schema.js";
import { clientFor, defined, resolveConfig, type GlobalOptions } from "../context.js";
import { EXIT, type ExitCode } from "../exit.js";
import { Duration } from "../../config/schema.js";
import { formatPhases, outputSettled, parseParams } from "../format.js";
import { signalOnInterrupt } from "../process.js";
import { printLog } from "./inspect.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function runCommand(
  global: GlobalOptions,
  flow: string,
  opts: { api?: string; param?: string[]; label?: string[]; flowVersion?: string; idempotencyKey?: string; watch?: boolean; at?: string; in?: string },
): Promise<ExitCode> {
  const config = resolveConfig(global, defined({ apiUrl: opts.api }));
  const client = clientFor(config);
  const start = startOption(opts);
  const body: FlowRunCreate = {
    ...(UUID.test(flow) ? { flowId: flow } : { flowName: flow }),
    parameters: parseParams(opts.param ?? []),
    ...(opts.label ? { labels: opts.label } : {}),
    ...(opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {}),
    ...(start ? { scheduledStart: start.toISOString() } : {}),
  };
  if (opts.flowVersion !== undefined) {
    const version = Number(opts.flowVersion);
    if (!Number.isInteger(version) || version < 1) throw new BerthError("BERTH_E_USAGE", `--flow-version must be a positive whole number, not "${opts.flowVersion}"`);
    body.flowVersion = version;
  }
  const { flowRun, created } = await client.createFlowRun(body);
  const starts = Date.parse(flowRun.scheduledStart) > Date.now() ? `, starts ${flowRun.scheduledStart}` : "";
  process.stdout.write(
    `${created ? "created" : "found existing"} flow run ${flowRun.id} of "${flowRun.flowName}" v${flowRun.flowVersion} (labels: ${flowRun.labels.join(", ") || "none"}${starts})\n`,
  );
  if (!opts.watch) return EXIT.ok;
  const final = await watchFlowRun(client, flowRun, signalOnInterrupt(), config.serverDownFor);
  if (final.state === "Success") return EXIT.ok;
  process.stderr.write(`berth: flow run ${final.id} ended ${final.state}${final.stateMessage ? `: ${final.stateMessage.split("\n")[0]}` : ""}\n`);
  return EXIT.runNotSuccessful;
}

/** `--at ISO` or `--in 10m`: when the run may start; undefined for now. A time in the past is refused. */
function startOption(opts: { at?: string; in?: string }): Date | undefined {
  if (opts.at !== undefined && opts.in !== undefined) throw new BerthError("BERTH_E_USAGE", "give --at or --in, not both");
  if (opts.in !== undefined) {
    const parsed = Duration.safeParse(opts.in);
    // A bare number would be read as milliseconds: ask for the unit instead of guessing.
    if (!parsed.success || parsed.data <= 0 || /^\s*[\d.]+\s*$/.test(opts.in)) {
      throw new BerthError("BERTH_E_USAGE", `--in must be a duration to come, like 30s, 10m or 2h, not "${opts.in}"`);
    }
    return new Date(Date.now() + parsed.data);
  }
  if (opts.at === undefined) return undefined;
  const at = new Date(opts.at);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(opts.at) || Number.isNaN(at.getTime())) {
    // Without an offset the time would be read in this machine's zone, which the server may not share.
    throw new BerthError("BERTH_E_USAGE", `--at must be an ISO-8601 time with an offset or Z, like 2026-12-24T18:00:00Z or 2026-12-24T19:00:00+01:00, not "${opts.at}"`);
  }
  if (at.getTime() <= Date.now()) throw new BerthError("BERTH_E_USAGE", `--at ${opts.at} is in the past: give a time to come, or leave it out to start now`);
  return at;
}

function printState(entry: FlowRunStateEntry): void {
  process.stdout.write(`state: ${entry.state}${entry.message ? ` (${entry.message.split("\n")[0]})` : ""}\n`);
}

/**
 * Prints every state change and log line until the run ends; returns the final run. A server that goes away
 * meanwhile is waited for (up to `serverDownForMs`): the run goes on without us, and so does the watch once
 * the server is back.
 */
export async function watchFlowRun(client: ApiClient, initial: FlowRunView, signal: AbortSignal, serverDownForMs: number): Promise<FlowRunView> {
  let waiting = false;
  const call = <T>(fn: () => Promise<T>): Promise<T> =>
    whileServerDown(fn, {
      forMs: serverDownForMs,
      signal,
      onRetry: (err) => {
        if (waiting) return;
        waiting = true;
        process.stderr.write(`berth: lost the server (${describeError(err)}); waiting up to ${Math.round(serverDownForMs / 1000)} s for it to return\n`);
      },
    }).then((value) => {
      if (waiting) process.stderr.write("berth: the server is back\n");
      waiting = false;
      return value;
    });
  let run = initial;
  let after = 0;
  let statesShown = 0;
  let pickupShown = "";
  let finalSeenAt: number | undefined;
  for (;;) {
    signal.throwIfAborted();
    const final = FINAL_FLOW_RUN_STATES.includes(run.state);
    if (final) finalSeenAt ??= Date.now();
    const page = await call(() => client.getLogs(run.id, { after, limit: 1000, waitMs: final ? 0 : 1000 }, signal));
    // The state history is complete even when a run moves faster than we poll; merge it with the logs by time.
    const states = await call(() => client.listFlowRunStates(run.id, signal));
    const events = [
      ...states.slice(statesShown).map((e) => ({ at: e.at, print: () => printState(e) })),
      ...page.logs.map((l) => ({ at: l.at, print: () => printLog(l) })),
    ].sort((a, b) => a.at.localeCompare(b.at));
    for (const event of events) event.print();
    statesShown = states.length;
    after = page.next;
    run = await call(() => client.getFlowRun(run.id, signal));
    if (run.pickup && run.pickup !== pickupShown) {
      pickupShown = run.pickup;
      process.stdout.write(`waiting for an agent: ${run.pickup}\n`);
    }
    if (final && page.logs.length === 0) {
      // The agent may still be sending the last of the container's output: until it says it is done.
      if (outputSettled(run, finalSeenAt!)) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  if (run.stateMessage && run.state !== "Success" && run.stateMessage.includes("\n")) process.stdout.write(`${run.stateMessage}\n`);
  const taskRuns = await call(() => client.listTaskRuns(run.id, signal));
  if (taskRuns.length > 0) {
    process.stdout.write(`tasks: ${taskRuns.map((t) => `${t.taskSlug}=${t.state}`).join(", ")}\n`);
  }
  const phases = run.phases && formatPhases(run.phases);
  if (phases) process.stdout.write(`phases: ${phases}\n`);
  process.stdout.write(`flow run ${run.id}: ${run.state}\n`);
  return run;
}

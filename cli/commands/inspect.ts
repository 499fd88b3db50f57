import { FINAL_FLOW_RUN_STATES, FlowRunStateName, type StoredLog } from "../../wire/schema.js";
import { BerthError } from "../../wire/errors.js";
import { apiClient, print, type ApiOpts, type GlobalOptions } from "../context.js";
import { outputSettled, shortTime, table } from "../format.js";
import { formatBytes } from "../../shared/sizes.js";
import { signalOnInterrupt } from "../process.js";


export async function flowsCommand(global: GlobalOptions, opts: ApiOpts): Promise<void> {
  const api = apiClient(global, opts);
  const [{ flows }, { schedules }] = await Promise.all([api.listFlows(), api.listSchedules()]);
  if (opts.json) return print(flows);
  if (flows.length === 0) return print("no flows registered yet: berth register FILE");
  // The scheduler follows the newest version's schedule: show it on that version's row.
  const scheduleOf = new Map(schedules.map((s) => [`${s.flowName}\0${s.flowVersion}`, s]));
  print(
    table(
      ["NAME", "VERSION", "ID", "LABELS", "ENVIRONMENT", "STORAGE", "SCHEDULE", "NEXT RUN", "REGISTERED"],
      flows.map((f) => {
        const schedule = scheduleOf.get(`${f.name}\0${f.version}`);
        const next = schedule?.clocks.map((c) => c.next).filter((n) => n !== null).sort()[0];
        return [
          f.name,
          String(f.version),
          f.id,
          f.labels.join(",") || "-",
          f.environment.type === "custom" ? `${f.environment.className} (custom)` : f.environment.className,
          f.storage.type === "docker" ? f.storage.image : f.storage.directory,
          schedule ? `${schedule.clocks.map((c) => c.description).join(" + ")}${schedule.paused ? " (paused)" : ""}` : "-",
          next ? shortTime(next) : "-",
          shortTime(f.createdAt),
        ];
      }),
    ),
  );
}

export async function runsCommand(global: GlobalOptions, opts: ApiOpts & { flow?: string; state?: string; limit?: string }): Promise<void> {
  let state: FlowRunStateName | undefined;
  if (opts.state !== undefined) {
    const parsed = FlowRunStateName.safeParse(opts.state);
    if (!parsed.success) throw new BerthError("BERTH_E_USAGE", `--state must be one of ${FlowRunStateName.options.join(", ")}`);
    state = parsed.data;
  }
  const limit = opts.limit === undefined ? 50 : Number(opts.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new BerthError("BERTH_E_USAGE", `--limit must be a positive whole number`);
  const { flowRuns } = await apiClient(global, opts).listFlowRuns({ flowName: opts.flow, state, limit });
  if (opts.json) return print(flowRuns);
  if (flowRuns.length === 0) return print("no flow runs");
  print(
    table(
      ["ID", "FLOW", "STATE", "LABELS", "CREATED", "STARTS", "MESSAGE"],
      flowRuns.map((r) => [
        r.id,
        `${r.flowName} v${r.flowVersion}`,
        r.state,
        r.labels.join(",") || "-",
        shortTime(r.createdAt),
        r.scheduledStart === r.createdAt ? "-" : shortTime(r.scheduledStart),
        (r.pickup ?? r.stateMessage ?? "").split("\n")[0] ?? "",
      ]),
    ),
  );
}

export async function agentsCommand(global: GlobalOptions, opts: ApiOpts): Promise<void> {
  const { agents } = await apiClient(global, opts).listAgents();
  if (opts.json) return print(agents);
  if (agents.length === 0) return print("no agents have registered: start one with berth agent");
  print(
    table(
      ["NAME", "ID", "LABELS", "STATUS", "SLOTS", "DISK FREE", "HEALTH", "LAST HEARTBEAT"],
      agents.map((a) => [
        a.name,
        a.id,
        a.labels.join(",") || "-",
        a.waiting ? `${a.status} (idle)` : a.status,
        a.health ? `${a.health.slotsUsed}/${a.concurrency}` : `-/${a.concurrency}`,
        a.health?.diskFreeBytes != null ? formatBytes(a.health.diskFreeBytes) : "-",
        // What the agent last said; a lost or stopped agent's word is stale, its status says so.
        !a.health ? "-" : a.health.reasons.length === 0 ? "ok" : a.health.reasons.join("; "),
        shortTime(a.lastHeartbeatAt),
      ]),
    ),
  );
}

export function printLog(line: StoredLog): void {
  // A console line names its task; a line the agent collected from the container, its stream.
  const task = line.task ? ` [${line.task}]` : line.stream ? ` [${line.stream}]` : "";
  process.stdout.write(`${shortTime(line.at)} ${line.level.padEnd(5)}${task} ${line.message}\n`);
}

export async function logsCommand(global: GlobalOptions, runId: string, opts: ApiOpts & { follow?: boolean }): Promise<void> {
  const api = apiClient(global, opts);
  const signal = signalOnInterrupt();
  let after = 0;
  let finalSeenAt: number | undefined;
  for (;;) {
    const run = opts.follow ? await api.getFlowRun(runId, signal) : undefined;
    const final = !run || FINAL_FLOW_RUN_STATES.includes(run.state);
    if (final) finalSeenAt ??= Date.now();
    const page = await api.getLogs(runId, { after, limit: 1000, waitMs: final ? 0 : 5000 }, signal);
    for (const line of page.logs) printLog(line);
    after = page.next;
    if (!opts.follow && page.logs.length < 1000) break;
    if (final && page.logs.length < 1000) {
      // Following: the agent may still be sending the last of the container's output.
      if (!run || outputSettled(run, finalSeenAt!)) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

export async function cancelCommand(global: GlobalOptions, runId: string, opts: ApiOpts): Promise<void> {
  const run = await apiClient(global, opts).cancelFlowRun(runId);
  print(`flow run ${run.id}: ${run.state}`);
}

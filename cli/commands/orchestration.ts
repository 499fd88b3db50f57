/** `berth schedule ...` and `berth concurrency ...`: what the scheduler and the limits are doing, and changing them. */
import { BerthError } from "../../wire/errors.js";
import type { ScheduleView } from "../../wire/schema.js";
import { apiClient, print, type ApiOpts, type GlobalOptions } from "../context.js";
import { shortTime, table } from "../format.js";


export async function scheduleListCommand(global: GlobalOptions, opts: ApiOpts): Promise<void> {
  const { schedules } = await apiClient(global, opts).listSchedules();
  if (opts.json) return print(schedules);
  if (schedules.length === 0) return print("no flow has a schedule: give a Flow `schedule: new CronSchedule(...)` and register it");
  print(
    table(
      ["FLOW", "VERSION", "STATE", "CLOCK", "NEXT", "CATCH UP"],
      schedules.flatMap((s) =>
        s.clocks.map((clock, i) => [
          i === 0 ? s.flowName : "",
          i === 0 ? String(s.flowVersion) : "",
          i === 0 ? (s.paused ? "paused" : "active") : "",
          clock.description,
          clock.next ? shortTime(clock.next) : "-",
          i === 0 ? s.catchUp : "",
        ]),
      ),
    ),
  );
}

export async function scheduleShowCommand(global: GlobalOptions, flow: string, opts: ApiOpts & { ticks?: string }): Promise<void> {
  let ticks: number | undefined;
  if (opts.ticks !== undefined) {
    ticks = Number(opts.ticks);
    if (!/^\d+$/.test(opts.ticks.trim()) || ticks > 1_000) throw new BerthError("BERTH_E_USAGE", `--ticks must be a whole number from 0 to 1000, not "${opts.ticks}"`);
  }
  const view = await apiClient(global, opts).getSchedule(flow, ticks === undefined ? {} : { ticks });
  if (opts.json) return print(view);
  printSchedule(view);
}

export async function schedulePauseCommand(global: GlobalOptions, flow: string, paused: boolean, opts: ApiOpts): Promise<void> {
  const view = await apiClient(global, opts).pauseSchedule(flow, paused);
  print(`schedule of "${view.flowName}" ${paused ? "paused: no runs are made until it is resumed" : "resumed"}`);
  if (!paused) printSchedule(view);
}

function printSchedule(view: ScheduleView): void {
  print(`flow "${view.flowName}" version ${view.flowVersion}: ${view.paused ? "paused" : "active"}, catchUp "${view.catchUp}"`);
  for (const clock of view.clocks) print(`  ${clock.description} (clock ${clock.key}): next ${clock.next ? shortTime(clock.next) : "none"}`);
  if (view.ticks.length === 0) return print("no slots handled yet");
  print(
    table(
      ["SLOT", "OUTCOME", "RUN", "CLOCK", "DECIDED"],
      view.ticks.map((t) => [shortTime(t.slot), t.outcome, t.flowRunId ?? "-", t.clock, shortTime(t.at)]),
    ),
  );
}

export async function concurrencyListCommand(global: GlobalOptions, opts: ApiOpts): Promise<void> {
  const limits = await apiClient(global, opts).listConcurrencyLimits();
  if (opts.json) return print(limits);
  if (limits.length === 0) return print("no concurrency limits: berth concurrency set LABEL N");
  print(
    table(
      ["LABEL", "LIMIT", "IN USE", "HELD BY"],
      limits.map((l) => [l.label, String(l.max), String(l.holders.length), l.holders.slice(0, 5).join(", ") + (l.holders.length > 5 ? ", ..." : "") || "-"]),
    ),
  );
}

export async function concurrencySetCommand(global: GlobalOptions, label: string, n: string, opts: ApiOpts): Promise<void> {
  const max = Number(n);
  if (!/^\d+$/.test(n.trim()) || !Number.isSafeInteger(max) || max < 1) {
    throw new BerthError("BERTH_E_USAGE", `the limit must be a positive whole number, not "${n}"`);
  }
  const limit = await apiClient(global, opts).setConcurrencyLimit(label, max);
  print(`label ${limit.label}: at most ${limit.max} run${limit.max === 1 ? "" : "s"} at once (${limit.holders.length} running now)`);
}

export async function concurrencyRemoveCommand(global: GlobalOptions, label: string, opts: ApiOpts): Promise<void> {
  await apiClient(global, opts).deleteConcurrencyLimit(label);
  print(`label ${label}: no limit`);
}

/**
 * Schedules: the clocks that make a flow's runs. A clock is a cron expression read in an IANA time zone, or
 * a fixed interval; `CronSchedule` and `IntervalSchedule` build one and check it at once, `toSpec()` gives its
 * wire form (wire/schema.ts `ClockSpec`), and the pure functions below answer the server's scheduler: which
 * slots a clock has in a window, and what identifies a clock across registrations.
 *
 * Daylight saving time (cron clocks; intervals are real elapsed time and never notice DST). A cron expression
 * is one of two kinds, by its seconds, minutes and hours fields (croner's `fixedTimeRule: "no-wildcard"`):
 * - Wall-clock times: those fields hold only numbers, lists and ranges (`30 2 * * *`, `0 9,17 * * 1-5`).
 *   Each named local time runs once on each day it names, never twice and never zero times. A time that
 *   occurs twice (fall-back) runs at its first occurrence. A time that does not occur (spring-forward) runs
 *   at the end of the gap, the first real instant after it, and the times one gap swallows run once there
 *   together. Europe/Berlin, `30 2 * * *`: 2026-03-29 at 03:00 CEST (01:00Z); 2026-10-25 at the first
 *   02:30, CEST (00:30Z).
 * - Periodic: a `*` or a step in any of those fields (`0 * * * *`, `*\/15 * * * *`). Each real instant whose
 *   local time matches runs, so each real hour gets its slot: the repeated hour runs twice (Berlin
 *   2026-10-25: 02:00 CEST and 02:00 CET) and the skipped hour not at all (2026-03-29: 01:00 CET, then
 *   03:00 CEST, one real hour apart).
 * This is croner's own handling, which follows Vixie cron; berth adds only the "no-wildcard" rule, so that a
 * list of hours (`30 2,14 * * *`) is wall-clock times too and never runs twice on the fall-back day.
 */
import { createHash } from "node:crypto";
import { Cron, type CronOptions } from "croner";
import { BerthError } from "../wire/errors.js";
import { JSON_SIZE_LIMITS, LABEL } from "../wire/constants.js";
import type { ClockSpec, ClockSpecInput } from "../wire/schema.js";

/** Most clocks one flow may have (the wire's bound). */
export const MAX_CLOCKS = 20;
const MIN_EVERY_MS = 1_000;
const MAX_EVERY_MS = 366 * 24 * 3_600_000;
const CRON_OPTIONS = { fixedTimeRule: "no-wildcard" } as const satisfies CronOptions;

// -- The SDK classes ---------------------------------------------------------------------------------------

interface ClockOptions {
  /** No slots before this instant (inclusive); default: none. Strings are ISO-8601 with an offset or Z. */
  startAt?: Date | string;
  /** No slots after this instant (inclusive); default: none. */
  endAt?: Date | string;
  /** Parameters of this clock's runs, over the flow's defaults (default: none). */
  parameters?: Record<string, unknown>;
  /** Labels of this clock's runs instead of the flow's (default: the flow's). */
  labels?: string[];
}

export interface CronScheduleOptions extends ClockOptions {
  /** IANA time zone the expression is read in (default "UTC"). */
  timezone?: string;
}

export interface IntervalScheduleOptions extends ClockOptions {
  /** Time between slots: milliseconds, or "250ms", "30s", "5m", "1h"; at least 1s. */
  every: number | string;
}

/** A clock of a flow's schedule: a CronSchedule or an IntervalSchedule. */
export abstract class Schedule {
  readonly #spec: ClockSpec;

  protected constructor(what: string, input: ClockSpecInput) {
    this.#spec = compileSpec(what, input);
  }

  /** The clock's wire form (timestamps as ISO-8601 in UTC). */
  toSpec(): ClockSpec {
    return structuredClone(this.#spec);
  }
}

/** Runs at the times a cron expression names, read in a time zone (see this module's comment on DST). */
export class CronSchedule extends Schedule {
  constructor(expr: string, options: CronScheduleOptions = {}) {
    const what = `CronSchedule(${preview(expr)})`;
    if (typeof expr !== "string") throw definition(`${what}: the cron expression must be a string`);
    super(what, { type: "cron", cron: expr, timezone: options.timezone ?? "UTC", ...runFields(what, options) });
  }
}

/** Runs every `every`, counted from `startAt` (from the Unix epoch without one, so slots never drift). */
export class IntervalSchedule extends Schedule {
  constructor(options: IntervalScheduleOptions) {
    const what = "IntervalSchedule";
    if (typeof options !== "object" || options === null) throw definition(`${what} needs options with \`every\``);
    super(what, { type: "interval", everyMs: everyMs(what, options.every), ...runFields(what, options) });
  }
}

Object.defineProperty(Schedule.prototype, Symbol.for("berth.Schedule"), { value: true, enumerable: false });

/** Whether `value` is a CronSchedule or IntervalSchedule, made by this copy of berth or another. */
export function isSchedule(value: unknown): value is Schedule {
  if (typeof value !== "object" || value === null) return false;
  return (value as Record<symbol, unknown>)[Symbol.for("berth.Schedule")] === true;
}

/** A Flow's `schedule` option as clock specs: none, one schedule, or an array of at most 20. */
export function toClockSpecs(schedule: unknown, where: string): ClockSpec[] {
  if (schedule === undefined) return [];
  const list = Array.isArray(schedule) ? (schedule as unknown[]) : [schedule];
  if (list.length > MAX_CLOCKS) throw definition(`${where} has ${list.length} clocks; at most ${MAX_CLOCKS} are allowed`);
  const specs: ClockSpec[] = [];
  const keys = new Map<string, number>();
  for (const [i, item] of list.entries()) {
    const at = Array.isArray(schedule) ? `${where}[${i}]` : where;
    if (!isSchedule(item)) {
      throw definition(`${at} must be a CronSchedule, an IntervalSchedule or an array of them, not ${preview(item)}`);
    }
    // A schedule from another copy of berth may be older or newer than this one: check what it gives.
    const spec = compileSpec(at, item.toSpec());
    const key = clockKey(spec);
    const twin = keys.get(key);
    if (twin !== undefined) throw definition(`${at} is the same clock as ${where}[${twin}]`);
    keys.set(key, i);
    specs.push(spec);
  }
  return specs;
}

function runFields(what: string, options: ClockOptions): Omit<ClockSpecInput, "type"> {
  return {
    startAt: options.startAt === undefined ? null : instant(what, "startAt", options.startAt),
    endAt: options.endAt === undefined ? null : instant(what, "endAt", options.endAt),
    parameters: options.parameters === undefined ? {} : jsonCopy(what, options.parameters),
    labels: options.labels ?? null,
  };
}

/** Parameters as the wire will carry them (a Date becomes its ISO text), refused when they are not JSON. */
function jsonCopy(what: string, value: unknown): Record<string, unknown> {
  try {
    return JSON.parse(JSON.stringify(value) ?? "undefined") as Record<string, unknown>; // the wire schema checks it is one
  } catch (err) {
    throw definition(`${what}: parameters ${preview(value)} are not JSON: ${(err as Error).message}`);
  }
}

function instant(what: string, field: string, value: Date | string): string {
  const ms = value instanceof Date ? value.getTime() : typeof value === "string" ? parseTimestamp(value) : NaN;
  if (Number.isNaN(ms)) {
    throw definition(`${what}: ${field} ${preview(value)} is not a date: give a Date or ISO-8601 text with an offset, such as 2026-12-01T00:00:00Z`);
  }
  return new Date(ms).toISOString();
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

function everyMs(what: string, every: unknown): number {
  let ms = NaN;
  if (typeof every === "number") ms = every;
  else if (typeof every === "string") {
    const match = DURATION.exec(every.trim());
    if (!match) throw definition(`${what}: every ${preview(every)} is not a duration: write it like 30s, 5m, 1h or 1500ms`);
    ms = Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
  }
  const problem = everyProblem(ms);
  if (problem) throw definition(`${what}: every ${preview(every)} ${problem}`);
  return ms;
}

/**
 * A spec from an SDK class, checked by validateClockSpec and by the same bounds as the wire schema's ClockSpec
 * (which the server applies again at registration). Written out rather than parsed with the wire schema: this
 * runs in every flow-run container, as the flow's module is loaded, and loading zod there costs more CPU than
 * the whole trivial run.
 */
function compileSpec(what: string, input: ClockSpecInput): ClockSpec {
  const problem = validateClockSpec({ ...input, timezone: (input as { timezone?: string }).timezone ?? "UTC" } as ClockSpec) ?? wireProblem(input);
  if (problem) throw definition(`${what}: ${problem}`);
  const runFields = {
    startAt: input.startAt ?? null,
    endAt: input.endAt ?? null,
    parameters: structuredClone(input.parameters ?? {}),
    labels: input.labels ? [...input.labels] : null,
  };
  return input.type === "cron"
    ? { type: "cron", cron: input.cron.trim(), timezone: input.timezone ?? "UTC", ...runFields }
    : { type: "interval", everyMs: input.everyMs, ...runFields };
}

/** The wire schema's bounds (wire/schema.ts ClockSpec) that validateClockSpec does not check. */
function wireProblem(input: ClockSpecInput): string | undefined {
  if (input.type === "cron") {
    if (input.cron.trim().length > 200) return `cron ${preview(input.cron)}: is longer than 200 characters`;
    if (input.timezone !== undefined && (typeof input.timezone !== "string" || input.timezone.length > 100)) return `timezone ${preview(input.timezone)}: is not a time zone name`;
  }
  const { parameters, labels } = input;
  if (parameters !== undefined) {
    if (typeof parameters !== "object" || parameters === null || Array.isArray(parameters)) return `parameters ${preview(parameters)}: must be an object of JSON values`;
    const bytes = Buffer.byteLength(JSON.stringify(parameters));
    if (bytes > JSON_SIZE_LIMITS.metadata) return `parameters: is ${bytes} bytes of JSON; at most ${JSON_SIZE_LIMITS.metadata} are allowed`;
  }
  if (labels !== undefined && labels !== null) {
    if (!Array.isArray(labels)) return `labels ${preview(labels)}: must be an array of labels`;
    if (labels.length > 100) return `labels: has ${labels.length} labels; at most 100 are allowed`;
    for (const [i, label] of (labels as unknown[]).entries()) {
      if (typeof label !== "string" || label.length < 1 || label.length > 200) return `labels.${i} ${preview(label)}: a label is 1 to 200 characters`;
      if (!LABEL.test(label)) return `labels.${i} ${preview(label)}: labels have no spaces, commas or control characters`;
    }
  }
  return undefined;
}

// -- Checks the server makes too ---------------------------------------------------------------------------

/** What is wrong with a clock spec (naming the field and its value), or undefined when it is valid. */
export function validateClockSpec(spec: ClockSpec): string | undefined {
  if (spec.type === "cron") {
    const problem = cronProblem(spec.cron);
    if (problem) return `cron ${preview(spec.cron)} ${problem}`;
    if (!isTimeZone(spec.timezone)) return `timezone ${preview(spec.timezone)} is not an IANA time zone (such as Europe/Berlin or UTC)`;
  } else if (spec.type === "interval") {
    const problem = everyProblem(spec.everyMs);
    if (problem) return `everyMs ${preview(spec.everyMs)} ${problem}`;
  } else {
    return `type ${preview((spec as { type: unknown }).type)} is not a kind of clock: use "cron" or "interval"`;
  }
  const bounds: number[] = [];
  for (const field of ["startAt", "endAt"] as const) {
    const value: unknown = spec[field];
    if (value === null || value === undefined) continue;
    const ms = typeof value === "string" ? parseTimestamp(value) : NaN;
    if (Number.isNaN(ms)) return `${field} ${preview(value)} is not an ISO-8601 time with an offset, such as 2026-12-01T00:00:00Z`;
    bounds.push(ms);
  }
  if (bounds.length === 2 && bounds[0]! >= bounds[1]!) return `startAt ${preview(spec.startAt)} must be before endAt ${preview(spec.endAt)}`;
  return undefined;
}

function cronProblem(expr: unknown): string | undefined {
  if (typeof expr !== "string" || expr.trim() === "") return "is not a cron expression: it is empty";
  try {
    // croner reads an ISO date as a one-off time; a clock must repeat.
    if (new Cron(expr, CRON_OPTIONS).getPattern() === undefined) return "is a date, not a cron expression";
    return undefined;
  } catch (err) {
    return `is not a cron expression: ${(err as Error).message}`;
  }
}

function everyProblem(ms: number): string | undefined {
  if (!Number.isFinite(ms) || !Number.isInteger(ms)) return "must be a whole number of milliseconds";
  if (ms < MIN_EVERY_MS) return "must be at least 1s";
  if (ms > MAX_EVERY_MS) return "must be at most 366 days";
  return undefined;
}

function isTimeZone(tz: unknown): boolean {
  if (typeof tz !== "string" || tz === "") return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false; // RangeError: not a zone this Node's ICU knows
  }
}

const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i;

/** An ISO-8601 time with an explicit offset, in ms; NaN otherwise (a time without one would be read in the host's zone). */
function parseTimestamp(text: string): number {
  return ISO_WITH_OFFSET.test(text) ? Date.parse(text) : NaN;
}

// -- Identity and display ----------------------------------------------------------------------------------

/**
 * A clock's stable identity: 16 hex digits of sha256 over its canonical JSON (sorted keys, defaults filled
 * in, times as UTC ISO, labels as a sorted set). Parameters and labels are part of it: they make other runs.
 */
export function clockKey(spec: ClockSpec): string {
  const when = (value: string | null | undefined) => (value == null ? null : Number.isNaN(Date.parse(value)) ? value : new Date(value).toISOString());
  const clock =
    spec.type === "cron"
      ? { type: "cron", cron: spec.cron.trim().split(/\s+/).join(" "), timezone: spec.timezone ?? "UTC" }
      : { type: spec.type, everyMs: spec.everyMs };
  const labels = spec.labels == null ? null : [...new Set(spec.labels)].sort();
  const canonical = { ...clock, startAt: when(spec.startAt), endAt: when(spec.endAt), parameters: spec.parameters ?? {}, labels };
  return createHash("sha256").update(canonicalJson(canonical)).digest("hex").slice(0, 16);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(",")}]`;
  if (typeof value === "object" && value !== null && !(value instanceof Date)) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** One line for the CLI: `cron "0 2 * * *" in Europe/Berlin`, `every 30s from 2026-12-01T00:00:00.000Z`. */
export function describeClock(spec: ClockSpec): string {
  const base = spec.type === "cron" ? `cron ${JSON.stringify(spec.cron)} in ${spec.timezone}` : `every ${formatMs(spec.everyMs)}`;
  return `${base}${spec.startAt ? ` from ${spec.startAt}` : ""}${spec.endAt ? ` until ${spec.endAt}` : ""}`;
}

function formatMs(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1_000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

// -- Slots -------------------------------------------------------------------------------------------------

const LATEST_MS = 8.64e15;

/**
 * The clock's slots strictly after `after` and at or before `until` (and within startAt..endAt, both
 * inclusive), ascending, at most `limit`. Each slot belongs to one fixed sequence per clock, whatever
 * `after` is: asking from inside a repeated hour never yields a wall-clock time a second time.
 */
export function slotsAfter(spec: ClockSpec, after: Date, options: { until: Date; limit: number }): Date[] {
  const { until, limit } = options;
  if (!Number.isInteger(limit) || limit < 0) throw new BerthError("BERTH_E_INTERNAL", `slotsAfter: limit must be a whole number >= 0, not ${limit}`);
  const start = spec.startAt ? Date.parse(spec.startAt) : -LATEST_MS;
  const end = Math.min(spec.endAt ? Date.parse(spec.endAt) : LATEST_MS, until.getTime());
  // Slots from `from` on: the later of just after `after` and startAt.
  const from = Math.max(after.getTime() + 1, start);
  if (limit === 0 || Number.isNaN(from) || Number.isNaN(end) || from > end) return [];
  return spec.type === "interval" ? intervalSlots(spec.everyMs, spec.startAt ? start : 0, from, end, limit) : cronSlots(spec, from, end, limit);
}

/** The clock's first slot after `after`, or undefined when it has none (past its endAt). */
export function nextSlot(spec: ClockSpec, after: Date): Date | undefined {
  return slotsAfter(spec, after, { until: new Date(LATEST_MS), limit: 1 })[0];
}

/** anchor + k*every from `from` to `end` (from >= anchor when there is a startAt): arithmetic, never a walk. */
function intervalSlots(every: number, anchor: number, from: number, end: number, limit: number): Date[] {
  // Integer times below 2^53 multiply exactly; the quotient is rounded, so step to the exact first slot.
  let t = anchor + Math.floor((from - anchor) / every) * every;
  while (t < from) t += every;
  while (t - every >= from) t -= every;
  const slots: Date[] = [];
  for (; t <= end && slots.length < limit; t += every) slots.push(new Date(t));
  return slots;
}

function cronSlots(spec: Extract<ClockSpec, { type: "cron" }>, from: number, end: number, limit: number): Date[] {
  const next = cronStepper(spec.cron, spec.timezone);
  const slots: Date[] = [];
  // croner searches strictly after a time, at whole seconds: from - 1ms lets a slot exactly at `from` in.
  let cursor = new Date(from - 1);
  while (slots.length < limit) {
    const slot = next(cursor);
    if (!slot || slot.getTime() > end) break;
    if (slot <= cursor) throw new BerthError("BERTH_E_INTERNAL", `cron ${preview(spec.cron)} went back in time after ${cursor.toISOString()}`);
    slots.push(slot);
    cursor = slot;
  }
  return slots;
}

/**
 * The next slot of a cron clock after a time. croner in a named zone decides DST, but converts every
 * candidate through Intl (about 0.1 ms a slot); with a fixed UTC offset it is ten times faster. So between
 * two offset changes of the zone the fixed-offset answer is taken, and near one (or from inside the hour a
 * fall-back repeats) the zoned answer. The two agree wherever no change is near; a test holds them to it.
 */
function cronStepper(expr: string, timezone: string): (after: Date) => Date | null {
  let zoned: Cron | undefined;
  const fixed = new Map<number, Cron>();
  return (after) => {
    const t = after.getTime();
    const offset = offsetAt(timezone, t);
    if (offset % 60_000 === 0) {
      let cron = fixed.get(offset);
      if (!cron) fixed.set(offset, (cron = new Cron(expr, { ...CRON_OPTIONS, utcOffset: offset / 60_000 })));
      const candidate = cron.nextRun(after);
      if (candidate && !offsetChangeNear(timezone, t, candidate.getTime())) return candidate;
    }
    zoned ??= new Cron(expr, { ...CRON_OPTIONS, timezone });
    return zoned.nextRun(after);
  };
}

// -- Time-zone offsets -------------------------------------------------------------------------------------

/** A change of a zone's UTC offset: the new offset (ms, east positive) from `at` on, and by how much it moved. */
type OffsetChange = { at: number; offset: number; delta: number };
/** One UTC calendar year of a zone: the offset at its start, then its changes. */
type ZoneYear = { offset: number; changes: OffsetChange[] };

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Offset changes lie months apart; sampling every 6 hours and bisecting finds each one to the second. */
const SAMPLE_MS = 6 * HOUR_MS;
const zoneYears = new Map<string, ZoneYear>();
const offsetFormats = new Map<string, Intl.DateTimeFormat>();

/** The zone's UTC offset (ms, east positive) at `t`. */
function offsetAt(timezone: string, t: number): number {
  const year = zoneYear(timezone, new Date(t).getUTCFullYear());
  let offset = year.offset;
  for (const change of year.changes) {
    if (change.at > t) break;
    offset = change.offset;
  }
  return offset;
}

/**
 * Whether a step from `from` to `to` passes near an offset change: within an hour before it, or within the
 * time it repeats (its delta) and an hour after it, where croner's first-pass rule for repeated times acts.
 */
function offsetChangeNear(timezone: string, from: number, to: number): boolean {
  const first = new Date(from - 2 * DAY_MS).getUTCFullYear();
  const last = new Date(to + DAY_MS).getUTCFullYear();
  for (let y = first; y <= last; y++) {
    for (const { at, delta } of zoneYear(timezone, y).changes) {
      if (from <= at + Math.abs(delta) + HOUR_MS && to >= at - HOUR_MS) return true;
    }
  }
  return false;
}

function zoneYear(timezone: string, year: number): ZoneYear {
  const key = `${timezone} ${year}`;
  let found = zoneYears.get(key);
  if (!found) {
    if (zoneYears.size >= 2_000) zoneYears.clear(); // a bound, not a policy: rebuilding a year costs a few ms
    zoneYears.set(key, (found = scanYear(timezone, year)));
  }
  return found;
}

function scanYear(timezone: string, year: number): ZoneYear {
  const read = (t: number) => readOffset(timezone, t);
  const start = Date.UTC(year, 0, 1);
  const end = Date.UTC(year + 1, 0, 1);
  const first = read(start);
  const changes: OffsetChange[] = [];
  let current = first;
  for (let t = start; t < end; ) {
    const sample = Math.min(t + SAMPLE_MS, end);
    while (read(sample) !== current) {
      let lo = t; // has `current`; hi has another offset; both whole seconds, as offset changes are
      let hi = sample;
      while (hi - lo > 1_000) {
        const mid = lo + Math.floor((hi - lo) / 2_000) * 1_000;
        if (read(mid) === current) lo = mid;
        else hi = mid;
      }
      const offset = read(hi);
      changes.push({ at: hi, offset, delta: offset - current });
      current = offset;
      t = hi;
    }
    t = sample;
  }
  return { offset: first, changes };
}

const GMT_OFFSET = /GMT(?:([+-])(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?)?$/;

function readOffset(timezone: string, t: number): number {
  let format = offsetFormats.get(timezone);
  if (!format) offsetFormats.set(timezone, (format = new Intl.DateTimeFormat("en-US", { timeZone: timezone, timeZoneName: "longOffset" })));
  const name = format.formatToParts(t).find((p) => p.type === "timeZoneName")?.value ?? "";
  const match = GMT_OFFSET.exec(name);
  if (!match) throw new BerthError("BERTH_E_INTERNAL", `cannot read the UTC offset of ${timezone} from ${JSON.stringify(name)}`);
  const [, sign, h = "0", m = "0", s = "0"] = match;
  return (sign === "-" ? -1 : 1) * ((Number(h) * 60 + Number(m)) * 60 + Number(s)) * 1_000;
}

// -- Helpers -----------------------------------------------------------------------------------------------

function definition(message: string): BerthError {
  return new BerthError("BERTH_E_FLOW_DEFINITION", message);
}

/** A value as a message shows it: JSON, cut short. */
function preview(value: unknown): string {
  if (value === undefined) return "undefined";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  if (typeof value === "object" && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) !== Object.prototype) {
    return `a ${value.constructor?.name ?? "object"}`;
  }
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value); // a cycle or a BigInt: show what String makes of it
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

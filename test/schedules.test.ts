/**
 * Schedule clocks (flows/schedules.ts): checks at definition and at the HTTP boundary, slot times with fixed
 * dates (never the real clock), daylight saving time held to a brute-force reading of the documented rule,
 * clock identity, and the Flow options that carry them.
 */
import { Cron } from "croner";
import { describe, expect, it } from "vitest";
import { CronSchedule as IndexCronSchedule } from "../index.js";
import { Flow } from "../flows/flow.js";
import {
  clockKey,
  CronSchedule,
  describeClock,
  IntervalSchedule,
  isSchedule,
  nextSlot,
  slotsAfter,
  toClockSpecs,
  validateClockSpec,
} from "../flows/schedules.js";
import { isBerthError } from "../wire/errors.js";
import type { ClockSpec } from "../wire/schema.js";

/** Another copy of the module, as a flow bundled with its own berth would have it (see brands.test.ts). */
const other = (await import(/* @vite-ignore */ new URL("../flows/schedules.ts?copy=2", import.meta.url).href)) as typeof import("../flows/schedules.js");

function definitionError(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    expect(isBerthError(err, "BERTH_E_FLOW_DEFINITION"), String(err)).toBe(true);
    return err as Error;
  }
  throw new Error("expected BERTH_E_FLOW_DEFINITION, nothing was thrown");
}

const cron = (expr: string, timezone = "UTC", more: Partial<ClockSpec> = {}): ClockSpec =>
  ({ type: "cron", cron: expr, timezone, startAt: null, endAt: null, parameters: {}, labels: null, ...more }) as ClockSpec;
const interval = (everyMs: number, more: Partial<ClockSpec> = {}): ClockSpec =>
  ({ type: "interval", everyMs, startAt: null, endAt: null, parameters: {}, labels: null, ...more }) as ClockSpec;
const iso = (dates: Date[]) => dates.map((d) => d.toISOString());
const at = (text: string) => new Date(text);
const FAR = at("2100-01-01T00:00:00Z");

const walls = new Map<string, (t: number) => string>();

/** Local wall time of an instant in a zone, "YYYY-MM-DD HH:MM" (sortable). */
function wall(timezone: string): (t: number) => string {
  const known = walls.get(timezone);
  if (known) return known;
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone: timezone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
  const read = (t: number) => {
    const p = Object.fromEntries(format.formatToParts(t).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
  };
  walls.set(timezone, read);
  return read;
}

/** Slots of `spec` whose local date (in `timezone`) is `date`. */
function slotsOnLocalDate(spec: ClockSpec, timezone: string, date: string): string[] {
  const local = wall(timezone);
  const base = Date.parse(`${date}T00:00:00Z`);
  const slots = slotsAfter(spec, new Date(base - 16 * 3_600_000), { until: new Date(base + 40 * 3_600_000), limit: 500 });
  return iso(slots).filter((s) => local(Date.parse(s)).startsWith(date));
}

describe("CronSchedule and IntervalSchedule", () => {
  it("give their wire form: ISO timestamps in UTC, the interval in ms, defaults filled in", () => {
    expect(new CronSchedule("0 2 * * *", { timezone: "Europe/Berlin", parameters: { full: true } }).toSpec()).toEqual({
      type: "cron",
      cron: "0 2 * * *",
      timezone: "Europe/Berlin",
      startAt: null,
      endAt: null,
      parameters: { full: true },
      labels: null,
    });
    const spec = new IntervalSchedule({
      every: "5m",
      startAt: "2026-12-01T01:00:00+01:00",
      endAt: new Date("2026-12-31T00:00:00Z"),
      labels: ["gpu"],
    }).toSpec();
    expect(spec).toEqual({
      type: "interval",
      everyMs: 300_000,
      startAt: "2026-12-01T00:00:00.000Z",
      endAt: "2026-12-31T00:00:00.000Z",
      parameters: {},
      labels: ["gpu"],
    });
    for (const [every, ms] of [["30s", 30_000], ["1h", 3_600_000], ["1500ms", 1_500], ["1.5s", 1_500], [2_000, 2_000]] as const) {
      expect(new IntervalSchedule({ every }).toSpec()).toMatchObject({ everyMs: ms });
    }
    expect(new CronSchedule("@daily").toSpec()).toMatchObject({ cron: "@daily", timezone: "UTC" });
    // Parameters as the wire carries them.
    expect(new CronSchedule("@daily", { parameters: { since: new Date("2026-01-01T00:00:00Z") } }).toSpec().parameters).toEqual({ since: "2026-01-01T00:00:00.000Z" });
  });

  it("refuse at construction what cannot make slots, naming the field and the value", () => {
    const cases: [() => unknown, RegExp][] = [
      [() => new CronSchedule("61 * * * *"), /cron "61 \* \* \* \*" is not a cron expression: .*Invalid value for minute: 61/],
      [() => new CronSchedule("every day"), /cron "every day" is not a cron expression: .*five, six, or seven/],
      [() => new CronSchedule("  "), /cron "  " is not a cron expression: it is empty/],
      [() => new CronSchedule("2026-12-01T00:00:00"), /cron "2026-12-01T00:00:00" is a date, not a cron expression/],
      [() => new CronSchedule(5 as never), /must be a string/],
      [() => new CronSchedule("0 2 * * *", { timezone: "Mars/Base" }), /timezone "Mars\/Base" is not an IANA time zone/],
      [() => new CronSchedule("0 2 * * *", { timezone: "+02:00" }), /timezone "\+02:00" is not an IANA time zone/],
      [() => new IntervalSchedule({ every: 0 }), /every 0 must be at least 1s/],
      [() => new IntervalSchedule({ every: -5_000 }), /every -5000 must be at least 1s/],
      [() => new IntervalSchedule({ every: 999 }), /every 999 must be at least 1s/],
      [() => new IntervalSchedule({ every: "500ms" }), /every "500ms" must be at least 1s/],
      [() => new IntervalSchedule({ every: Infinity }), /every Infinity must be a whole number of milliseconds/],
      [() => new IntervalSchedule({ every: NaN }), /every NaN must be a whole number of milliseconds/],
      [() => new IntervalSchedule({ every: 1_500.5 }), /every 1500.5 must be a whole number/],
      [() => new IntervalSchedule({ every: "1 week" }), /every "1 week" is not a duration/],
      [() => new IntervalSchedule({ every: 367 * 24 * 3_600_000 }), /every 31708800000 must be at most 366 days/],
      [() => new IntervalSchedule({} as never), /every undefined must be a whole number/],
      [() => new IntervalSchedule(undefined as never), /needs options with `every`/],
      [() => new CronSchedule("0 2 * * *", { startAt: "yesterday" }), /startAt "yesterday" is not a date/],
      [() => new CronSchedule("0 2 * * *", { startAt: "2026-12-01T00:00:00" }), /startAt "2026-12-01T00:00:00" is not a date: .*offset/],
      [() => new IntervalSchedule({ every: "1m", endAt: new Date(NaN) }), /endAt Invalid Date is not a date/],
      [
        () => new CronSchedule("0 2 * * *", { startAt: "2026-12-02T00:00:00Z", endAt: "2026-12-01T00:00:00Z" }),
        /startAt "2026-12-02T00:00:00.000Z" must be before endAt "2026-12-01T00:00:00.000Z"/,
      ],
      [
        () => new IntervalSchedule({ every: "1m", startAt: "2026-12-01T00:00:00Z", endAt: "2026-12-01T01:00:00+01:00" }),
        /startAt "2026-12-01T00:00:00.000Z" must be before endAt/,
      ],
      [() => new CronSchedule("0 2 * * *", { labels: ["two words"] }), /labels.0 "two words": labels have no spaces, commas or control characters/],
      [() => new CronSchedule("0 2 * * *", { parameters: "x" as never }), /parameters "x": /],
      [() => new CronSchedule("0 2 * * *", { parameters: { n: 10n } }), /parameters .* are not JSON: .*BigInt/],
    ];
    for (const [make, message] of cases) expect(definitionError(make).message).toMatch(message);
  });

  it("are recognised by their brand, from this copy of berth or another, and exported by the package", () => {
    expect(isSchedule(new CronSchedule("* * * * *"))).toBe(true);
    expect(isSchedule(new IntervalSchedule({ every: "1m" }))).toBe(true);
    expect(isSchedule(new other.IntervalSchedule({ every: "1m" }))).toBe(true);
    expect(other.isSchedule(new CronSchedule("* * * * *"))).toBe(true);
    expect(isSchedule({ toSpec: () => cron("* * * * *") })).toBe(false);
    expect(isSchedule(null)).toBe(false);
    expect(isSchedule("0 2 * * *")).toBe(false);
    expect(IndexCronSchedule).toBe(CronSchedule);
  });
});

describe("toClockSpecs", () => {
  it("takes nothing, one schedule or an array of them", () => {
    const daily = new CronSchedule("0 2 * * *");
    const poll = new IntervalSchedule({ every: "30s", parameters: { fast: true } });
    expect(toClockSpecs(undefined, "schedule")).toEqual([]);
    expect(toClockSpecs([], "schedule")).toEqual([]);
    expect(toClockSpecs(daily, "schedule")).toEqual([daily.toSpec()]);
    expect(toClockSpecs([daily, poll], "schedule")).toEqual([daily.toSpec(), poll.toSpec()]);
    expect(toClockSpecs([new other.CronSchedule("0 3 * * *")], "schedule")).toEqual([cron("0 3 * * *")]);
  });

  it("refuses anything else, naming where", () => {
    const where = 'flow "Nightly": schedule';
    expect(definitionError(() => toClockSpecs("0 2 * * *", where)).message).toMatch(
      /^flow "Nightly": schedule must be a CronSchedule, an IntervalSchedule or an array of them, not "0 2 \* \* \*"/,
    );
    expect(definitionError(() => toClockSpecs(null, where)).message).toMatch(/schedule must be .* not null/);
    expect(definitionError(() => toClockSpecs(cron("0 2 * * *"), where)).message).toMatch(/schedule must be .* not \{"type":"cron"/);
    expect(definitionError(() => toClockSpecs([new CronSchedule("0 2 * * *"), 5], where)).message).toMatch(/schedule\[1\] must be .* not 5/);
    const many = Array.from({ length: 21 }, (_, i) => new CronSchedule(`${i} 2 * * *`));
    expect(definitionError(() => toClockSpecs(many, where)).message).toMatch(/schedule has 21 clocks; at most 20/);
    expect(toClockSpecs(many.slice(0, 20), where)).toHaveLength(20);
    const twins = [new CronSchedule("0 2 * * *"), new CronSchedule("0 2 * * *")];
    expect(definitionError(() => toClockSpecs(twins, where)).message).toMatch(/schedule\[1\] is the same clock as .*schedule\[0\]/);
  });
});

describe("validateClockSpec (what the server checks)", () => {
  it("passes valid clocks and names the field and value of the first problem", () => {
    expect(validateClockSpec(cron("0 2 * * *", "Europe/Berlin"))).toBeUndefined();
    expect(validateClockSpec(interval(30_000, { startAt: "2026-12-01T00:00:00Z", endAt: "2026-12-02T00:00:00+01:00" }))).toBeUndefined();
    expect(validateClockSpec(cron("0 25 * * *"))).toMatch(/^cron "0 25 \* \* \*" is not a cron expression: .*hour/);
    expect(validateClockSpec(cron("2026-01-01T00:00:00Z"))).toMatch(/^cron .* is a date/);
    expect(validateClockSpec(cron("0 2 * * *", "Nowhere/City"))).toBe('timezone "Nowhere/City" is not an IANA time zone (such as Europe/Berlin or UTC)');
    expect(validateClockSpec(interval(500))).toBe("everyMs 500 must be at least 1s");
    expect(validateClockSpec(interval(0))).toBe("everyMs 0 must be at least 1s");
    expect(validateClockSpec(interval(1_000.5))).toBe("everyMs 1000.5 must be a whole number of milliseconds");
    expect(validateClockSpec(interval(30_000, { startAt: "soon" }))).toMatch(/^startAt "soon" is not an ISO-8601 time/);
    expect(validateClockSpec(interval(30_000, { endAt: "2026-12-01 00:00" }))).toMatch(/^endAt "2026-12-01 00:00" is not an ISO-8601 time/);
    expect(validateClockSpec(interval(30_000, { startAt: "2026-12-01T00:00:00Z", endAt: "2026-12-01T00:00:00Z" }))).toBe(
      'startAt "2026-12-01T00:00:00Z" must be before endAt "2026-12-01T00:00:00Z"',
    );
    expect(validateClockSpec({ type: "sundial" } as never)).toMatch(/^type "sundial" is not a kind of clock/);
  });
});

describe("slotsAfter and nextSlot", () => {
  it("gives cron slots strictly after `after`, up to `until` inclusive, at most `limit`", () => {
    const daily = cron("0 2 * * *");
    expect(iso(slotsAfter(daily, at("2026-01-01T00:00:00Z"), { until: at("2026-01-04T02:00:00Z"), limit: 10 }))).toEqual([
      "2026-01-01T02:00:00.000Z",
      "2026-01-02T02:00:00.000Z",
      "2026-01-03T02:00:00.000Z",
      "2026-01-04T02:00:00.000Z",
    ]);
    expect(iso(slotsAfter(daily, at("2026-01-01T02:00:00Z"), { until: at("2026-01-03T01:59:59Z"), limit: 10 }))).toEqual(["2026-01-02T02:00:00.000Z"]);
    expect(iso(slotsAfter(daily, at("2026-01-01T01:59:59.999Z"), { until: FAR, limit: 2 }))).toEqual([
      "2026-01-01T02:00:00.000Z",
      "2026-01-02T02:00:00.000Z",
    ]);
    expect(slotsAfter(daily, at("2026-01-01T00:00:00Z"), { until: FAR, limit: 0 })).toEqual([]);
    expect(slotsAfter(daily, at("2026-01-05T00:00:00Z"), { until: at("2026-01-01T00:00:00Z"), limit: 5 })).toEqual([]);
    expect(() => slotsAfter(daily, at("2026-01-01T00:00:00Z"), { until: FAR, limit: -1 })).toThrow(/limit/);
  });

  it("honours startAt and endAt, both inclusive, for cron clocks", () => {
    const spec = cron("0 * * * *", "UTC", { startAt: "2026-01-01T03:00:00Z", endAt: "2026-01-01T05:00:00Z" });
    expect(iso(slotsAfter(spec, at("2025-01-01T00:00:00Z"), { until: FAR, limit: 10 }))).toEqual([
      "2026-01-01T03:00:00.000Z",
      "2026-01-01T04:00:00.000Z",
      "2026-01-01T05:00:00.000Z",
    ]);
    expect(iso(slotsAfter(spec, at("2026-01-01T04:30:00Z"), { until: FAR, limit: 10 }))).toEqual(["2026-01-01T05:00:00.000Z"]);
    expect(nextSlot(spec, at("2026-01-01T05:00:00Z"))).toBeUndefined();
    expect(nextSlot(spec, at("2020-01-01T00:00:00Z"))?.toISOString()).toBe("2026-01-01T03:00:00.000Z");
    expect(nextSlot(cron("0 0 1 1 *"), at("2026-06-01T00:00:00Z"))?.toISOString()).toBe("2027-01-01T00:00:00.000Z");
  });

  it("anchors interval slots at the Unix epoch without startAt, so they do not move between registrations", () => {
    const every7s = interval(7_000);
    const slots = slotsAfter(every7s, at("2026-01-01T00:00:00Z"), { until: FAR, limit: 3 });
    expect(slots.map((d) => d.getTime() % 7_000)).toEqual([0, 0, 0]);
    expect(iso(slots)).toEqual(["2026-01-01T00:00:07.000Z", "2026-01-01T00:00:14.000Z", "2026-01-01T00:00:21.000Z"]);
    // Asked again later, from another point: the same grid.
    expect(iso(slotsAfter(interval(7_000), at("2026-01-01T00:00:07Z"), { until: at("2026-01-01T00:00:21Z"), limit: 10 }))).toEqual([
      "2026-01-01T00:00:14.000Z",
      "2026-01-01T00:00:21.000Z",
    ]);
    // Before the epoch too (k < 0), and far ahead without walking from the anchor.
    expect(iso(slotsAfter(interval(60_000), at("1969-12-31T23:58:30Z"), { until: FAR, limit: 3 }))).toEqual([
      "1969-12-31T23:59:00.000Z",
      "1970-01-01T00:00:00.000Z",
      "1970-01-01T00:01:00.000Z",
    ]);
    expect(iso(slotsAfter(interval(1_000), at("2999-12-31T23:59:58.500Z"), { until: at("3000-01-01T00:00:00Z"), limit: 5 }))).toEqual([
      "2999-12-31T23:59:59.000Z",
      "3000-01-01T00:00:00.000Z",
    ]);
  });

  it("anchors interval slots at startAt, and honours startAt and endAt inclusively", () => {
    const spec = interval(90_000, { startAt: "2026-01-01T00:00:00.250Z", endAt: "2026-01-01T00:04:30.250Z" });
    expect(iso(slotsAfter(spec, at("2025-06-01T00:00:00Z"), { until: FAR, limit: 10 }))).toEqual([
      "2026-01-01T00:00:00.250Z",
      "2026-01-01T00:01:30.250Z",
      "2026-01-01T00:03:00.250Z",
      "2026-01-01T00:04:30.250Z",
    ]);
    expect(iso(slotsAfter(spec, at("2026-01-01T00:01:30.250Z"), { until: FAR, limit: 1 }))).toEqual(["2026-01-01T00:03:00.250Z"]);
    expect(iso(slotsAfter(spec, at("2026-01-01T00:01:30.249Z"), { until: FAR, limit: 1 }))).toEqual(["2026-01-01T00:01:30.250Z"]);
    expect(nextSlot(spec, at("2026-01-01T00:04:30.250Z"))).toBeUndefined();
    expect(nextSlot(spec, at("2026-01-01T00:04:30.249Z"))?.toISOString()).toBe("2026-01-01T00:04:30.250Z");
  });

  it("gives a daily clock 365 slots across 2026, one on each local date, and 366 across 2028", () => {
    const local = wall("Europe/Berlin");
    const year = slotsAfter(cron("30 2 * * *", "Europe/Berlin"), at("2025-12-31T23:00:00Z"), { until: at("2026-12-31T22:59:59Z"), limit: 1_000 });
    expect(year).toHaveLength(365);
    const walls = year.map((d) => local(d.getTime()));
    expect(new Set(walls.map((w) => w.slice(0, 10))).size).toBe(365);
    // At 02:30 local every day, but on the spring-forward day (no 02:30): at 03:00.
    expect(walls.filter((w) => !w.endsWith(" 02:30"))).toEqual(["2026-03-29 03:00"]);
    expect(slotsAfter(cron("0 12 * * *", "America/New_York"), at("2028-01-01T05:00:00Z"), { until: at("2029-01-01T05:00:00Z"), limit: 1_000 })).toHaveLength(366);
  });
});

describe("daylight saving time", () => {
  it("runs a daily 02:30 in Europe/Berlin once on spring-forward (03:00 CEST) and once on fall-back (the first 02:30)", () => {
    const spec = cron("30 2 * * *", "Europe/Berlin");
    expect(iso(slotsAfter(spec, at("2026-03-27T12:00:00Z"), { until: at("2026-03-30T12:00:00Z"), limit: 10 }))).toEqual([
      "2026-03-28T01:30:00.000Z", // 02:30 CET
      "2026-03-29T01:00:00.000Z", // 02:30 does not exist: 03:00 CEST, the end of the gap
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
    ]);
    expect(iso(slotsAfter(spec, at("2026-10-23T12:00:00Z"), { until: at("2026-10-26T12:00:00Z"), limit: 10 }))).toEqual([
      "2026-10-24T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T00:30:00.000Z", // the first 02:30 (CEST); the second (01:30Z, CET) never runs
      "2026-10-26T01:30:00.000Z", // 02:30 CET
    ]);
    // Asked from inside the repeated hour (the scheduler's cursor may stop anywhere), never the second 02:30.
    for (const after of ["2026-10-25T00:30:00Z", "2026-10-25T00:59:59Z", "2026-10-25T01:00:00Z", "2026-10-25T01:29:59Z"]) {
      expect(nextSlot(spec, at(after))?.toISOString(), after).toBe("2026-10-26T01:30:00.000Z");
    }
    expect(nextSlot(spec, at("2026-03-29T00:59:59Z"))?.toISOString()).toBe("2026-03-29T01:00:00.000Z");
    expect(nextSlot(spec, at("2026-03-29T01:00:00Z"))?.toISOString()).toBe("2026-03-30T00:30:00.000Z");
  });

  it("runs a daily 02:30 / 01:30 in America/New_York once on 2026-03-08 (03:00 EDT) and once on 2026-11-01 (the first 01:30)", () => {
    expect(slotsOnLocalDate(cron("30 2 * * *", "America/New_York"), "America/New_York", "2026-03-08")).toEqual(["2026-03-08T07:00:00.000Z"]);
    expect(slotsOnLocalDate(cron("30 1 * * *", "America/New_York"), "America/New_York", "2026-11-01")).toEqual(["2026-11-01T05:30:00.000Z"]);
    expect(slotsOnLocalDate(cron("30 2 * * *", "America/New_York"), "America/New_York", "2026-11-01")).toEqual(["2026-11-01T07:30:00.000Z"]);
  });

  it("treats a list of hours as wall-clock times too: `30 2,14 * * *` runs 02:30 once on fall-back", () => {
    expect(slotsOnLocalDate(cron("30 2,14 * * *", "Europe/Berlin"), "Europe/Berlin", "2026-10-25")).toEqual([
      "2026-10-25T00:30:00.000Z",
      "2026-10-25T13:30:00.000Z",
    ]);
    expect(slotsOnLocalDate(cron("30 1-2 * * *", "America/New_York"), "America/New_York", "2026-11-01")).toEqual([
      "2026-11-01T05:30:00.000Z",
      "2026-11-01T07:30:00.000Z",
    ]);
  });

  it("gives an hourly clock a slot for each real hour: 23 on spring-forward days, 25 on fall-back days", () => {
    for (const [timezone, spring, fall] of [
      ["Europe/Berlin", "2026-03-29", "2026-10-25"],
      ["America/New_York", "2026-03-08", "2026-11-01"],
    ] as const) {
      const spec = cron("0 * * * *", timezone);
      for (const [date, count] of [[spring, 23], [fall, 25]] as const) {
        const slots = slotsOnLocalDate(spec, timezone, date).map(Date.parse);
        expect(slots, `${timezone} ${date}`).toHaveLength(count);
        expect(slots.slice(1).map((t, i) => t - slots[i]!)).toEqual(Array(count - 1).fill(3_600_000));
      }
    }
    // The repeated hour of Berlin's fall-back runs twice, at 02:00 CEST and at 02:00 CET.
    expect(iso(slotsAfter(cron("0 * * * *", "Europe/Berlin"), at("2026-10-24T23:30:00Z"), { until: at("2026-10-25T02:00:00Z"), limit: 10 }))).toEqual([
      "2026-10-25T00:00:00.000Z",
      "2026-10-25T01:00:00.000Z",
      "2026-10-25T02:00:00.000Z",
    ]);
  });

  it("follows the documented rule on every DST day of 2026 in five zones, checked minute by minute", () => {
    // The rule, read independently of croner: a wall-clock time runs at the first instant whose local time
    // is at or past it; a periodic clock runs at every real minute whose local time matches.
    for (const timezone of ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham"]) {
      const local = wall(timezone);
      const days = dstDates(timezone, 2026);
      expect(days.length, timezone).toBeGreaterThanOrEqual(2);
      for (const date of days) {
        const base = Date.parse(`${date}T00:00:00Z`);
        const minutes: [number, string][] = [];
        for (let t = base - 16 * 3_600_000; t < base + 40 * 3_600_000; t += 60_000) minutes.push([t, local(t)]);
        const onDate = minutes.filter(([, w]) => w.startsWith(date));
        for (let q = 0; q < 24 * 60; q += 15) {
          const hh = String(Math.floor(q / 60)).padStart(2, "0");
          const mm = String(q % 60).padStart(2, "0");
          const expected = minutes.find(([, w]) => w >= `${date} ${hh}:${mm}`)![0];
          const got = slotsOnLocalDate(cron(`${q % 60} ${Math.floor(q / 60)} * * *`, timezone), timezone, date);
          expect(got, `${timezone} ${date} ${hh}:${mm}`).toEqual([new Date(expected).toISOString()]);
        }
        for (const minute of [0, 15, 30, 45]) {
          const expected = onDate.filter(([, w]) => w.endsWith(`:${String(minute).padStart(2, "0")}`)).map(([t]) => new Date(t).toISOString());
          expect(slotsOnLocalDate(cron(`${minute} * * * *`, timezone), timezone, date), `${timezone} ${date} :${minute}`).toEqual(expected);
        }
      }
    }
  });

  it("takes croner's fast fixed-offset answers only where they equal its zoned answers", () => {
    // The reference is croner itself in the zone, slot by slot (slow, so: the days around each DST change).
    for (const timezone of ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago"]) {
      for (const change of dstChanges(timezone, 2026)) {
        const [from, to] = [new Date(change - 4 * 86_400_000), new Date(change + 4 * 86_400_000)];
        for (const expr of ["30 2 * * *", "*/20 * * * *", "15 1-3 * * *", "0 0 * * *", "0 0-23/3 * * 1-5", "45 23 * * *"]) {
          const zoned = new Cron(expr, { timezone, fixedTimeRule: "no-wildcard" });
          const expected: number[] = [];
          for (let d = zoned.nextRun(from); d && d <= to; d = zoned.nextRun(d)) expected.push(d.getTime());
          const spec = cron(expr, timezone);
          expect(slotsAfter(spec, from, { until: to, limit: 10_000 }).map(Number), `${timezone} ${expr}`).toEqual(expected);
          // From any point near the change, the same sequence: a cursor may stop inside a repeated hour.
          for (let after = change - 3 * 3_600_000; after <= change + 3 * 3_600_000; after += 5 * 60_000) {
            expect(slotsAfter(spec, new Date(after), { until: to, limit: 2 }).map(Number), `${timezone} ${expr} after ${new Date(after).toISOString()}`).toEqual(
              expected.filter((t) => t > after).slice(0, 2),
            );
          }
        }
      }
    }
  });
});

describe("long runs of slots", () => {
  it("computes 20 000 minutely slots across a DST change, one per real minute", () => {
    const slots = slotsAfter(cron("* * * * *", "Europe/Berlin"), at("2026-03-20T00:00:00Z"), { until: FAR, limit: 20_000 });
    expect(slots).toHaveLength(20_000);
    // Each real minute, the skipped hour's included: a periodic clock counts real time.
    expect(slots[19_999]!.getTime() - slots[0]!.getTime()).toBe(19_999 * 60_000);
  });

  it("computes interval slots arithmetically, however far from the anchor (a walk from 1970 would not finish)", () => {
    const slots = slotsAfter(interval(1_000), at("2099-01-01T00:00:00Z"), { until: FAR, limit: 3 });
    expect(iso(slots)).toEqual(["2099-01-01T00:00:01.000Z", "2099-01-01T00:00:02.000Z", "2099-01-01T00:00:03.000Z"]);
  });
});

describe("clockKey and describeClock", () => {
  it("identify a clock by its content: stable, 16 hex digits, indifferent to key order and label order", () => {
    const spec = new CronSchedule("0 2 * * *", { timezone: "Europe/Berlin", parameters: { b: 1, a: { y: 2, x: 1 } }, labels: ["x", "y"] }).toSpec();
    const key = clockKey(spec);
    expect(key).toMatch(/^[0-9a-f]{16}$/);
    expect(key).toBe("a698bf984d88e75b");
    const reordered = {
      labels: ["y", "x"],
      parameters: { a: { x: 1, y: 2 }, b: 1 },
      endAt: null,
      startAt: null,
      timezone: "Europe/Berlin",
      cron: "0  2 * * *",
      type: "cron",
    } as ClockSpec;
    expect(clockKey(reordered)).toBe(key);
    expect(clockKey(new CronSchedule("0 2 * * *", { timezone: "Europe/Berlin", parameters: { b: 1, a: { y: 2, x: 1 } }, labels: ["x", "y"] }).toSpec())).toBe(key);
    expect(clockKey(interval(30_000, { startAt: "2026-12-01T01:00:00+01:00" }))).toBe(clockKey(interval(30_000, { startAt: "2026-12-01T00:00:00.000Z" })));
  });

  it("tell clocks apart that make different runs", () => {
    const more = { parameters: { full: true }, labels: ["a"] };
    const base = cron("0 2 * * *", "Europe/Berlin", more);
    const variants: ClockSpec[] = [
      { ...base, parameters: { full: false } },
      { ...base, parameters: {} },
      { ...base, labels: ["b"] },
      { ...base, labels: null },
      { ...base, labels: [] },
      cron("0 3 * * *", "Europe/Berlin", more),
      cron("0 2 * * *", "UTC", more),
      { ...base, startAt: "2026-01-01T00:00:00Z" },
      { ...base, endAt: "2027-01-01T00:00:00Z" },
      interval(60_000),
      interval(61_000),
    ];
    const keys = new Set([base, ...variants].map(clockKey));
    expect(keys.size).toBe(variants.length + 1);
  });

  it("describe a clock in one line", () => {
    expect(describeClock(cron("0 2 * * *", "Europe/Berlin"))).toBe('cron "0 2 * * *" in Europe/Berlin');
    expect(describeClock(interval(30_000))).toBe("every 30s");
    expect(describeClock(interval(5_400_000))).toBe("every 90m");
    expect(describeClock(interval(1_500, { startAt: "2026-12-01T00:00:00.000Z", endAt: "2026-12-02T00:00:00.000Z" }))).toBe(
      "every 1500ms from 2026-12-01T00:00:00.000Z until 2026-12-02T00:00:00.000Z",
    );
  });
});

describe("Flow's schedule options", () => {
  it("carries its clocks, catchUp and maxConcurrentRuns into serialize()", () => {
    const nightly = new CronSchedule("0 2 * * *", { timezone: "Europe/Berlin", parameters: { full: true } });
    const flow = new Flow("Nightly ETL", { schedule: nightly, catchUp: "all", maxConcurrentRuns: 1 });
    expect(flow.serialize()).toMatchObject({ schedule: [nightly.toSpec()], catchUp: "all", maxConcurrentRuns: 1 });
    const poll = new Flow("Poll", { schedule: [new IntervalSchedule({ every: "30s" }), new other.CronSchedule("0 * * * *")] });
    expect(poll.serialize()).toMatchObject({ schedule: [interval(30_000), cron("0 * * * *")], catchUp: "latest", maxConcurrentRuns: null });
    expect(new Flow("Manual").serialize()).toMatchObject({ schedule: [], catchUp: "latest", maxConcurrentRuns: null });
    // serialize() hands out a copy: changing it does not change the flow.
    flow.serialize().schedule.pop();
    expect(flow.schedule).toHaveLength(1);
  });

  it("refuses a bad schedule, catchUp or maxConcurrentRuns at definition", () => {
    expect(definitionError(() => new Flow("F", { schedule: "0 2 * * *" as never })).message).toMatch(/^flow "F": schedule must be a CronSchedule/);
    expect(definitionError(() => new Flow("F", { catchUp: "some" as never })).message).toBe('flow "F": catchUp must be "none", "latest" or "all", not "some"');
    for (const bad of [0, -1, 1.5, NaN, "2", 100_001]) {
      expect(definitionError(() => new Flow("F", { maxConcurrentRuns: bad as never })).message).toMatch(/^flow "F": maxConcurrentRuns must be a whole number from 1/);
    }
    expect(new Flow("F", { catchUp: "none", maxConcurrentRuns: 100_000 }).serialize()).toMatchObject({ catchUp: "none", maxConcurrentRuns: 100_000 });
  });
});

/** The hours of `year` (UTC, whole) from which the zone's UTC offset is another than the hour before. */
function dstChanges(timezone: string, year: number): number[] {
  const local = wall(timezone);
  const offset = (t: number) => Date.parse(`${local(t).replace(" ", "T")}:00Z`) - t;
  const changes: number[] = [];
  for (let t = Date.UTC(year, 0, 1); t < Date.UTC(year + 1, 0, 1); t += 3_600_000) {
    if (offset(t) !== offset(t + 3_600_000)) changes.push(t + 3_600_000);
  }
  return changes;
}

/** Local dates of `year` on which the zone's UTC offset changes. */
function dstDates(timezone: string, year: number): string[] {
  const local = wall(timezone);
  return [...new Set(dstChanges(timezone, year).map((t) => local(t).slice(0, 10)))];
}

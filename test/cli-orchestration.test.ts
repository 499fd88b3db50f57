/**
 * The orchestration commands of the CLI against a real server process, no Docker: `run --at/--in`,
 * `schedule ls|show|pause|resume`, `concurrency ls|set|rm`, and the bad input each refuses, saying why,
 * with nothing stored.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { flowBody } from "./support/fixtures.js";
import { berth, startServer, type BerthProcess, TEST_TOKEN } from "./support/processes.js";

let dir: string;
let server: { proc: BerthProcess; url: string };
let client: ApiClient;
const cli = (...args: string[]) => berth([...args, "--api", server.url], { env: { BERTH_HOME: dir } });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "berth-cli-orchestration-"));
  server = await startServer(dir, { BERTH_HOME: dir });
  client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
  await client.registerFlow(flowBody({ name: "Manual" }));
  await client.registerFlow(flowBody({ name: "Ticking", schedule: [{ type: "interval", everyMs: 60_000 }], catchUp: "none" }));
}, 60_000);

afterAll(async () => {
  await server?.proc.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("berth run --at / --in", () => {
  it("makes a run that waits for its start, and says when it starts", async () => {
    const before = Date.now();
    const made = await cli("run", "Manual", "--in", "10m");
    expect(made.code, made.stderr).toBe(0);
    const [run] = (await client.listFlowRuns({ flowName: "Manual" })).flowRuns;
    expect(run?.state).toBe("Scheduled");
    const start = Date.parse(run!.scheduledStart);
    expect(start).toBeGreaterThanOrEqual(before + 600_000);
    expect(start).toBeLessThanOrEqual(Date.now() + 600_000);
    expect((await client.getFlowRun(run!.id)).pickup).toMatch(/^starts at .* \(in (9|10)m\)/);
    const at = await cli("run", "Manual", "--at", "2099-12-24T19:00:00+01:00");
    expect(at.code, at.stderr).toBe(0);
    expect((await client.listFlowRuns({ flowName: "Manual" })).flowRuns[0]?.scheduledStart).toBe("2099-12-24T18:00:00.000Z");
  });

  it("refuses a start that is not a time to come, naming the value, and makes no run", async () => {
    const cases: [string[], RegExp][] = [
      [["--at", "2020-01-01T00:00:00Z"], /--at 2020-01-01T00:00:00Z is in the past/],
      [["--at", "2099-12-24T18:00"], /--at must be an ISO-8601 time with an offset or Z, .* not "2099-12-24T18:00"/],
      [["--at", "tomorrow"], /--at must be an ISO-8601 time .* not "tomorrow"/],
      [["--in", "10"], /--in must be a duration to come, like 30s, 10m or 2h, not "10"/],
      [["--in", "soon"], /--in must be a duration .* not "soon"/],
      [["--in", "0s"], /--in must be a duration to come/],
      [["--in", "5m", "--at", "2099-01-01T00:00:00Z"], /give --at or --in, not both/],
    ];
    const count = (await client.listFlowRuns({ flowName: "Manual" })).flowRuns.length;
    for (const [args, message] of cases) {
      const res = await cli("run", "Manual", ...args);
      expect(res.code, args.join(" ")).toBe(2);
      expect(res.stderr, args.join(" ")).toMatch(message);
    }
    expect((await client.listFlowRuns({ flowName: "Manual" })).flowRuns).toHaveLength(count);
  });
});

describe("berth schedule", () => {
  it("lists, shows, pauses and resumes a flow's schedule", async () => {
    const ls = await cli("schedule", "ls");
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/Ticking\s+1\s+active\s+every 1m\s+\S+.*\s+none/);
    const show = await cli("schedule", "show", "Ticking", "--ticks", "3");
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain('flow "Ticking" version 1: active, catchUp "none"');
    expect(show.stdout.split("\n").filter((line) => / created /.test(line))).toHaveLength(3);
    const scheduled = async () => (await client.listFlowRuns({ flowName: "Ticking", state: "Scheduled" })).flowRuns.map((r) => Date.parse(r.scheduledStart));
    const pausedAt = Date.now();
    expect((await scheduled()).filter((start) => start > pausedAt + 60_000).length).toBeGreaterThanOrEqual(8);
    const paused = await cli("schedule", "pause", "Ticking");
    expect(paused.stdout).toContain('schedule of "Ticking" paused');
    // The runs made ahead are gone; a slot whose time came before the pause answered is a queued run, and stays.
    const answered = Date.now();
    expect((await scheduled()).filter((start) => start > answered)).toEqual([]);
    expect((await cli("flows")).stdout).toMatch(/Ticking .*every 1m \(paused\)/);
    const resumed = await cli("schedule", "resume", "Ticking");
    expect(resumed.stdout).toContain('schedule of "Ticking" resumed');
    expect((await client.listFlowRuns({ flowName: "Ticking", state: "Scheduled" })).flowRuns.length).toBeGreaterThanOrEqual(10);
  });

  it("says what is wrong with a flow that has no schedule, an unknown flow, and a bad --ticks", async () => {
    for (const [args, message] of [
      [["schedule", "show", "Manual"], /flow "Manual" \(version 1\) has no schedule/],
      [["schedule", "pause", "Nobody"], /no flow named "Nobody" is registered/],
      [["schedule", "show", "Ticking", "--ticks", "5000"], /--ticks must be a whole number from 0 to 1000, not "5000"/],
    ] as const) {
      const res = await cli(...args);
      expect(res.code, args.join(" ")).toBe(2);
      expect(res.stderr, args.join(" ")).toMatch(message);
    }
  });
});

describe("berth concurrency", () => {
  it("sets, lists and removes a label's limit, refusing a limit that is not a positive whole number", async () => {
    for (const bad of ["0", "-1", "1.5", "two"]) {
      const res = await cli("concurrency", "set", "etl", bad);
      expect(res.code, bad).toBe(2);
      expect(res.stderr).toContain(`the limit must be a positive whole number, not "${bad}"`);
    }
    expect((await cli("concurrency", "ls")).stdout).toContain("no concurrency limits");
    const set = await cli("concurrency", "set", "etl", "2");
    expect(set.stdout).toContain("label etl: at most 2 runs at once (0 running now)");
    expect((await cli("concurrency", "ls")).stdout).toMatch(/etl\s+2\s+0\s+-/);
    expect((await cli("concurrency", "rm", "etl")).stdout).toContain("label etl: no limit");
    const again = await cli("concurrency", "rm", "etl");
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("label etl has no concurrency limit");
  });
});

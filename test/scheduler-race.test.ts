/**
 * Schedulers in several OS processes on one store (as server replicas sharing it), a SQLite file or a
 * PostgreSQL database: each slot still yields exactly one run and one entry of history. The racers run
 * berth's compiled scheduler (dist/).
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { StateStore } from "../store/port.js";
import { openPostgresStore } from "../store/postgres.js";
import { openSqliteStore } from "../store/sqlite.js";
import { describePostgres, useCluster } from "./support/postgres.js";
import { flowInput } from "./support/fixtures.js";
import { REPO } from "./support/processes.js";

const RACER = fileURLToPath(new URL("./support/scheduler-racer.mjs", import.meta.url));
const T0 = Date.parse("2030-01-01T00:00:00.000Z");

type Message = { type: "ready" } | { type: "done"; created: number } | { type: "failed"; error: string };

function racer(setup: object): { child: ChildProcess; next: () => Promise<Message> } {
  const child = fork(RACER, [JSON.stringify(setup)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const inbox: Message[] = [];
  let wake: (() => void) | undefined;
  child.on("message", (m: Message) => {
    inbox.push(m);
    wake?.();
  });
  child.on("exit", () => wake?.());
  const next = async (): Promise<Message> => {
    while (inbox.length === 0) {
      if (child.exitCode !== null) throw new Error(`racer ${child.pid} exited (${child.exitCode}) without a word`);
      await new Promise<void>((resolve) => (wake = resolve));
    }
    return inbox.shift()!;
  };
  return { child, next };
}

interface RaceTarget {
  /** The compiled module (under dist/) and its opener, and what it opens. */
  module: string;
  exportName: string;
  target: string;
  open: (now: () => Date) => Promise<StateStore>;
}

async function raceSchedulers(store: RaceTarget): Promise<void> {
  const racers: ReturnType<typeof racer>[] = [];
  try {
    const setup = await store.open(() => new Date(T0));
    const schedule = [
      { type: "interval" as const, everyMs: 1_000, startAt: null, endAt: null, parameters: {}, labels: null },
      { type: "cron" as const, cron: "* * * * *", timezone: "UTC", startAt: null, endAt: null, parameters: {}, labels: null },
    ];
    await setup.registerFlow(flowInput({ name: "raced", schedule }));
    await setup.close();

    // The interval clock makes 100 runs per pass: several passes each, at the same instant, all overlapping.
    for (let i = 0; i < 4; i++) racers.push(racer({ repo: REPO, module: store.module, exportName: store.exportName, target: store.target, nowMs: T0, passes: 8 }));
    for (const r of racers) expect(await r.next()).toEqual({ type: "ready" });
    for (const r of racers) r.child.send({ type: "go" });
    const reports = await Promise.all(racers.map((r) => r.next()));
    for (const report of reports) expect(report.type, JSON.stringify(report)).toBe("done");

    const check = await store.open(() => new Date(T0));
    try {
      const runs = await check.listFlowRuns({ flowName: "raced", limit: 100_000 });
      const slots = runs.map((r) => `${r.clock}@${r.scheduledStart}`);
      expect(new Set(slots).size, "no slot has two runs").toBe(slots.length);
      // Ten minutes ahead: 600 one-second slots and 10 one-minute slots.
      expect(runs.length).toBe(610);
      expect(reports.reduce((sum, r) => sum + (r.type === "done" ? r.created : 0), 0), "each run was reported made by exactly one racer").toBe(610);
      const ticks = await check.listScheduleTicks("raced", 10_000);
      expect(ticks.filter((t) => t.outcome === "created" && t.flowRunId !== null)).toHaveLength(610);
    } finally {
      await check.close();
    }
  } finally {
    for (const r of racers) r.child.kill("SIGKILL");
  }
}

describe("schedulers racing on one database", () => {
  it("make each slot's run once, whoever decides it (SQLite)", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "berth-scheduler-race-"));
    const file = path.join(dir, "berth.db");
    try {
      await raceSchedulers({ module: "store/sqlite.js", exportName: "openSqliteStore", target: file, open: (now) => openSqliteStore(file, { now }) });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describePostgres("on PostgreSQL", () => {
    const clusterOf = useCluster();

    it("make each slot's run once, whoever decides it (PostgreSQL)", async () => {
      const url = await clusterOf().database("scheduler_race");
      await raceSchedulers({ module: "store/postgres.js", exportName: "openPostgresStore", target: url, open: (now) => openPostgresStore(url, { now }) });
    });
  });
});

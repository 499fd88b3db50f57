/**
 * Claimers racing in real OS processes on one store: claim-racer.ts is compiled to plain JavaScript, forked
 * `processes` times, and released all at once when every copy has opened the store, so that the claims overlap
 * instead of the first process taking everything while the others start. Every racer is killed and the
 * compiled script removed afterwards, on failure too.
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { ParentMessage, RacerMessage, RacerSetup, ReportedClaim } from "./claim-race-protocol.js";

const RACER_SOURCE = fileURLToPath(new URL("./claim-racer.ts", import.meta.url));

export interface ProcessRace {
  setups: readonly RacerSetup[];
  /** Gives up, killing every racer, after this long. */
  deadlineMs: number;
}

/** Resolves with every claim every racer reported; rejects if any racer fails, dies or overruns the deadline. */
export async function raceProcesses({ setups, deadlineMs }: ProcessRace): Promise<ReportedClaim[]> {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-racer-"));
  const racers: Racer[] = [];
  try {
    const script = path.join(dir, "claim-racer.mjs");
    await build({
      entryPoints: [RACER_SOURCE],
      outfile: script,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      sourcemap: "inline",
      logLevel: "silent",
    });
    return await bounded(deadlineMs, "the racers to finish", async () => {
      racers.push(...setups.map((setup) => new Racer(script, setup)));
      await Promise.all(racers.map((racer) => racer.expect("ready")));
      for (const racer of racers) racer.send({ type: "go" });
      const reports = await Promise.all(racers.map((racer) => racer.expect("done")));
      return reports.flatMap((report) => report.claims);
    });
  } finally {
    await Promise.all(racers.map((racer) => racer.kill()));
    await rm(dir, { recursive: true, force: true });
  }
}

async function bounded<T>(ms: number, what: string, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([work(), overrun]);
  } finally {
    clearTimeout(timer);
  }
}

/** One forked racer; its messages are queued so that none is missed between two waits. */
class Racer {
  private readonly child: ChildProcess;
  private readonly inbox: RacerMessage[] = [];
  private output = "";
  private closed = false;
  private wake: (() => void) | undefined;

  constructor(script: string, setup: RacerSetup) {
    this.child = fork(script, [JSON.stringify(setup)], { stdio: ["ignore", "pipe", "pipe", "ipc"], execArgv: ["--enable-source-maps"] });
    const keep = (d: Buffer): void => {
      this.output += d.toString();
    };
    this.child.stdout?.on("data", keep);
    this.child.stderr?.on("data", keep);
    this.child.on("message", (message: RacerMessage) => {
      this.inbox.push(message);
      this.wake?.();
    });
    this.child.on("error", (err) => {
      this.output += `\n${err.stack ?? err.message}`;
    });
    // "close" comes after the exit and after the IPC channel has delivered its last message.
    this.child.on("close", () => {
      this.closed = true;
      this.wake?.();
    });
  }

  send(message: ParentMessage): void {
    this.child.send(message);
  }

  /** The racer's next message, which must be of `type`; a racer that failed or died makes this reject. */
  async expect<T extends RacerMessage["type"]>(type: T): Promise<Extract<RacerMessage, { type: T }>> {
    for (;;) {
      const message = this.inbox.shift();
      if (message?.type === type) return message as Extract<RacerMessage, { type: T }>;
      if (message?.type === "failed") throw new Error(`racer ${this.child.pid} failed:\n${message.error}`);
      if (message) throw new Error(`racer ${this.child.pid} said ${message.type}, expected ${type}`);
      if (this.closed) {
        const how = this.child.signalCode ?? `code ${this.child.exitCode}`;
        throw new Error(`racer ${this.child.pid} ended (${how}) before saying ${type}; its output:\n${this.output}`);
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async kill(): Promise<void> {
    // Without a pid the fork never started, and no "close" will come.
    if (this.closed || this.child.pid === undefined) return;
    const closed = new Promise<void>((resolve) => this.child.once("close", () => resolve()));
    this.child.kill("SIGKILL");
    await closed;
  }
}

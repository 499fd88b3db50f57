/** Real berth processes for end-to-end tests: spawned from the built CLI, always killed afterwards. */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = path.join(REPO, "dist", "cli", "main.js");

/**
 * The admin token of every berth process a test starts (servers require it, clients and agents send it), so
 * that tests run with authentication on, as users do. A test may give another (or "" for none) in `env`.
 */
export const TEST_TOKEN = `berth_admin_test_${process.pid}_${Date.now().toString(36)}`;

import { freePort } from "../../bench/ports.js";

export { freePort };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one berth command to completion (bounded by timeoutMs). */
export async function berth(args: string[], options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string; cli?: string } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [options.cli ?? CLI, ...args], {
    cwd: options.cwd ?? REPO,
    env: { ...process.env, BERTH_LOG_FORMAT: "json", BERTH_API_TOKEN: TEST_TOKEN, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A long-running berth process (server, agent) whose output can be awaited line by line. */
export class BerthProcess {
  readonly child: ChildProcess;
  output = "";
  private waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];

  /** `cli` and `cwd`: another berth than the clone's (an installed package), run from another directory. */
  constructor(args: string[], env: Record<string, string> = {}, options: { cli?: string; cwd?: string } = {}) {
    this.child = spawn(process.execPath, [options.cli ?? CLI, ...args], {
      cwd: options.cwd ?? REPO,
      env: { ...process.env, BERTH_LOG_FORMAT: "json", BERTH_API_TOKEN: TEST_TOKEN, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const onData = (d: Buffer) => {
      this.output += d.toString();
      for (const w of [...this.waiters]) {
        const match = this.output.split("\n").find((l) => w.pattern.test(l));
        if (match !== undefined) {
          this.waiters = this.waiters.filter((x) => x !== w);
          w.resolve(match);
        }
      }
    };
    this.child.stdout!.on("data", onData);
    this.child.stderr!.on("data", onData);
  }

  /** Resolves with the first output line matching `pattern`; rejects if the process exits or time runs out. */
  waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<string> {
    const existing = this.output.split("\n").find((l) => pattern.test(l));
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; output:\n${this.output}`)), timeoutMs);
      const onExit = () => reject(new Error(`process exited before ${pattern}; output:\n${this.output}`));
      this.child.once("exit", onExit);
      this.waiters.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          this.child.off("exit", onExit);
          resolve(line);
        },
      });
    });
  }

  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT...); for SIGKILL, resolves once the process is gone. */
  async signal(signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = signal === "SIGKILL" ? once(this.child, "exit") : undefined;
    this.child.kill(signal);
    await exited;
  }

  /** `await using agent = new BerthProcess(...)`: stopped when the block ends, whatever happens in it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code. */
  async stop(graceMs = 15_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const exited = once(this.child, "exit");
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    const [code] = (await exited) as [number | null];
    clearTimeout(timer);
    return code;
  }
}

/** A berth server on a free loopback port with a fresh SQLite file. */
export async function startServer(
  dir: string,
  env: Record<string, string> = {},
  port?: number,
): Promise<{ proc: BerthProcess; url: string; port: number }> {
  port ??= await freePort();
  const proc = new BerthProcess(["server", "--port", String(port), "--db", path.join(dir, "berth.db")], env);
  await proc.waitFor(/listening on/);
  return { proc, url: `http://127.0.0.1:${port}`, port };
}

/** An agent with labels; resolves once it is claiming. */
export async function startAgent(
  url: string,
  labels: string[],
  name: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<BerthProcess> {
  const args = ["agent", "--api", url, "--name", name, ...labels.flatMap((l) => ["--label", l]), ...extra];
  const proc = new BerthProcess(args, { BERTH_AGENT_HEARTBEAT_INTERVAL: "1s", ...env });
  await proc.waitFor(/is claiming flow runs/, 180_000);
  return proc;
}

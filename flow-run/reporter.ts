/**
 * Ships a flow run's logs and task states to the server in batches, off the task runner's hot path.
 * Reporting never throws into user code:
 * - a batch the server could not take (it is down, or failed) stays queued and is sent again; `drain()` at
 *   the end of the run keeps trying while the server restarts;
 * - a batch the server refuses as invalid is dropped and counted, since sending it again cannot help; a batch
 *   too large for the server is split until it fits (a single line that still does not fit is dropped);
 * - each log line carries its number in the attempt (`seq`), so a line sent again after a lost reply is
 *   stored once; accepted chunks leave the queue as they are accepted, so a failure part-way resends only
 *   what was not taken.
 */
import type { RunClient } from "../client/run-client.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { cutText } from "../shared/text.js";
import { describeError, isBerthError } from "../wire/errors.js";
import { MAX_LOG_MESSAGE_LENGTH, MAX_STATE_MESSAGE_LENGTH, STATE_REPORT_MAX } from "../wire/constants.js";
import type { LogLevel, LogLine, TaskRun } from "../wire/schema.js";

export interface ReporterOptions {
  client: RunClient;
  flowRunId: string;
  /** How often buffered lines are sent (default 250 ms). */
  flushIntervalMs?: number;
  /** Send at once when this many lines are buffered (default 500). */
  maxBatch?: number;
  /** Where reporting problems are written (default: stderr). */
  warn?: (message: string) => void;
  /** The attempt's lease epoch, sent with every batch. */
  epoch?: number | undefined;
  /** Called when the server refuses a batch because another attempt owns the run. */
  onFenced?: () => void;
}

/** Most lines per request, and most bytes of JSON: well under the server's default body limit (16 MiB). */
const CHUNK_LINES = 2_000;
const CHUNK_BYTES = 2 * 1024 * 1024;

type Outcome = "sent" | "retry" | "fenced";

/** What a flow-run state write carries of the reporter's queue. */
export interface StateReport {
  taskRuns: TaskRun[];
  logs: LogLine[];
}

/** Most bytes of log lines (estimated) a state write carries: a state write stays small. */
const STATE_REPORT_BYTES = 256 * 1024;

export class RunReporter {
  private logs: LogLine[] = [];
  /** Latest state per task slug: intermediate states of a fast task need not all reach the server. */
  private taskRuns = new Map<string, TaskRun>();
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** Set while a state write carries what was queued (takeForStateWrite): nothing is sent meanwhile. */
  private held: Promise<void> | undefined;
  private release: () => void = () => {};
  private fenced = false;
  failedFlushes = 0;
  /** Log lines and task states given up on: refused by the server, or still undelivered when drain() ended. */
  dropped = 0;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly warn: (message: string) => void;

  constructor(private readonly options: ReporterOptions) {
    this.flushIntervalMs = options.flushIntervalMs ?? 250;
    this.maxBatch = options.maxBatch ?? 500;
    this.warn = options.warn ?? ((m) => process.stderr.write(`${m}\n`));
  }

  /** Queues a line; returns its number in the attempt (the agent's recovery of the output uses it too). */
  log(level: LogLevel, message: string, task?: string | null): number {
    this.seq += 1;
    this.logs.push({ at: new Date().toISOString(), level, message: cutText(message, MAX_LOG_MESSAGE_LENGTH), task: task ?? null, seq: this.seq });
    this.schedule(this.logs.length >= this.maxBatch);
    return this.seq;
  }

  taskState(run: TaskRun): void {
    const message = run.message ? cutText(run.message, MAX_STATE_MESSAGE_LENGTH) : run.message;
    this.taskRuns.set(run.taskSlug, { ...run, message });
    this.schedule(this.taskRuns.size >= this.maxBatch);
  }

  private schedule(now: boolean): void {
    if (now) {
      void this.flush();
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.flushIntervalMs);
    this.timer.unref();
  }

  /** Sends everything buffered; resolves when it has been sent (or has failed and stays queued). */
  async flush(): Promise<void> {
    while (this.flushing || this.held) await (this.flushing ?? this.held);
    if (this.empty || this.fenced) return;
    this.flushing = this.send().finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  /** Nothing is waiting to be sent. */
  get empty(): boolean {
    return this.logs.length === 0 && this.taskRuns.size === 0;
  }

  /**
   * Sends everything buffered, waiting out an unreachable server for up to `forMs`; counts what is still
   * undelivered after that. The waits hold the process open: the run's last lines are work in progress.
   */
  async drain(forMs: number): Promise<void> {
    const deadline = Date.now() + forMs;
    for (let attempt = 0; ; attempt++) {
      await this.flush();
      if (this.empty || this.fenced) return;
      const delay = backoffMs(attempt, { maxMs: 5_000 });
      if (Date.now() + delay > deadline) {
        const left = this.logs.length + this.taskRuns.size;
        this.dropped += left;
        this.warn(`berth: ${left} log line(s) and task state(s) could not be delivered within ${Math.round(forMs / 1000)} s; given up`);
        return;
      }
      await sleep(delay, undefined, { keepAlive: true });
    }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Takes everything buffered out of the queue, once any send under way is over, for a flow-run state write
   * to carry (StateChange) instead of requests of its own; undefined, leaving the queue as it is, when there
   * is nothing to carry or too much for one state write (drain() first). Until `stateWriteDone`, nothing is sent: what is logged
   * meanwhile waits, so that no line reaches the server ahead of those the state write carries.
   */
  async takeForStateWrite(): Promise<StateReport | undefined> {
    while (this.flushing || this.held) await (this.flushing ?? this.held);
    // From here on nothing awaits: no send can start between the check and the taking.
    if (this.empty || this.fenced || this.logs.length > STATE_REPORT_MAX || this.taskRuns.size > STATE_REPORT_MAX) return undefined;
    let bytes = 0;
    for (const line of this.logs) bytes += line.message.length * 3 + 200;
    if (bytes > STATE_REPORT_BYTES) return undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const report = { taskRuns: [...this.taskRuns.values()], logs: this.logs };
    this.taskRuns.clear();
    this.logs = [];
    this.held = new Promise<void>((resolve) => (this.release = resolve));
    return report;
  }

  /**
   * After the state write that carried `report`: sending resumes, and what it did not deliver is queued again,
   * before anything logged since (bar task states that moved on meanwhile).
   */
  stateWriteDone(report: StateReport, delivered: boolean): void {
    if (!delivered) {
      const newer = this.taskRuns;
      this.taskRuns = new Map(report.taskRuns.map((t) => [t.taskSlug, t]));
      for (const [slug, t] of newer) this.taskRuns.set(slug, t);
      this.logs = [...report.logs, ...this.logs];
    }
    this.held = undefined;
    this.release();
    if (!this.empty) this.schedule(false);
  }

  private async send(): Promise<void> {
    // Task states first, then logs, each on its own: a refusal of one does not cost the other.
    const taskRuns = [...this.taskRuns.values()];
    this.taskRuns.clear();
    let outcome: Outcome = "sent";
    for (let i = 0; i < taskRuns.length && outcome === "sent"; i += CHUNK_LINES) {
      const chunk = taskRuns.slice(i, i + CHUNK_LINES);
      const result = await this.deliver(chunk.length, "task state", (signal) => this.options.client.updateTaskRuns(this.options.flowRunId, chunk, this.options.epoch, signal));
      // Task states are never split (a state is small): "split" cannot come back here.
      outcome = result === "split" ? "retry" : result;
      if (outcome === "retry") {
        // Not taken: keep what is left, unless a newer state of the task was reported meanwhile.
        for (const t of taskRuns.slice(i)) if (!this.taskRuns.has(t.taskSlug)) this.taskRuns.set(t.taskSlug, t);
      }
    }
    while (outcome === "sent" && this.logs.length > 0) {
      const chunk = this.nextLogChunk();
      outcome = await this.sendLogs(chunk);
      // Taken or given up on: either way it leaves the queue; a retry leaves it where it is.
      if (outcome === "sent") this.logs.splice(0, chunk.length);
    }
    if (outcome === "retry") {
      this.failedFlushes += 1;
      this.schedule(false);
    }
  }

  /** The oldest lines, up to CHUNK_LINES of them and about CHUNK_BYTES of JSON. */
  private nextLogChunk(): LogLine[] {
    let bytes = 0;
    let n = 0;
    while (n < this.logs.length && n < CHUNK_LINES) {
      bytes += this.logs[n]!.message.length * 3 + 200;
      if (n > 0 && bytes > CHUNK_BYTES) break;
      n += 1;
    }
    return this.logs.slice(0, n);
  }

  /** Sends lines; one that a server with a smaller body limit cannot take is split until it fits. */
  private async sendLogs(lines: LogLine[]): Promise<Outcome> {
    const append = (chunk: LogLine[]) => (signal?: AbortSignal) => this.options.client.appendLogs(this.options.flowRunId, chunk, this.options.epoch, signal);
    const outcome = await this.deliver(lines.length, "log line", append(lines), (err) => {
      if (!isBerthError(err, "BERTH_E_PAYLOAD_TOO_LARGE")) return false;
      return lines.length > 1;
    });
    if (outcome !== "split") return outcome;
    const half = Math.ceil(lines.length / 2);
    const first = await this.sendLogs(lines.slice(0, half));
    if (first !== "sent") return first;
    return this.sendLogs(lines.slice(half));
  }

  /**
   * One request. "sent": taken, or refused for good (dropped and counted); "retry": the server could not
   * take it now; "fenced": another attempt owns the run; "split": the caller should send it in halves.
   */
  private async deliver(
    count: number,
    what: string,
    request: (signal?: AbortSignal) => Promise<void>,
    splittable: (err: unknown) => boolean = () => false,
  ): Promise<Outcome | "split"> {
    try {
      await request();
      return "sent";
    } catch (err) {
      if (isBerthError(err, "BERTH_E_STALE_LEASE")) {
        // Another attempt owns the run: what this one has to say no longer counts.
        this.fenced = true;
        this.options.onFenced?.();
        return "fenced";
      }
      if (splittable(err)) return "split";
      if (isBerthError(err) && err.status >= 400 && err.status < 500) {
        this.dropped += count;
        this.warn(`berth: the server refused ${count} ${what}(s); dropped: ${describeError(err)}`);
        return "sent";
      }
      this.warn(`berth: could not report to the server (will retry): ${describeError(err)}`);
      return "retry";
    }
  }
}

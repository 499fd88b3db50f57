/**
 * Ships a flow run's logs and task states to the server in batches, off the task runner's hot path.
 * Reporting never throws into user code: a batch the server could not take (it is down) is kept and sent
 * again, and `drain()` at the end of the run keeps trying while the server restarts; a batch the server
 * refuses as invalid is dropped and counted, since sending it again cannot help.
 */
import type { ApiClient } from "../client/api-client.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { describeError, isBerthError } from "../wire/errors.js";
import { MAX_LOG_MESSAGE_LENGTH, type LogLevel, type LogLine, type TaskRun } from "../wire/schema.js";

export interface ReporterOptions {
  client: ApiClient;
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

export class RunReporter {
  private logs: LogLine[] = [];
  /** Latest state per task slug: intermediate states of a fast task need not all reach the server. */
  private taskRuns = new Map<string, TaskRun>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
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

  log(level: LogLevel, message: string, task?: string | null): void {
    // The server takes lines of up to MAX_LOG_MESSAGE_LENGTH characters; a longer one is cut, not refused.
    const text = message.length > MAX_LOG_MESSAGE_LENGTH ? `${message.slice(0, MAX_LOG_MESSAGE_LENGTH - 40)}… [cut: ${message.length} characters]` : message;
    this.logs.push({ at: new Date().toISOString(), level, message: text, task: task ?? null });
    this.schedule(this.logs.length >= this.maxBatch);
  }

  taskState(run: TaskRun): void {
    this.taskRuns.set(run.taskSlug, run);
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

  /** Sends everything buffered; resolves when it has been sent (or has failed and been re-queued). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.logs.length === 0 && this.taskRuns.size === 0) return;
    this.flushing = this.send().finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  private async send(): Promise<void> {
    const { client, flowRunId, epoch } = this.options;
    const taskRuns = [...this.taskRuns.values()];
    this.taskRuns.clear();
    const logs = this.logs;
    this.logs = [];
    try {
      if (taskRuns.length > 0) {
        for (let i = 0; i < taskRuns.length; i += 5_000) await client.updateTaskRuns(flowRunId, taskRuns.slice(i, i + 5_000), epoch);
      }
      for (let i = 0; i < logs.length; i += 5_000) await client.appendLogs(flowRunId, logs.slice(i, i + 5_000), epoch);
    } catch (err) {
      if (isBerthError(err, "BERTH_E_STALE_LEASE")) {
        // Another attempt owns the run: what this one has to say no longer counts.
        this.fenced = true;
        this.options.onFenced?.();
        return;
      }
      if (isBerthError(err) && err.status >= 400 && err.status < 500) {
        this.dropped += logs.length + taskRuns.length;
        this.warn(`berth: the server refused ${logs.length} log line(s) and ${taskRuns.length} task state(s); dropped: ${describeError(err)}`);
        return;
      }
      this.failedFlushes += 1;
      this.warn(`berth: could not report to the server (will retry): ${describeError(err)}`);
      for (const t of taskRuns) if (!this.taskRuns.has(t.taskSlug)) this.taskRuns.set(t.taskSlug, t);
      this.logs = logs.concat(this.logs);
      this.schedule(false);
    }
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
}

/**
 * The `ctx` a task attempt receives. Its logger is made only if the task asks for one, which keeps an
 * attempt's cost to a couple of small allocations.
 */
import { createLogger, type Logger, type LogSink } from "../shared/logging.js";
import type { TaskContext } from "./task.js";

export class AttemptContext implements TaskContext {
  private log: Logger | undefined;

  constructor(
    readonly signal: AbortSignal,
    readonly attempt: number,
    readonly taskName: string,
    readonly taskSlug: string,
    private readonly sink: LogSink | undefined,
  ) {}

  get logger(): Logger {
    this.log ??= createLogger({ task: this.taskSlug, attempt: this.attempt }, this.sink);
    return this.log;
  }
}

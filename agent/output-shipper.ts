/**
 * Ships a run's container output to the server as run logs (see shared/output-frames.ts): unframed lines
 * (process.stdout.write, child processes, native modules) as they come, with their stream; framed console
 * lines once the container has stopped, if it did not exit by itself, so that what the runtime could not
 * ship before it died is recovered (the store keeps a numbered line once, so the others cost nothing but the
 * request).
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { whileServerDown } from "../client/retry.js";
import type { ContainerEngine } from "../engine/port.js";
import { OutputReader } from "../shared/output-frames.js";
import { describeError, isBerthError } from "../wire/errors.js";
import type { LogLine } from "../wire/schema.js";
import type { AgentMetrics } from "./metrics.js";

/** Lines per request, and how long a line may wait for others to share its request. */
const BATCH = 500;
const BATCH_MS = 200;
/** Console lines kept for the recovery at the end; older ones were shipped by the runtime long since. */
const KEPT_CONSOLE_LINES = 20_000;

export interface OutputShipperDeps {
  client: ApiClient;
  engine: ContainerEngine;
  log: Logger;
  metrics: AgentMetrics;
  flowRunId: string;
  epoch: number;
  serverDownForMs: number;
}

/** When the last line of output came (performance.now()), for the caller to tell a quiet follow from a busy one. */
export interface OutputProgress {
  lastLineAt: number;
}

/**
 * Follows the container's output until it ends (or `signal` aborts). `recover`, asked at the end, says whether
 * the runtime may have left console lines unsent (the container did not exit by itself): then they are sent.
 */
export async function shipOutput(
  deps: OutputShipperDeps,
  containerId: string,
  signal: AbortSignal,
  progress: OutputProgress,
  recover: () => boolean,
): Promise<void> {
  const reader = new OutputReader();
  const kept: LogLine[] = [];
  let batch: LogLine[] = [];
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<void> = Promise.resolve();
  let fenced = false;

  const send = async (lines: LogLine[]): Promise<void> => {
    if (fenced || lines.length === 0) return;
    try {
      await whileServerDown(() => deps.client.appendLogs(deps.flowRunId, lines, deps.epoch), { forMs: deps.serverDownForMs, signal });
      deps.metrics.logLines.inc({ result: "shipped" }, lines.length);
    } catch (err) {
      // Another attempt owns the run: its output is no longer ours to ship.
      if (isBerthError(err, "BERTH_E_STALE_LEASE")) fenced = true;
      deps.metrics.logLines.inc({ result: "dropped" }, lines.length);
      deps.log.warn(`could not ship ${lines.length} line(s) of the container's output: ${describeError(err)}`);
    }
  };
  const flush = (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    const lines = batch;
    batch = [];
    sending = sending.then(() => send(lines));
    return sending;
  };

  try {
    for await (const line of deps.engine.followOutput(containerId, signal)) {
      progress.lastLineAt = performance.now();
      const read = reader.read(line);
      if (!read) continue;
      if (read.kind === "console") {
        kept.push(read.line);
        if (kept.length > KEPT_CONSOLE_LINES) kept.shift();
        continue;
      }
      batch.push(read.line);
      if (batch.length >= BATCH) await flush();
      else timer ??= setTimeout(() => void flush(), BATCH_MS);
    }
  } catch (err) {
    if (!signal.aborted) deps.log.warn(`stopped following the container's output: ${describeError(err)}`);
  }
  await flush();
  if (!recover()) return;
  kept.push(...reader.unfinished());
  for (let i = 0; i < kept.length; i += 5_000) await send(kept.slice(i, i + 5_000));
}

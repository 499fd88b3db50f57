/**
 * (e) claim throughput behind a concurrency limit: 10,000 queued runs drained by simulated agent slots that
 * claim one run at a time and finish the oldest when a claim finds nothing, against the same queue without a
 * limit. Straight on the SQLite store (a file, as `berth server` uses it), where the limit is enforced, so
 * that nothing else (HTTP, JSON) dilutes what the limit costs.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { openSqliteStore } from "../store/sqlite.js";
import { benchFlow } from "./flow-body.js";
import type { FlowRun } from "../wire/schema.js";

export interface ClaimBenchResult {
  /** Runs claimed per second, draining the whole queue. */
  unlimited: number;
  limited: number;
  runs: number;
  slots: number;
  limit: number;
}

export async function runClaimBench({ runs = 10_000, slots = 8, limit = 4 } = {}): Promise<ClaimBenchResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-claim-bench-"));
  try {
    const unlimited = await drain(path.join(dir, "unlimited.db"), runs, slots, undefined);
    const limited = await drain(path.join(dir, "limited.db"), runs, slots, limit);
    return { unlimited, limited, runs, slots, limit };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function drain(file: string, runs: number, slots: number, limit: number | undefined): Promise<number> {
  const store = await openSqliteStore(file);
  try {
    const { flow } = await store.registerFlow(benchFlow("claim-bench", ["etl"]));
    for (let i = 0; i < runs; i++) await store.createFlowRun({ flow, parameters: {}, labels: ["etl"] });
    if (limit !== undefined) await store.setConcurrencyLimit("etl", limit);
    const active: FlowRun[] = [];
    let claimed = 0;
    const started = performance.now();
    while (claimed < runs || active.length > 0) {
      const got = active.length < slots && claimed < runs ? await store.claimFlowRuns("bench-agent", ["etl"], 1, 60_000) : [];
      if (got.length > 0) {
        active.push(...got);
        claimed += got.length;
        continue;
      }
      const done = active.shift();
      if (!done) throw new Error(`the queue stalled with ${runs - claimed} runs unclaimed`);
      await store.setFlowRunState(done.id, { state: "Success", expectedVersion: done.version });
    }
    return runs / ((performance.now() - started) / 1000);
  } finally {
    await store.close();
  }
}

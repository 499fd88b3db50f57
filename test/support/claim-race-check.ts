/**
 * What a claim race must end with, however it was run: every run handed to exactly one claimer, none lost,
 * and the stored run agreeing with the one claim (one attempt, the claimer's agent, a history of one claim).
 */
import { expect } from "vitest";
import type { FlowRun, FlowRunStateEntry } from "../../wire/schema.js";
import type { ReportedClaim } from "./claim-race-protocol.js";

/** How many run histories are read back at once. */
const READING_AT_ONCE = 8;

/** Reads the raced runs back, from the store itself or through a server. */
export interface RunReader {
  /** Every run of the race's database, which holds no others. */
  listFlowRuns(): Promise<FlowRun[]>;
  listFlowRunStates(id: string): Promise<FlowRunStateEntry[]>;
}

export async function expectEachRunClaimedOnce(created: readonly string[], claims: readonly ReportedClaim[], reader: RunReader): Promise<void> {
  const createdIds = new Set(created);
  const byRun = new Map<string, ReportedClaim[]>();
  for (const claim of claims) byRun.set(claim.flowRunId, [...(byRun.get(claim.flowRunId) ?? []), claim]);
  const twice = [...byRun].filter(([, got]) => got.length > 1).map(([id, got]) => `${id} by ${got.map((c) => c.claimer).join(", ")}`);
  expectNone(twice, "runs handed to more than one claim");
  expectNone(created.filter((id) => !byRun.has(id)), "runs nobody received");
  expectNone([...byRun.keys()].filter((id) => !createdIds.has(id)), "claims of runs never created");

  // The race means something only if processes competed; one process taking everything would prove nothing.
  // Each claimer stops at its first empty claim, so a store whose claim can come back empty while runs are
  // still waiting ends claimers early and shows up here too.
  const processes = new Set(claims.map((c) => c.process));
  expect(processes.size, "processes that claimed runs (1: the claims never overlapped, or claims came back empty while runs waited)").toBeGreaterThan(1);

  const unexpected = claims.filter((c) => c.state !== "Submitted" || c.version !== 1 || c.epoch !== 1);
  expectNone(unexpected, "claims that were not the first attempt of a Scheduled run");

  const stored = new Map((await reader.listFlowRuns()).map((run) => [run.id, run]));
  expectNone([...stored.keys()].filter((id) => !createdIds.has(id)), "stored runs the race never created");
  const disagreeing: string[] = [];
  const check = async (claim: ReportedClaim): Promise<void> => {
    const run = stored.get(claim.flowRunId);
    const current = { state: run?.state, version: run?.version, epoch: run?.epoch, agentId: run?.agentId };
    const history = (await reader.listFlowRunStates(claim.flowRunId)).map((s) => `${s.state}@${s.version}:${s.agentId ?? "-"}`);
    const expected = { state: "Submitted", version: 1, epoch: 1, agentId: claim.agentId };
    const expectedHistory = ["Scheduled@0:-", `Submitted@1:${claim.agentId}`];
    if (JSON.stringify(current) !== JSON.stringify(expected) || JSON.stringify(history) !== JSON.stringify(expectedHistory)) {
      disagreeing.push(`${claim.flowRunId} claimed by ${claim.claimer}: stored ${JSON.stringify(current)}, history ${history.join(" ")}`);
    }
  };
  for (let i = 0; i < claims.length; i += READING_AT_ONCE) await Promise.all(claims.slice(i, i + READING_AT_ONCE).map(check));
  expectNone(disagreeing, "stored runs that disagree with their one claim");
}

/** Fails with how many there are and the first few, rather than hundreds of lines. */
function expectNone(found: readonly unknown[], what: string): void {
  expect(found.slice(0, 5), `${found.length} ${what} (at most 5 shown)`).toEqual([]);
}

/**
 * The claim race: berth's promise that a flow run is claimed by exactly one agent, tested where it can break,
 * with claimers in separate OS processes on one database. Two races, each pointed at a store by the caller:
 *
 * - processes claiming straight from the store (each opens it itself), and
 * - claimers through the HTTP API of several `berth server` processes that share one database.
 *
 * Both start from hundreds of Scheduled runs and end when no claimer finds one; claim-race-check.ts says what
 * must then hold. The child processes run compiled code from dist/, so build first (`npm run build`).
 */
import { TEST_TOKEN } from "./processes.js";
import { describe, it } from "vitest";
import { ApiClient } from "../../client/api-client.js";
import type { StateStore } from "../../store/port.js";
import { expectEachRunClaimedOnce } from "./claim-race-check.js";
import { raceProcesses } from "./claim-race-processes.js";
import { openStore, type RacerSetup, type ReportedClaim, type StoreOpener } from "./claim-race-protocol.js";
import { flowBody, flowInput, uniqueName } from "./fixtures.js";

export interface StoreRaceTarget {
  /** Makes a fresh, empty database: how any process opens it, and how to remove it afterwards. */
  create(): Promise<{ opener: StoreOpener; dispose(): Promise<void> }>;
}

export interface ServerRaceTarget {
  /**
   * Starts `count` berth server processes on one fresh, shared database and resolves once all listen; `stop`
   * ends every one of them and removes the database. Leases must outlast the race, so the reaper gives nothing back.
   */
  start(count: number): Promise<{ urls: string[]; stop(): Promise<void> }>;
}

/** Runs to claim: fewer through the API, where each claim costs a round trip and a few more writes. */
const STORE_RUNS = 400;
const API_RUNS = 200;
const PROCESSES = 5;
const SERVERS = 3;
const CLAIMERS_PER_SERVER = 3;
/** Claimers' label sets; every run carries "gpu" only, so every claimer can take every run. */
const LABELS = [["gpu"], ["gpu", "linux"]] as const;
/** Far longer than the race: no lease runs out while it lasts. */
const LEASE_MS = 10 * 60_000;
/** A bound on a race that hangs (the normal race takes a few seconds). */
const DEADLINE_MS = 60_000;
/** How many runs are created at once through the API. */
const CREATING_AT_ONCE = 8;
/** Lists every run of the race at once (the API's largest page). */
const LIST_LIMIT = 1000;

export function describeClaimRace(name: string, targets: { store: StoreRaceTarget; servers: ServerRaceTarget }): void {
  describe(`claim race: ${name}`, () => {
    it(`hands each of ${STORE_RUNS} runs to exactly one of ${PROCESSES} processes claiming from one store at once`, async () => {
      const db = await targets.store.create();
      let store: StateStore | undefined;
      try {
        store = await openStore(db.opener);
        const { flow } = await store.registerFlow(flowInput({ labels: ["gpu"] }));
        const created: string[] = [];
        for (let i = 0; i < STORE_RUNS; i++) created.push((await store.createFlowRun({ flow, parameters: {}, labels: ["gpu"] })).flowRun.id);
        const setups: RacerSetup[] = Array.from({ length: PROCESSES }, (_, p) => ({
          opener: db.opener,
          leaseMs: LEASE_MS,
          claimers: [{ name: `racer-${p}`, labels: LABELS[p % LABELS.length] ?? [], max: 1 + (p % 3) }],
        }));
        const claims = await raceProcesses({ setups, deadlineMs: DEADLINE_MS });
        const reader = store;
        await expectEachRunClaimedOnce(created, claims, {
          listFlowRuns: () => reader.listFlowRuns({ limit: LIST_LIMIT }),
          listFlowRunStates: (id) => reader.listFlowRunStates(id),
        });
      } finally {
        try {
          await store?.close();
        } finally {
          await db.dispose();
        }
      }
    }, 2 * DEADLINE_MS);

    it(`hands each of ${API_RUNS} runs to exactly one of ${SERVERS * CLAIMERS_PER_SERVER} claimers on ${SERVERS} servers sharing one database`, async () => {
      const servers = await targets.servers.start(SERVERS);
      try {
        const clients = servers.urls.map((baseUrl) => new ApiClient({ baseUrl, token: TEST_TOKEN }));
        const client = (n: number): ApiClient => clients[n % clients.length] as ApiClient;
        const signal = AbortSignal.timeout(DEADLINE_MS);
        const { flow } = await client(0).registerFlow(flowBody({ labels: ["gpu"] }), signal);
        const created: string[] = [];
        for (let i = 0; i < API_RUNS; i += CREATING_AT_ONCE) {
          const batch = Array.from({ length: Math.min(CREATING_AT_ONCE, API_RUNS - i) }, () =>
            client(0).createFlowRun({ flowId: flow.id, parameters: {} }, signal),
          );
          created.push(...(await Promise.all(batch)).map((reply) => reply.flowRun.id));
        }
        const claimers = await Promise.all(
          Array.from({ length: SERVERS * CLAIMERS_PER_SERVER }, async (_, n) => {
            const name = uniqueName(`racer-${n}`);
            const agent = await client(n).registerAgent({ name, labels: [...(LABELS[n % LABELS.length] ?? [])] }, signal);
            return { name, agentId: agent.id, api: client(n), max: 1 + (n % 3) };
          }),
        );
        // Registered first, then released together, so that the claims overlap.
        const claims = (
          await Promise.all(
            claimers.map(async ({ name, agentId, api, max }) => {
              const mine: ReportedClaim[] = [];
              for (;;) {
                const { claims: got } = await api.claim(agentId, { max, waitMs: 0 }, signal);
                if (got.length === 0) return mine;
                for (const { flowRun: run } of got) {
                  mine.push({ process: api.baseUrl, claimer: name, agentId, flowRunId: run.id, state: run.state, version: run.version, epoch: run.epoch });
                }
              }
            }),
          )
        ).flat();
        // Read back through another server than the one that created the runs.
        const reader = client(SERVERS - 1);
        await expectEachRunClaimedOnce(created, claims, {
          listFlowRuns: async () => (await reader.listFlowRuns({ limit: LIST_LIMIT }, signal)).flowRuns,
          listFlowRunStates: (id) => reader.listFlowRunStates(id, signal),
        });
      } finally {
        await servers.stop();
      }
    }, 2 * DEADLINE_MS);
  });
}

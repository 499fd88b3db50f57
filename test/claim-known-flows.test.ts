/**
 * Lighter claims: an agent says which flow versions it holds (knownFlows), and the server sends a claimed
 * run's flow only when the agent does not have it; the agent keeps the flows it was sent, a bounded number,
 * and falls back to full claims against a server that predates knownFlows.
 */
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { runClaimLoop, ClaimLoopProgress } from "../agent/claim-loop.js";
import { FlowCache, type AgentClaim } from "../agent/flow-cache.js";
import { RunTable } from "../agent/run-table.js";
import type { EngineWatch } from "../agent/engine-watch.js";
import { BerthError } from "../wire/errors.js";
import type { ClaimReply, ClaimRequest, ClaimedRun, FlowRecord } from "../wire/schema.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { startTestServer, type TestServer } from "./support/server.js";

describe("claims and the flows an agent holds", () => {
  let s: TestServer;
  let client: ApiClient;
  beforeEach(async () => {
    s = await startTestServer();
    await s.app.listen({ host: "127.0.0.1", port: 0 });
    client = new ApiClient({ baseUrl: `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}` });
  });
  afterEach(async () => s.close());

  it("leaves out the flow of a run whose flow version the agent listed, and sends the others'", async () => {
    const tasks = Array.from({ length: 2_000 }, (_, i) => ({ slug: `t${i}`, name: `t${i}` }));
    const big = (await client.registerFlow(flowBody({ name: uniqueName("big"), tasks }))).flow;
    const small = (await client.registerFlow(flowBody({ name: uniqueName("small") }))).flow;
    const agent = await client.registerAgent({ name: uniqueName("agent") });
    const bigRun = (await client.createFlowRun({ flowId: big.id, parameters: {} })).flowRun;
    const smallRun = (await client.createFlowRun({ flowId: small.id, parameters: {} })).flowRun;
    const { claims } = await client.claim(agent.id, { max: 2, waitMs: 0, knownFlows: [big.id, "some-flow-it-once-ran"] });
    const byRun = new Map(claims.map((c) => [c.flowRun.id, c]));
    expect(byRun.get(bigRun.id)?.flow).toBeUndefined();
    expect(byRun.get(bigRun.id)?.runToken).toMatch(/^berth_run\./);
    expect(byRun.get(smallRun.id)?.flow).toEqual(small);

    // A run of the next version of the big flow: another id, so it is sent.
    const bigNext = (await client.registerFlow(flowBody({ name: big.name, tasks: tasks.slice(1) }))).flow;
    expect(bigNext.id).not.toBe(big.id);
    const nextRun = (await client.createFlowRun({ flowId: bigNext.id, parameters: {} })).flowRun;
    const next = await client.claim(agent.id, { waitMs: 0, knownFlows: [big.id] });
    expect(next.claims.map((c) => [c.flowRun.id, c.flow?.id])).toEqual([[nextRun.id, bigNext.id]]);
  });

  it("refuses a knownFlows list longer than an agent keeps", async () => {
    const agent = await client.registerAgent({ name: uniqueName("agent") });
    const err = await client.claim(agent.id, { waitMs: 0, knownFlows: Array.from({ length: 501 }, (_, i) => `f${i}`) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe("BERTH_E_VALIDATION");
    expect((err as BerthError).message).toMatch(/knownFlows/);
  });
});

const flow = (id: string): FlowRecord => ({ ...flowBody({ name: `flow-${id}` }), id, slug: `flow-${id}`, version: 1, createdAt: new Date(0).toISOString() }) as FlowRecord;
const claimOf = (runId: string, flowId: string, withFlow: boolean): ClaimedRun =>
  ({ flowRun: { id: runId, flowId }, ...(withFlow ? { flow: flow(flowId) } : {}), runToken: "t" }) as unknown as ClaimedRun;

describe("FlowCache", () => {
  it("completes claims from the flows they carry and from its copies, and keeps the most recently used within its bound", async () => {
    const cache = new FlowCache(2);
    const reads: string[] = [];
    const client = { getFlow: async (id: string) => (reads.push(id), flow(id)) } as unknown as ApiClient;
    const lost: string[] = [];
    const first = await cache.completeAll([claimOf("r1", "a", true), claimOf("r2", "b", true)], client, (c) => lost.push(c.flowRun.id));
    expect(first.map((c) => c.flow.id)).toEqual(["a", "b"]);
    expect(cache.ids()).toEqual(["a", "b"]);
    // "a" is used again, then "c" arrives: "b" is the least recently used, so it goes.
    const second = await cache.completeAll([claimOf("r3", "a", false), claimOf("r4", "c", true)], client, (c) => lost.push(c.flowRun.id));
    expect(second.map((c) => [c.flowRun.id, c.flow.id])).toEqual([["r3", "a"], ["r4", "c"]]);
    expect(cache.ids().sort()).toEqual(["a", "c"]);
    expect(reads).toEqual([]);
    // A claim without a flow the cache does not hold: read from the server; one that cannot be read is lost.
    const third = await cache.completeAll([claimOf("r5", "d", false)], client, (c) => lost.push(c.flowRun.id));
    expect(third.map((c) => c.flow.id)).toEqual(["d"]);
    expect(reads).toEqual(["d"]);
    const failing = { getFlow: async () => Promise.reject(new Error("down")) } as unknown as ApiClient;
    expect(await cache.completeAll([claimOf("r6", "e", false)], failing, (c) => lost.push(c.flowRun.id))).toEqual([]);
    expect(lost).toEqual(["r6"]);
  });
});

describe("the claim loop", () => {
  it("lists the flows it holds, and claims without them from a server that predates knownFlows", async () => {
    const requests: ClaimRequest[] = [];
    const launched: AgentClaim[] = [];
    let claiming = true;
    const client = {
      claim: async (_agentId: string, request: ClaimRequest): Promise<ClaimReply> => {
        requests.push(request);
        if (requests.length === 1) return { claims: [claimOf("r1", "a", true)] };
        if (request.knownFlows !== undefined) {
          throw new BerthError("BERTH_E_VALIDATION", "invalid body for POST /api/agents/x/claim: knownFlows is Unrecognized key");
        }
        claiming = false;
        return { claims: [claimOf("r2", "a", true)] };
      },
    } as unknown as ApiClient;
    await runClaimLoop({
      progress: new ClaimLoopProgress(),
      client,
      log: () => pino({ level: "silent" }),
      agentId: () => "agent",
      concurrency: 4,
      claimWaitMs: 0,
      runs: new RunTable(),
      engine: { healthy: true } as EngineWatch,
      claiming: () => claiming,
      stopping: new AbortController().signal,
      launch: (claim) => launched.push(claim),
      flows: new FlowCache(),
      register: async () => {},
    });
    expect(requests.map((r) => r.knownFlows)).toEqual([[], ["a"], undefined]);
    expect(launched.map((c) => [c.flowRun.id, c.flow.id])).toEqual([["r1", "a"], ["r2", "a"]]);
  });
});

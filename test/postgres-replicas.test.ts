/**
 * Server replicas on one PostgreSQL database: a claim parked on one replica is woken by a run created on
 * another (LISTEN/NOTIFY), and wake-ups come back after the database restarts.
 */
import { expect, it } from "vitest";
import { cancelsTopic } from "../server/notifier.js";
import { PostgresNotifier } from "../server/postgres-notifier.js";
import { openPostgresStore } from "../store/postgres.js";
import { flowBody } from "./support/fixtures.js";
import { describePostgres, useCluster } from "./support/postgres.js";
import { startTestServer } from "./support/server.js";
import { until } from "./support/wait.js";

describePostgres("server replicas on PostgreSQL", () => {
  const clusterOf = useCluster();

  it("wakes a claim parked on one replica when a run is created on another", async () => {
    const url = await clusterOf().database("replicas");
    const replica = async () => startTestServer({ store: await openPostgresStore(url), notifier: await PostgresNotifier.start({ url }) });
    await using a = await replica();
    await using b = await replica();
    const agent = JSON.parse((await a.app.inject({ method: "POST", url: "/api/agents", payload: { name: "parked", labels: ["etl"] } })).body);
    // Parked for a minute: only a wake-up from replica b answers it before the test's own timeout.
    const parked = a.app.inject({ method: "POST", url: `/api/agents/${agent.id}/claim`, payload: { waitMs: 60_000 } });
    await until("the claim to park", () => a.app.inject({ method: "GET", url: "/api/agents" }).then((r) => JSON.parse(r.body).agents[0]?.waiting === true));
    const flow = JSON.parse((await b.app.inject({ method: "POST", url: "/api/flows", payload: flowBody({ labels: ["etl"] }) })).body).flow;
    const run = JSON.parse((await b.app.inject({ method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id } })).body).flowRun;
    const claim = JSON.parse((await parked).body);
    expect(claim.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([run.id]);
  }, 30_000);

  it("answers an agent's cancel watch parked on one replica when its run is cancelled on another", async () => {
    const url = await clusterOf().database("cancels");
    const notifierOfA = await PostgresNotifier.start({ url });
    const replica = async (notifier?: PostgresNotifier) => startTestServer({ store: await openPostgresStore(url), notifier: notifier ?? (await PostgresNotifier.start({ url })) });
    await using a = await replica(notifierOfA);
    await using b = await replica();
    const post = (on: typeof a, path: string, payload: object = {}) => on.app.inject({ method: "POST", url: path, payload }).then((r) => JSON.parse(r.body));
    const agent = await post(a, "/api/agents", { name: "watcher", labels: [] });
    const flow = (await post(a, "/api/flows", flowBody())).flow;
    const run = (await post(a, "/api/flow-runs", { flowId: flow.id })).flowRun;
    const claimed = (await post(a, `/api/agents/${agent.id}/claim`, { waitMs: 0 })).claims[0].flowRun;
    await post(a, `/api/flow-runs/${run.id}/state`, { state: "Running", expectedVersion: claimed.version, epoch: claimed.epoch });
    // Parked for a minute: only a wake-up from replica b answers it before the test's own timeout.
    const watch = post(a, `/api/agents/${agent.id}/cancels`, { waitMs: 60_000 });
    await until("the watch to park", () => notifierOfA.waiting(cancelsTopic(agent.id)) === 1);
    expect((await post(b, `/api/flow-runs/${run.id}/cancel`)).state).toBe("Cancelling");
    expect(await watch).toEqual({ cancelRunIds: [run.id] });
  }, 30_000);

  it("gives a lost run back once, however many replicas' reapers find it at the same moment", async () => {
    const url = await clusterOf().database("reapers");
    let clock = Date.parse("2030-01-01T00:00:00Z");
    const now = () => clock;
    const replica = async () =>
      startTestServer({ now, config: { reaperIntervalMs: 0 }, store: await openPostgresStore(url, { now: () => new Date(clock) }), notifier: await PostgresNotifier.start({ url }) });
    const replicas = [await replica(), await replica(), await replica()];
    try {
      const [a] = replicas as [Awaited<ReturnType<typeof replica>>];
      const flow = JSON.parse((await a.app.inject({ method: "POST", url: "/api/flows", payload: flowBody() })).body).flow;
      const runs: string[] = [];
      for (let i = 0; i < 5; i++) runs.push(JSON.parse((await a.app.inject({ method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id } })).body).flowRun.id);
      const agent = JSON.parse((await a.app.inject({ method: "POST", url: "/api/agents", payload: { name: "vanishing" } })).body);
      const claimed = JSON.parse((await a.app.inject({ method: "POST", url: `/api/agents/${agent.id}/claim`, payload: { waitMs: 0, max: 5 } })).body).claims;
      expect(claimed).toHaveLength(5);
      // The agent vanishes; long after its leases ran out, every replica's reaper passes at once.
      clock += 10 * 60_000;
      await Promise.all(replicas.map((r) => r.app.reaper.reapOnce(clock)));
      for (const id of runs) {
        const states = JSON.parse((await a.app.inject({ method: "GET", url: `/api/flow-runs/${id}/states` })).body).states.map((e: { state: string }) => e.state);
        expect(states, id).toEqual(["Scheduled", "Submitted", "Scheduled"]);
      }
    } finally {
      for (const r of replicas) await r.close();
    }
  });

  it("sees an agent whose claim is parked on one replica as alive and waiting on every replica", async () => {
    const url = await clusterOf().database("presence");
    let clock = Date.parse("2030-01-01T00:00:00Z");
    const now = () => clock;
    const config = { reaperIntervalMs: 0, agentLostAfterMs: 10_000, cancelTimeoutMs: 10_000 };
    const replica = async () => startTestServer({ now, config, store: await openPostgresStore(url, { now: () => new Date(clock) }), notifier: await PostgresNotifier.start({ url }) });
    await using a = await replica();
    await using b = await replica();
    const flow = JSON.parse((await a.app.inject({ method: "POST", url: "/api/flows", payload: flowBody() })).body).flow;
    const run = JSON.parse((await a.app.inject({ method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id } })).body).flowRun;
    const agent = JSON.parse((await a.app.inject({ method: "POST", url: "/api/agents", payload: { name: "parked" } })).body);
    const claimed = JSON.parse((await a.app.inject({ method: "POST", url: `/api/agents/${agent.id}/claim`, payload: { waitMs: 0 } })).body).claims;
    expect(claimed).toHaveLength(1);
    const { version, epoch } = claimed[0].flowRun;
    await a.app.inject({ method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Running", expectedVersion: version, epoch } });
    await b.app.inject({ method: "POST", url: `/api/flow-runs/${run.id}/cancel` });
    // The agent parks its next claim on replica a for a minute, and says nothing else meanwhile.
    const parked = a.app.inject({ method: "POST", url: `/api/agents/${agent.id}/claim`, payload: { waitMs: 60_000 } });
    const agentsOn = async (r: typeof b) => JSON.parse((await r.app.inject({ method: "GET", url: "/api/agents" })).body).agents;
    await until("the claim to park", async () => (await agentsOn(b))[0]?.waiting === true);
    clock += 45_000;
    // Replica b knows nothing of the parked claim but what the database says: the agent is alive, so the
    // cancel it has not confirmed yet stays its to confirm.
    expect((await agentsOn(b))[0]).toMatchObject({ name: "parked", status: "online", waiting: true });
    await b.app.reaper.reapOnce(clock);
    expect(JSON.parse((await b.app.inject({ method: "GET", url: `/api/flow-runs/${run.id}` })).body).state).toBe("Cancelling");
    // Once the claim is answered (by a run created on b), the agent is no longer waiting anywhere.
    const next = JSON.parse((await b.app.inject({ method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id } })).body).flowRun;
    expect(JSON.parse((await parked).body).claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([next.id]);
    expect((await agentsOn(b))[0]).toMatchObject({ status: "lost", waiting: false });
  }, 30_000);

  it("hears the other replicas again after the database restarts", async () => {
    const url = await clusterOf().database("reconnect");
    const a = await PostgresNotifier.start({ url });
    const b = await PostgresNotifier.start({ url });
    try {
      const first = a.next("logs:x", AbortSignal.timeout(20_000));
      b.notify("logs:x");
      expect(await first).toBe(true);
      await clusterOf().restart();
      // Once both are connected again, b's wake-ups reach a as before.
      await until("a wake-up to cross the restarted database", async () => {
        const heard = a.next("runs", AbortSignal.timeout(500));
        b.notify("runs");
        return heard;
      }, { timeoutMs: 20_000 });
    } finally {
      await a.close();
      await b.close();
    }
  }, 60_000);
});

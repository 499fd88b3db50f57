/**
 * SQLite commits without syncing, then syncs the log off the event loop: a write must not be acknowledged
 * before the sync that makes it durable, and a failed sync must leave no write acknowledged after it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteStore, type SqliteStore, type SqliteStoreOptions } from "../store/sqlite.js";
import { isBerthError } from "../wire/errors.js";
import type { FlowRun } from "../wire/schema.js";
import { flowInput } from "./support/fixtures.js";

const dir = mkdtempSync(path.join(tmpdir(), "berth-sqlite-sync-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

type Done = (err: NodeJS.ErrnoException | null) => void;

/** A log sync the test finishes by hand; it records every sync asked for. */
function heldSync(): { syncLog: NonNullable<SqliteStoreOptions["syncLog"]>; held: Done[] } {
  const held: Done[] = [];
  return { syncLog: (_fd, done) => held.push(done), held };
}

/** A store whose log syncs the test finishes by hand; closed afterwards, every sync it still holds let go. */
async function withHeldSync(test: (store: SqliteStore, sync: ReturnType<typeof heldSync>) => Promise<void>): Promise<void> {
  const sync = heldSync();
  const store = await openSqliteStore(path.join(dir, `sync-${files++}.db`), { syncLog: sync.syncLog });
  try {
    await test(store, sync);
  } finally {
    const closing = store.close();
    for (const done of sync.held.splice(0)) done(null);
    await closing;
  }
}

const turns = (n: number) => new Promise<void>((resolve) => (function next(left: number) { if (left === 0) resolve(); else setImmediate(() => next(left - 1)); })(n));

/** Waits until `ready` holds (a sync is asked for once the log file is open: a thread-pool round trip). */
async function until(ready: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5000; !ready(); ) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function settled<T>(promise: Promise<T>): () => boolean {
  let done = false;
  promise.then(() => (done = true), () => (done = true));
  return () => done;
}

describe("sqlite log sync", () => {
  it("acknowledges a write only once a sync begun after its commit has finished, one sync for many writes", async () => {
    await withHeldSync(async (store, sync) => {
      const registering = store.registerFlow(flowInput({ name: "held" }));
      const registered = settled(registering);
      await until(() => sync.held.length > 0);
      await turns(20);
      expect(sync.held).toHaveLength(1);
      expect(registered()).toBe(false);
      sync.held.shift()!(null);
      const { flow } = await registering;

      // Writes committed while a sync is under way wait for the next one, which serves them all.
      const first = store.createFlowRun({ flow, parameters: {}, labels: [] });
      await turns(5);
      expect(sync.held).toHaveLength(1);
      const later = Array.from({ length: 5 }, () => store.createFlowRun({ flow, parameters: {}, labels: [] }));
      const laterSettled = later.map(settled);
      await turns(5);
      expect(sync.held).toHaveLength(1);
      sync.held.shift()!(null);
      await first;
      await turns(5);
      expect(laterSettled.some((s) => s())).toBe(false);
      expect(sync.held).toHaveLength(1);
      sync.held.shift()!(null);
      expect(await Promise.all(later)).toHaveLength(5);
      expect(sync.held).toHaveLength(0);
    });
  });

  it("tells a run's creator at its commit, before its sync; a claim made then waits for a sync that covers both", async () => {
    await withHeldSync(async (store, sync) => {
      const setup = Promise.all([store.registerFlow(flowInput({ name: "woken" })), store.registerAgent({ name: "claimer", labels: [], concurrency: 1 })]);
      await until(() => sync.held.length > 0);
      sync.held.shift()!(null);
      const [{ flow }, { agent }] = await setup;

      let claiming: Promise<FlowRun[]> | undefined;
      const creating = store.createFlowRun({ flow, parameters: {}, labels: [] }, () => {
        claiming = store.claimFlowRuns(agent.id, [], 1, 60_000);
    });
    const created = settled(creating);
    await until(() => claiming !== undefined && sync.held.length > 0);
    const claimed = settled(claiming!);
    await turns(10);
    // Committed, not yet durable: the creator is not answered, and the claim (committed on top) is not either.
    expect(created()).toBe(false);
    expect(claimed()).toBe(false);
    expect(sync.held).toHaveLength(1);
    sync.held.shift()!(null);
    const { flowRun } = await creating;
    // The claim committed after that sync began: only the next one makes it durable.
    await until(() => sync.held.length > 0);
    await turns(5);
    expect(claimed()).toBe(false);
    sync.held.shift()!(null);
    expect((await claiming!).map((r) => r.id)).toEqual([flowRun.id]);
    });
  });

  it("answers a claim that took nothing at its commit; a claim that took a run, or an idempotent repeat, waits for the sync", async () => {
    await withHeldSync(async (store, sync) => {
      const setup = Promise.all([store.registerFlow(flowInput({ name: "empty-claims" })), store.registerAgent({ name: "poller", labels: [], concurrency: 1 })]);
      await until(() => sync.held.length > 0);
      sync.held.shift()!(null);
      const [{ flow }, { agent }] = await setup;

      // Nothing queued: the answer needs no sync, and none is asked for.
      expect(await store.claimFlowRuns(agent.id, [], 1, 60_000)).toEqual([]);
      expect(sync.held).toHaveLength(0);

      const creating = store.createFlowRun({ flow, parameters: {}, labels: [], idempotencyKey: "once" });
      await until(() => sync.held.length > 0);
      // The run is committed, its sync under way: a repeat of its creation vouches for it, so it waits too.
      const repeat = settled(store.createFlowRun({ flow, parameters: {}, labels: [], idempotencyKey: "once" }));
      const claiming = store.claimFlowRuns(agent.id, [], 1, 60_000);
      const claimed = settled(claiming);
      await turns(10);
      expect(repeat()).toBe(false);
      expect(claimed()).toBe(false);
      for (let i = 0; i < 3 && !claimed(); i++) {
        await until(() => sync.held.length > 0);
        sync.held.shift()!(null);
        await turns(5);
      }
      expect((await claiming).map((r) => r.id)).toEqual([(await creating).flowRun.id]);
      expect(repeat()).toBe(true);
    });
  });

  it("answers claims that took nothing in a batch at its commit, and a batch of only those asks for no sync", async () => {
    await withHeldSync(async (store, sync) => {
      const setup = Promise.all([store.registerFlow(flowInput({ name: "batched" })), store.registerAgent({ name: "p1", labels: [], concurrency: 1 }), store.registerAgent({ name: "p2", labels: [], concurrency: 1 })]);
      await until(() => sync.held.length > 0);
      sync.held.shift()!(null);
      const [{ flow }, { agent: p1 }, { agent: p2 }] = await setup;

      // Two empty claims in one turn: one batch, answered at its commit, and no sync asked for.
      expect(await Promise.all([store.claimFlowRuns(p1.id, [], 1, 60_000), store.claimFlowRuns(p2.id, [], 1, 60_000)])).toEqual([[], []]);
      await turns(5);
      expect(sync.held).toHaveLength(0);

      // An empty claim batched with a write: the claim is answered, the write waits for the sync.
      const creating = store.createFlowRun({ flow, parameters: {}, labels: ["nobody"] });
      const created = settled(creating);
      const claim = store.claimFlowRuns(p1.id, [], 1, 60_000);
      expect(await claim).toEqual([]);
      await until(() => sync.held.length > 0);
      await turns(5);
      expect(created()).toBe(false);
      sync.held.shift()!(null);
      expect((await creating).created).toBe(true);
    });
  });

  it("refuses a claim woken at a run's commit when that run's sync fails, though its own would succeed", async () => {
    let fail = false;
    const store = await openSqliteStore(path.join(dir, `sync-${files++}.db`), {
      // Only the run's sync fails: the claim committed on top of it is refused because of that one.
      syncLog: (fd, done) => {
        if (!fail) return done(null);
        fail = false;
        setImmediate(() => done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" })));
      },
    });
    try {
      const { flow } = await store.registerFlow(flowInput({ name: "woken-failing" }));
      const { agent } = await store.registerAgent({ name: "claimer", labels: [], concurrency: 1 });
      fail = true;
      let claiming: Promise<unknown> | undefined;
      const refused = await store
        .createFlowRun({ flow, parameters: {}, labels: [] }, () => {
          claiming = store.claimFlowRuns(agent.id, [], 1, 60_000).catch((err: unknown) => err);
        })
        .catch((err: unknown) => err);
      expect(isBerthError(refused, "BERTH_E_UNAVAILABLE")).toBe(true);
      expect(isBerthError(await claiming, "BERTH_E_UNAVAILABLE")).toBe(true);
    } finally {
      await store.close();
    }
  });

  it("after a failed sync, refuses every write as unavailable and writes nothing more", async () => {
    let fail = false;
    const file = path.join(dir, `sync-${files++}.db`);
    const store = await openSqliteStore(file, {
      syncLog: (fd, done) => (fail ? setImmediate(() => done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }))) : done(null)),
    });
    const { flow } = await store.registerFlow(flowInput({ name: "failing" }));
    fail = true;
    const refused = await store.createFlowRun({ flow, parameters: {}, labels: [] }).catch((err: unknown) => err);
    expect(isBerthError(refused, "BERTH_E_UNAVAILABLE")).toBe(true);
    expect((refused as Error).message).toMatch(/cannot sync the SQLite log .*EIO.*restart the server/);
    fail = false;
    // The failure sticks even when the disk would answer again: what reached it before is unknown.
    const after = await store.createFlowRun({ flow, parameters: {}, labels: ["after"] }).catch((err: unknown) => err);
    expect(isBerthError(after, "BERTH_E_UNAVAILABLE")).toBe(true);
    await store.close();

    const reopened = await openSqliteStore(file);
    try {
      expect(await reopened.listFlowRuns({ label: "after", limit: 10 })).toEqual([]);
    } finally {
      await reopened.close();
    }
  });

  it("syncs before it closes", async () => {
    const sync = heldSync();
    const store = await openSqliteStore(path.join(dir, `sync-${files++}.db`), { syncLog: sync.syncLog });
    const writing = store.registerFlow(flowInput({ name: "closing" }));
    await turns(5);
    const closing = store.close();
    const closed = settled(closing);
    await until(() => sync.held.length > 0);
    await turns(10);
    expect(closed()).toBe(false);
    while (!closed()) {
      for (const done of sync.held.splice(0)) done(null);
      await turns(5);
    }
    await Promise.all([writing, closing]);
  });
});

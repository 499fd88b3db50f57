/**
 * `npm run bench:scale`: the claim path at scale, on SQLite and on PostgreSQL, side by side in one run.
 *
 * A real `berth server` process per store (a SQLite file; a throwaway PostgreSQL cluster) answers claims over
 * HTTP from 1, 8 and 32 concurrent claimers, one run per claim and no wait, with 1,000, 10,000 and 100,000
 * runs queued. Two queues per depth:
 *   - oldest first: the claimers take the oldest of the queued runs (the queue is topped up before each cell);
 *   - behind other labels: the queued runs carry a label no claimer has, and the claimers take runs of their
 *     own label created after them: a claim must not cost more because of what it cannot take.
 * Each store's server is warmed up first by 32 claimers (as one that has been claiming is: its connections open).
 * After the cells, 8 claimers with agent tokens of their own, as agents claim in production (each claim then
 * reads its token and its agent too), behind the deepest queue of other labels. Then run creation per second
 * (8 concurrent creators), and how long a claim parked on one server takes to hear of a run created on another
 * (two replicas on PostgreSQL; one server on SQLite for reference).
 *
 * Each store's part ends with its targets (see targets()): 8 claimers again, in rounds taken in turn on a
 * server with the shallowest queue, one with the deepest, and the baseline (berth at commit c2573dd, before
 * the PostgreSQL store and claim batching, SQLite only; built by scripts/bench-baseline.sh), each with a
 * database of its own, stated as the median of ratios taken within each round. A 2-core machine's speed can
 * drift by a third within minutes: cells measured one after the other cannot show a 20% effect, and a figure
 * in claims/s means little on another day.
 *
 * BERTH_BENCH_SCALE_DEPTHS (default 1000,10000,100000), BERTH_BENCH_SCALE_CLAIMS (claims per cell, default
 * 2000), BERTH_BENCH_SCALE_STORES (default sqlite,postgres), BERTH_BENCH_SCALE_BASELINE (a built berth to
 * compare with; default the one scripts/bench-baseline.sh builds).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once, setMaxListeners } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Transport } from "../client/http.js";
import { keepAliveTransport } from "../client/transport.js";
import { openPostgresStore } from "../store/postgres.js";
import { openSqliteStore } from "../store/sqlite.js";
import type { StateStore } from "../store/port.js";
import type { FlowRecord } from "../wire/schema.js";
import { benchFlow } from "./flow-body.js";
import { startPostgres, type PostgresCluster } from "./postgres-cluster.js";
import { freePort } from "./ports.js";

const DEPTHS = (process.env.BERTH_BENCH_SCALE_DEPTHS ?? "1000,10000,100000").split(",").map(Number);
const CLAIMS = Number(process.env.BERTH_BENCH_SCALE_CLAIMS ?? 2_000);
/** The table's warm-up, in claims (by 32 claimers). */
const WARM_UP = Math.floor(CLAIMS / 4);
const STORES = (process.env.BERTH_BENCH_SCALE_STORES ?? "sqlite,postgres").split(",");
const CLAIMERS = [1, 8, 32];
const CREATIONS = 2_000;
const WAKEUPS = 60;
/** Rounds of the targets section (see targets()). */
const TARGET_ROUNDS = 5;
const TOKEN = `berth_admin_bench_${process.pid}`;
const cli = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const BASELINE = process.env.BERTH_BENCH_SCALE_BASELINE ?? fileURLToPath(new URL("../../node_modules/.cache/berth-baseline-c2573dd", import.meta.url));

interface Server {
  url: string;
  stop(): Promise<void>;
}

/** A `berth server` process (of this build, or of `main`'s) on a free loopback port; resolves once it listens. */
async function startServer(db: string, key: string, main = cli): Promise<Server> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [main, "server", "--port", String(port), "--db", db], {
    // Claimed runs are never started here: with the default start timeout (60 s) the reaper would put them back
    // in the queue while the bench runs, deepening it and working during other servers' cells.
    env: { ...process.env, BERTH_API_TOKEN: TOKEN, BERTH_SERVER_KEY: key, BERTH_LOG_LEVEL: "warn", BERTH_SERVER_LEASE: "1h", BERTH_SERVER_START_TIMEOUT: "1h" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`berth server exited ${child.exitCode}: ${stderr}`);
    const up = await fetch(`${url}/health`).then((r) => r.ok).catch(() => false);
    if (up) break;
    if (Date.now() > deadline) throw new Error(`berth server did not answer within 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      if (child.exitCode === null) await once(child, "exit");
    },
  };
}

const never = new AbortController().signal;
// Every request of every claimer listens on it: more than the default ten at 32 claimers.
setMaxListeners(0, never);

/**
 * One request. `transport` (a claimer's own keep-alive connection, as flow-run containers use) keeps the
 * measuring client's CPU low: it shares this machine's cores with the server it measures.
 */
async function api<T>(url: string, method: "GET" | "POST", route: string, body?: unknown, transport?: Transport, token = TOKEN): Promise<T> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) };
  const payload = body === undefined ? null : JSON.stringify(body);
  const res = transport
    ? await transport(new URL(`${url}${route}`), { method, headers, body: payload, signal: never })
    : await fetch(`${url}${route}`, { method, headers, ...(payload === null ? {} : { body: payload }) });
  const text = Buffer.from(await res.arrayBuffer()).toString("utf8");
  if (res.status >= 300) throw new Error(`${method} ${route}: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

/** Queues `n` runs with `labels` straight through the store (filling 100,000 over HTTP would measure nothing). */
async function queue(store: Pick<StateStore, "createFlowRun">, flow: FlowRecord, n: number, labels: string[]): Promise<void> {
  const batch = 50;
  for (let done = 0; done < n; done += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - done) }, () => store.createFlowRun({ flow, parameters: {}, labels })));
  }
}

interface Cell {
  claimsPerSecond: number;
  p50: number;
  p99: number;
}

/**
 * `claimers` agents claiming one run at a time, no wait, until `total` runs are claimed between them. With
 * `agentTokens`, each agent registers and claims with an agent token of its own, as agents do in production
 * (each claim then reads its token and its agent); otherwise with the admin token. Without `knownFlows` (the
 * baseline, which had none), claims do not list the flow versions their agent holds.
 */
async function claimCell(
  url: string,
  claimers: number,
  labels: string[],
  total: number,
  tag: string,
  { agentTokens = false, knownFlows: listKnown = true }: { agentTokens?: boolean; knownFlows?: boolean } = {},
): Promise<Cell> {
  const agents = await Promise.all(
    Array.from({ length: claimers }, async (_, i) => {
      const name = `${tag}-${claimers}-${i}`;
      const token = agentTokens ? (await api<{ token: string }>(url, "POST", "/api/tokens", { role: "agent", name, labels })).token : TOKEN;
      return { token, ...(await api<{ id: string }>(url, "POST", "/api/agents", { name, labels, concurrency: 1000 }, undefined, token)) };
    }),
  );
  return drive(claimers, total, (i) => {
    // As agents claim: listing the flow versions they hold, which the answers then leave out.
    const knownFlows = new Set<string>();
    const transport = keepAliveTransport();
    return async () => {
      const body = { max: 1, waitMs: 0, ...(listKnown ? { knownFlows: [...knownFlows] } : {}) };
      const agent = agents[i]!;
      const reply = await api<{ claims: Array<{ flowRun: { flowId: string } }> }>(url, "POST", `/api/agents/${agent.id}/claim`, body, transport, agent.token);
      for (const claim of reply.claims) knownFlows.add(claim.flowRun.flowId);
      return reply.claims.length;
    };
  });
}

/**
 * `claimers` loops, each sending one request (of one run at most) at a time, until their requests have taken
 * `total` runs, of at least `total` queued. No more requests are under way than runs are left to take: the
 * last ones would find nothing, and go round again while the others' answers wait for their commit. So a
 * request that takes nothing found nothing with runs left, and a few of those fail the cell.
 */
async function drive(claimers: number, total: number, claimer: (i: number) => () => Promise<number>): Promise<Cell> {
  const latencies: number[] = [];
  let claimed = 0;
  let underWay = 0;
  let empty = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: claimers }, async (_, i) => {
      const claimOnce = claimer(i);
      while (claimed + underWay < total) {
        const t0 = performance.now();
        underWay++;
        let taken: number;
        try {
          taken = await claimOnce(); // not `claimed += await …`, which would add to a stale count
        } finally {
          underWay--;
        }
        latencies.push(performance.now() - t0);
        if (taken === 0 && ++empty > claimers * 3) throw new Error("claims found nothing with runs left to claim");
        claimed += taken;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { claimsPerSecond: claimed / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** The same claimers against bench/bare-http.ts: requests per second this machine's HTTP allows at all. */
async function bareHttp(claimers: number, total: number): Promise<Cell> {
  const child = spawn(process.execPath, [fileURLToPath(new URL("./bare-http.js", import.meta.url))], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const [line] = (await once(child.stdout!, "data")) as [Buffer];
    const url = `http://127.0.0.1:${line.toString().trim()}`;
    const claimer = () => {
      const transport = keepAliveTransport();
      return async () => {
        await api(url, "POST", "/claim", { max: 1, waitMs: 0, knownFlows: [] }, transport);
        return 1;
      };
    };
    await drive(claimers, total / 4, claimer); // warm up both ends
    return await drive(claimers, total, claimer);
  } finally {
    child.kill("SIGTERM");
    if (child.exitCode === null) await once(child, "exit");
  }
}

type QueueStore = Pick<StateStore, "registerFlow" | "createFlowRun" | "close">;

/**
 * What a targets round measures: a server (this build's, or the baseline's) on a database of its own, with
 * `depth` runs of the label "backlog" queued throughout, warmed up by as many claims as the table's server
 * answers before its first 8-claimer cell.
 */
interface Subject {
  server: Server;
  store: QueueStore;
  flow: FlowRecord;
  depth: number;
  /** Whether its claims list the flow versions their agent holds (the baseline's API had no such field). */
  knownFlows: boolean;
}

async function openSubject(main: string, openStore: (db: string) => Promise<QueueStore>, db: string, key: string, depth: number, knownFlows: boolean): Promise<Subject> {
  const server = await startServer(db, key, main);
  let store: QueueStore | undefined;
  try {
    store = await openStore(db);
    const { flow } = await store.registerFlow(benchFlow("scale-bench"));
    const warmUp = WARM_UP + 2 * CLAIMS;
    await queue(store, flow, depth + warmUp, ["backlog"]);
    await claimCell(server.url, 8, ["backlog"], warmUp, "warm-up", { knownFlows });
    return { server, store, flow, depth, knownFlows };
  } catch (err) {
    try {
      await store?.close();
    } finally {
      await server.stop();
    }
    throw err;
  }
}

async function closeSubject(subject: Subject): Promise<void> {
  try {
    await subject.store.close();
  } finally {
    await subject.server.stop();
  }
}

/** One round on a subject: 8 claimers, oldest first; then, unless `oldestOnly`, behind its queue (of other labels). */
async function targetRound(subject: Subject, round: number, oldestOnly: boolean): Promise<{ oldest: Cell; behind?: Cell }> {
  const { server, store, flow, knownFlows } = subject;
  await queue(store, flow, CLAIMS, ["backlog"]);
  const oldest = await claimCell(server.url, 8, ["backlog"], CLAIMS, `round-${round}-oldest`, { knownFlows });
  if (oldestOnly) return { oldest };
  await queue(store, flow, CLAIMS, ["etl"]);
  return { oldest, behind: await claimCell(server.url, 8, ["etl"], CLAIMS, `round-${round}-behind`, { knownFlows }) };
}

/** The baseline's server and its own SQLite store (which fills its queue), or why there is none. */
async function baselineStore(): Promise<{ main: string; open: (db: string) => Promise<QueueStore> } | string> {
  const main = path.join(BASELINE, "dist", "cli", "main.js");
  if (!existsSync(main)) return `no baseline built at ${BASELINE} (scripts/bench-baseline.sh builds it from git history)`;
  // Its own store module, as its schema is its own; its registerFlow and createFlowRun take what this build's do.
  const module = (await import(pathToFileURL(path.join(BASELINE, "dist", "store", "sqlite.js")).href)) as { openSqliteStore(file: string): Promise<QueueStore> };
  return { main, open: (db) => module.openSqliteStore(db) };
}

const median = (values: readonly number[]) => percentile(values, 50);
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * The claim path's targets, 8 claimers at one run per claim, measured so that this machine's drift cancels out:
 * a server and database with the shallowest queue, one with the deepest, and the baseline, claimed from in
 * turn, round after round. Each ratio is taken within a round, and the median of the rounds' is stated.
 */
async function targets(kind: string, cluster: PostgresCluster | undefined, dir: string, key: string): Promise<void> {
  const shallowDepth = DEPTHS[0]!;
  const deepDepth = DEPTHS[DEPTHS.length - 1]!;
  const database = async (name: string) => (kind === "postgres" ? await cluster!.database(name) : path.join(dir, `${name}.db`));
  const open = kind === "postgres" ? openPostgresStore : openSqliteStore;
  const subjects: Subject[] = [];
  try {
    const shallow = await openSubject(cli, open, await database("shallow"), key, shallowDepth, true);
    subjects.push(shallow);
    const deep = await openSubject(cli, open, await database("deep"), key, deepDepth, true);
    subjects.push(deep);
    // Without a baseline, or with one that does not run, the rest is still measured; the output says why not.
    let before: Subject | undefined;
    let notMeasured = "";
    try {
      const baseline = await baselineStore();
      if (typeof baseline === "string") notMeasured = baseline;
      else before = await openSubject(baseline.main, baseline.open, path.join(dir, `baseline-${kind}.db`), key, shallowDepth, false);
    } catch (err) {
      notMeasured = `the baseline at ${BASELINE} did not run: ${message(err)}`;
    }
    if (before) subjects.push(before);
    type Round = Map<Subject, { oldest: Cell; behind?: Cell }>;
    const rounds: Round[] = [];
    for (let round = 0; round < TARGET_ROUNDS; round++) {
      const cells: Round = new Map();
      for (const subject of subjects) cells.set(subject, await targetRound(subject, round, subject === before));
      rounds.push(cells);
    }
    type Kind = "oldest" | "behind";
    const cell = (r: Round, subject: Subject, queueKind: Kind) => r.get(subject)![queueKind]!;
    const figure = (subject: Subject, queueKind: Kind) => {
      const rate = median(rounds.map((r) => cell(r, subject, queueKind).claimsPerSecond));
      return `${rate.toFixed(0)}/s (p99 ${median(rounds.map((r) => cell(r, subject, queueKind).p99)).toFixed(1)} ms)`;
    };
    // A ratio within each round, where the machine ran at one speed; then their median.
    const ratio = (a: Subject, aKind: Kind, b: Subject, bKind: Kind) =>
      median(rounds.map((r) => cell(r, a, aKind).claimsPerSecond / cell(r, b, bKind).claimsPerSecond)).toFixed(2);
    out(`  targets: 8 claimers, one run per claim, ${TARGET_ROUNDS} rounds taken in turn on a server and database each (medians)`);
    for (const subject of [shallow, deep]) {
      out(`    ${`${subject.depth} queued:`.padEnd(16)} ${figure(subject, "oldest")} oldest first, ${figure(subject, "behind")} behind other labels`);
    }
    out(
      `    depth, ${deepDepth} against ${shallowDepth} queued: ${ratio(deep, "oldest", shallow, "oldest")} oldest first, ` +
        `${ratio(deep, "behind", shallow, "behind")} behind other labels   (target: within 20%; p99 < 20 ms)`,
    );
    if (before) {
      const name = process.env.BERTH_BENCH_SCALE_BASELINE ? `berth at ${BASELINE}` : "berth at c2573dd, before the PostgreSQL store (SQLite)";
      out(`    baseline, ${name}, ${shallowDepth} queued, oldest first: ${figure(before, "oldest")}`);
      const against = (subject: Subject) => `oldest first ${ratio(subject, "oldest", before, "oldest")}×, behind other labels ${ratio(subject, "behind", before, "oldest")}×`;
      out(`    against the baseline's rate: at ${shallowDepth} queued ${against(shallow)}; at ${deepDepth} queued ${against(deep)}   (target ≥ 2×)`);
    } else {
      out(`    against the baseline: not measured: ${notMeasured}`);
    }
  } finally {
    for (const closed of await Promise.allSettled(subjects.map(closeSubject))) {
      if (closed.status === "rejected") process.stderr.write(`a server of the targets did not stop cleanly: ${message(closed.reason)}\n`);
    }
  }
}

/** `n` runs created over HTTP by 8 concurrent creators; runs per second. */
async function creations(url: string, flowId: string, n: number): Promise<number> {
  let made = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (made < n) {
        made++;
        await api(url, "POST", "/api/flow-runs", { flowId, labels: ["created"] });
      }
    }),
  );
  return n / ((performance.now() - started) / 1000);
}

/** A claim parked on `parkOn` and a run created on `createOn`: ms from the create request to the claim's answer. */
async function wakeups(parkOn: string, createOn: string, flowId: string, tag: string): Promise<number[]> {
  const agent = await api<{ id: string }>(parkOn, "POST", "/api/agents", { name: `wake-${tag}`, labels: [`wake-${tag}`] });
  const times: number[] = [];
  for (let i = 0; i < WAKEUPS + 5; i++) {
    const parked = api<{ claims: unknown[] }>(parkOn, "POST", `/api/agents/${agent.id}/claim`, { max: 1, waitMs: 20_000 });
    // Let the claim park (look, find nothing, wait): what is measured is the wake-up, not a lucky first look.
    await new Promise((r) => setTimeout(r, 30));
    const t0 = performance.now();
    await api(createOn, "POST", "/api/flow-runs", { flowId, labels: [`wake-${tag}`] });
    const reply = await parked;
    const ms = performance.now() - t0;
    if (reply.claims.length !== 1) throw new Error("a parked claim was answered without the run created for it");
    if (i >= 5) times.push(ms);
  }
  return times;
}

const ms = (v: number) => `${v.toFixed(1)} ms`.padStart(9);
const out = (line = "") => process.stdout.write(`${line}\n`);

async function benchStore(kind: string, cluster: PostgresCluster | undefined, dir: string): Promise<void> {
  const key = Buffer.alloc(32, 7).toString("base64");
  const db = kind === "postgres" ? await cluster!.database("scale") : path.join(dir, "scale.db");
  // The server migrates the schema; the bench's own store connection only fills the queue.
  const server = await startServer(db, key);
  const store = kind === "postgres" ? await openPostgresStore(db) : await openSqliteStore(db);
  try {
    const { flow } = await store.registerFlow(benchFlow("scale-bench"));
    const bare = await bareHttp(8, 2 * CLAIMS);
    out(
      `\nbare HTTP (a node:http server answering a fixed reply), 8 clients: ${bare.claimsPerSecond.toFixed(0)} requests/s, ` +
        `p50 ${bare.p50.toFixed(1)} ms, p99 ${bare.p99.toFixed(1)} ms: the most any HTTP API answers on this machine now`,
    );
    out(`${kind}: claims, one run per claim, ${CLAIMS} claims per cell (claims/s, then latency p50 / p99)`);
    out(`  ${"queued".padEnd(8)} ${"claimers".padEnd(9)} ${"oldest first".padEnd(38)} behind other labels`);
    // Warm-up, as a server that has been claiming is: as many connections as the most claimers open, each used
    // once (on PostgreSQL, a connection's first claim costs several ms more). Otherwise the first cell with 8
    // claimers measured the opening of 7 connections too, 10-13% of its second.
    await queue(store, flow, WARM_UP, ["warm-up"]);
    await claimCell(server.url, Math.max(...CLAIMERS), ["warm-up"], WARM_UP, "warm-up");
    // Each cell starts with `target + CLAIMS` backlog runs queued, so that at least `target` are queued throughout.
    let queued = 0;
    for (const target of DEPTHS) {
      for (const claimers of CLAIMERS) {
        await queue(store, flow, target + CLAIMS - queued, ["backlog"]);
        queued = target;
        const oldest = await claimCell(server.url, claimers, ["backlog"], CLAIMS, `oldest-${target}`);
        await queue(store, flow, CLAIMS, ["etl"]);
        const behind = await claimCell(server.url, claimers, ["etl"], CLAIMS, `behind-${target}`);
        const cell = (c: Cell) => `${c.claimsPerSecond.toFixed(0).padStart(6)}/s ${ms(c.p50)} / ${ms(c.p99)}`.padEnd(38);
        out(`  ${String(target).padEnd(8)} ${String(claimers).padEnd(9)} ${cell(oldest)} ${cell(behind)}`);
      }
    }
    const last = DEPTHS[DEPTHS.length - 1]!;
    // What the cells above leave out: agents in production claim with agent tokens of their own.
    await queue(store, flow, CLAIMS, ["tokens"]);
    const tokens = await claimCell(server.url, 8, ["tokens"], CLAIMS, "tokens", { agentTokens: true });
    const tokensCell = `${tokens.claimsPerSecond.toFixed(0)}/s ${ms(tokens.p50)} / ${ms(tokens.p99)}`;
    out(`  8 claimers with agent tokens (as agents in production), behind ${last} of other labels: ${tokensCell}`);
    out(`  run creation: ${(await creations(server.url, flow.id, CREATIONS)).toFixed(0)} runs/s (8 concurrent creators, HTTP)`);
    const same = await wakeups(server.url, server.url, flow.id, `${kind}-same`);
    out(`  wake-up, one server: p50 ${ms(percentile(same, 50))}, p99 ${ms(percentile(same, 99))} (run created → parked claim answered)`);
    if (kind === "postgres") {
      const replica = await startServer(db, key);
      try {
        const cross = await wakeups(server.url, replica.url, flow.id, `${kind}-cross`);
        out(`  wake-up across replicas: p50 ${ms(percentile(cross, 50))}, p99 ${ms(percentile(cross, 99))}   (target p99 < 50 ms)`);
      } finally {
        await replica.stop();
      }
    }
  } finally {
    await store.close();
    await server.stop();
  }
  await targets(kind, cluster, dir, key);
}

async function main(): Promise<void> {
  out(`berth scale bench: ${os.cpus().length} cores, node ${process.version}, depths ${DEPTHS.join(", ")}, ${CLAIMS} claims per cell`);
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-scale-"));
  const cluster = STORES.includes("postgres") ? await startPostgres() : undefined;
  try {
    for (const kind of STORES) await benchStore(kind, cluster, dir);
  } finally {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`berth scale bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

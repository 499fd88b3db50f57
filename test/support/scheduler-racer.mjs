// One racing scheduler (test/scheduler-race.test.ts forks several): opens the shared store (a SQLite file or a
// PostgreSQL database) with berth's compiled store, says it is ready, and on "go" runs scheduler passes on a
// fixed clock, then says done.
// Plain JavaScript on dist/, as a server replica would run.
import path from "node:path";
import { pathToFileURL } from "node:url";

const { repo, module, exportName, target, nowMs, passes } = JSON.parse(process.argv[2]);
const load = (rel) => import(pathToFileURL(path.join(repo, "dist", rel)).href);
const open = (await load(module))[exportName];
const { Scheduler } = await load("server/scheduler.js");
const { LocalNotifier } = await load("server/notifier.js");
const send = (message) => new Promise((resolve, reject) => process.send(message, undefined, {}, (err) => (err ? reject(err) : resolve())));

const store = await open(target, { now: () => new Date(nowMs) });
const notifier = new LocalNotifier();
const logger = { error: (...a) => console.error(...a), warn: () => {}, info: () => {}, debug: () => {}, child: () => logger };
const scheduler = new Scheduler({ store, notifier, logger, intervalMs: 0, now: () => nowMs, startedAt: nowMs });
try {
  const go = new Promise((resolve) => process.once("message", resolve));
  await send({ type: "ready" });
  await go;
  let created = 0;
  for (let i = 0; i < passes; i++) created += (await scheduler.tickOnce()).created.length;
  await send({ type: "done", created });
} catch (err) {
  await send({ type: "failed", error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
} finally {
  await store.close();
  await notifier.close();
  process.disconnect();
}

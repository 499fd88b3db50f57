/** A server over a fresh in-memory store (or the given one), for inject() tests; closed by the returned `close`. */
import { Writable } from "node:stream";
import pino from "pino";
import { test as base } from "vitest";
import { compileServerOptions, type ServerOptions } from "../../config/compile.js";
import { defaultConfig } from "../../config/load.js";
import { buildServer } from "../../server/app.js";
import { LocalNotifier, type Notifier } from "../../server/notifier.js";
import type { StateStore } from "../../store/port.js";
import { openSqliteStore } from "../../store/sqlite.js";

export interface TestServerOptions {
  /** Options that differ from the defaults (which come from the configuration schema, as in production). */
  config?: Partial<ServerOptions>;
  /** One clock for the store's timestamps and the server's idea of "now" (agent presence, the reaper). */
  now?: () => number;
  /** A store to serve instead of a fresh one (on the same clock); closed with the server. */
  store?: StateStore;
  /** Wake-ups to use instead of an in-process notifier (PostgreSQL's, for replicas); closed with the server. */
  notifier?: Notifier;
}

/** The server's options with berth's defaults, as `berth server` compiles them, and `overrides`. */
export function testServerOptions(overrides: Partial<ServerOptions> = {}): ServerOptions {
  return { ...compileServerOptions(defaultConfig({ server: { db: ":memory:" } })), ...overrides };
}

export async function startTestServer(options: TestServerOptions = {}) {
  const now = options.now;
  const store = options.store ?? (await openSqliteStore(":memory:", now ? { now: () => new Date(now()) } : {}));
  // The in-process notifier is returned for tests that count its waiters; a given one is used instead.
  const notifier = new LocalNotifier();
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: "debug" }, sink);
  const app = await buildServer({
    store,
    logger,
    notifier: options.notifier ?? notifier,
    options: testServerOptions(options.config),
    version: "0.0.0-test",
    ...(options.now ? { now: options.now } : {}),
  });
  return {
    app,
    store,
    notifier,
    logger,
    /** Every log line the server wrote, parsed. */
    lines,
    async close(): Promise<void> {
      await app.close();
      await notifier.close();
      await options.notifier?.close();
      await store.close();
    },
    /** `await using s = await startTestServer()`: closed when the block ends, whatever happens in it. */
    async [Symbol.asyncDispose](): Promise<void> {
      await this.close();
    },
  };
}

export type TestServer = Awaited<ReturnType<typeof startTestServer>>;

/**
 * `test` with a `server` fixture: a fresh server per test, closed after it by vitest, so no test can forget
 * to. `startServer(options)` makes more (or differently configured) ones, closed the same way.
 */
export const test = base.extend<{ server: TestServer; startServer: (options?: TestServerOptions) => Promise<TestServer> }>({
  // vitest reads a fixture's dependencies from its first parameter's destructuring: this one has none.
  startServer: async ({}, use) => {
    const started: TestServer[] = [];
    await use(async (options) => {
      const server = await startTestServer(options);
      started.push(server);
      return server;
    });
    for (const server of started.reverse()) await server.close();
  },
  server: async ({ startServer }, use) => {
    await use(await startServer());
  },
});

/**
 * How the PostgreSQL store talks to its database: statements written like the SQLite store's (`?` in order,
 * or `@name` from an object) and turned into numbered parameters, on a pooled connection or inside one
 * transaction. BIGINT and COUNT come back as numbers (every one berth stores fits in 2^53).
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { BerthError, isBerthError } from "../wire/errors.js";

/** What the store's functions need of a connection: queries, and the store's clock. */
export interface PgAccess {
  get<T>(sql: string, ...params: unknown[]): Promise<T | undefined>;
  all<T>(sql: string, ...params: unknown[]): Promise<T[]>;
  /** The number of rows changed. */
  run(sql: string, ...params: unknown[]): Promise<number>;
  /** Now, or `afterMs` from now, on the store's clock (ISO-8601, UTC). */
  timestamp(afterMs?: number): string;
}

const NAMED = /@([A-Za-z_]\w*)/g;

/** `?` placeholders (in order) or `@name` ones (from one object) as `$1, $2, ...` with their values. */
export function numbered(sql: string, params: readonly unknown[]): { text: string; values: unknown[] } {
  const [first] = params;
  if (params.length === 1 && first !== null && typeof first === "object" && !Array.isArray(first) && !Buffer.isBuffer(first) && /@[A-Za-z_]/.test(sql)) {
    const named = first as Record<string, unknown>;
    const order = new Map<string, number>();
    const text = sql.replace(NAMED, (_, name: string) => {
      if (!(name in named)) throw new Error(`no value for @${name}`);
      if (!order.has(name)) order.set(name, order.size + 1);
      return `$${order.get(name)}`;
    });
    return { text, values: [...order.keys()].map((name) => normalize(named[name])) };
  }
  let n = 0;
  return { text: sql.replace(/\?/g, () => `$${++n}`), values: params.map(normalize) };
}

/**
 * PostgreSQL text cannot hold NUL, which SQLite stores: a line a process printed with one must not be refused
 * (and block every later line), so NUL becomes U+FFFD, the replacement character, in an array's elements too.
 */
function normalize(value: unknown): unknown {
  if (value === undefined) return null;
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === "string" && value.includes("\u0000")) return value.replaceAll("\u0000", "\uFFFD");
  return value;
}

export const PG_TYPES = {
  getTypeParser(oid: number, format?: string) {
    if (oid === pg.types.builtins.INT8) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as "text");
  },
};

/**
 * A name per statement text, so that each connection prepares (parses and plans) a statement once and then
 * only executes it: planning a claim's statements cost more than running them. The store's statement texts
 * are a bounded set (constants, and filters combined from a few fixed parts).
 */
const names = new Map<string, string>();
function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `berth_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
    names.set(text, name);
  }
  return name;
}

export function access(client: pg.Pool | pg.PoolClient, now: () => Date): PgAccess {
  const query = async <T>(sql: string, params: unknown[]) => {
    const { text, values } = numbered(sql, params);
    try {
      return (await client.query({ name: statementName(text), text, values })) as unknown as pg.QueryResult<T & pg.QueryResultRow>;
    } catch (err) {
      throw unavailable(err) ?? err;
    }
  };
  return {
    get: async <T>(sql: string, ...params: unknown[]) => (await query<T>(sql, params)).rows[0] as T | undefined,
    all: async <T>(sql: string, ...params: unknown[]) => (await query<T>(sql, params)).rows as T[],
    run: async (sql: string, ...params: unknown[]) => (await query(sql, params)).rowCount ?? 0,
    timestamp: (afterMs = 0) => new Date(now().getTime() + afterMs).toISOString(),
  };
}

/**
 * A database that cannot be reached (refused, reset, shutting down, restarting) is a 503 that clients wait
 * out, not a 500: BERTH_E_UNAVAILABLE, saying so. Undefined for any other error.
 */
export function unavailable(err: unknown): BerthError | undefined {
  if (isBerthError(err)) return undefined;
  const code = (err as { code?: string }).code ?? "";
  const message = err instanceof Error ? err.message : String(err);
  const down =
    // 55P03: a lock not granted within lock_timeout; 57014: a statement past statement_timeout (a stuck replica
    // holding a lock); 25006: a read-only database (a primary that became a standby).
    /^(08|57P)/.test(code) ||
    ["55P03", "57014", "25006"].includes(code) ||
    ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND"].includes(code) ||
    // The last: every pooled connection busy past the pool's wait (a database too slow to answer).
    /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(message);
  if (!down) return undefined;
  return new BerthError("BERTH_E_UNAVAILABLE", `the PostgreSQL database is unavailable (${message}): try again shortly`, { cause: err });
}

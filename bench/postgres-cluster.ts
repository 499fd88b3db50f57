/**
 * A throwaway PostgreSQL cluster for tests and benchmarks, from Debian's `postgresql` package: `initdb` into a
 * temporary directory, `pg_ctl` on a free port on 127.0.0.1 (its socket in the same directory), one database,
 * all of it removed by `stop()`. No system service is involved. initdb refuses to run as root, so as root the
 * cluster belongs to the `postgres` user the package creates.
 */
import { execFile } from "node:child_process";
import { chmod, chown, mkdtemp, rm } from "node:fs/promises";
import { existsSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./ports.js";

const run = promisify(execFile);

export interface PostgresCluster {
  /** postgres://berth@127.0.0.1:PORT/berth */
  url: string;
  port: number;
  /** A connection URL to another database of the cluster, made on first use. */
  database(name: string): Promise<string>;
  /** Stops the server at once (`-m immediate`, as a crash) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Stops the server at once (as a crash), leaving its data; `start()` brings it back. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The directory of initdb and pg_ctl: the newest installed major version. */
export function postgresBinDir(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], "bin");
}

export const postgresAvailable = postgresBinDir() !== undefined;

export async function startPostgres(): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  if (!bin) throw new Error("PostgreSQL is not installed: install Debian's postgresql package (scripts/prereqs.sh does)");
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-pg-"));
  const data = path.join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  // As root, everything below belongs to postgres, which initdb and the server run as.
  const owner = asRoot ? await postgresIds() : undefined;
  if (owner) {
    await chown(dir, owner.uid, owner.gid);
    await chmod(dir, 0o700);
  }
  const as = (file: string, args: string[]) => (owner ? run("runuser", ["-u", "postgres", "--", file, ...args]) : run(file, args));
  await as(path.join(bin, "initdb"), ["-D", data, "-U", "berth", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale", "C"]);
  const port = await freePort();
  const start = () =>
    as(path.join(bin, "pg_ctl"), [
      "-D",
      data,
      "-l",
      path.join(dir, "server.log"),
      "-w",
      "-t",
      "60",
      "-o",
      // fsync off: what is written survives the server's crash (the kernel has it), only not the machine's; commits
      // stay synchronous, or a crash (stop -m immediate, as chaos tests do) would lose acknowledged writes.
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200`,
      "start",
    ]);
  await start();
  const url = (database: string) => `postgres://berth@127.0.0.1:${port}/${database}`;
  const made = new Set<string>();
  const database = async (name: string): Promise<string> => {
    if (!made.has(name)) {
      const client = new pg.Client({ connectionString: url("postgres") });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, "")}"`);
      } finally {
        await client.end();
      }
      made.add(name);
    }
    return url(name);
  };
  const main = await database("berth");
  let stopped = false;
  return {
    url: main,
    port,
    database,
    async kill() {
      await as(path.join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
    },
    async start() {
      await start();
    },
    async restart() {
      await as(path.join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
      await start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await as(path.join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

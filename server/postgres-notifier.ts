/**
 * Wake-ups across server replicas sharing one PostgreSQL database: each notify is delivered in this process
 * at once and sent to the others with NOTIFY on one channel; each replica LISTENs on a connection of its own
 * and wakes its parked long-polls. A replica ignores its own NOTIFY (it woke its waiters already).
 *
 * When the listening connection drops (the database restarts), it reconnects with backoff; notifications sent
 * meanwhile are lost, so on reconnecting it wakes every parked claim and log follower, which then look again.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { FastifyBaseLogger } from "fastify";
import { backoffMs } from "../shared/backoff.js";
import { describeError } from "../wire/errors.js";
import { LocalNotifier, RUNS_TOPIC, type Notifier } from "./notifier.js";

const CHANNEL = "berth_wake";
/** Topics that, after a lost connection, every waiter should look at again. */
const AFTER_RECONNECT = [RUNS_TOPIC];

export interface PostgresNotifierOptions {
  url: string;
  logger?: Pick<FastifyBaseLogger, "warn" | "info">;
}

export class PostgresNotifier implements Notifier {
  private readonly local = new LocalNotifier();
  private readonly instance = randomUUID();
  private readonly sender: pg.Pool;
  private listener: pg.Client | undefined;
  private closed = false;
  private attempt = 0;
  /** Log topics with a waiter here, so that a reconnect wakes them too. */
  private readonly parked = new Map<string, number>();

  private constructor(private readonly options: PostgresNotifierOptions) {
    this.sender = new pg.Pool({ connectionString: options.url, max: 2 });
    this.sender.on("error", () => undefined);
  }

  /** Connects and starts listening; rejects when the database cannot be reached at all. */
  static async start(options: PostgresNotifierOptions): Promise<PostgresNotifier> {
    const notifier = new PostgresNotifier(options);
    try {
      await notifier.listen();
    } catch (err) {
      await notifier.close();
      throw err;
    }
    return notifier;
  }

  /** How many `next` calls are parked on `topic` here (as LocalNotifier.waiting, for tests). */
  waiting(topic: string): number {
    return this.parked.get(topic) ?? 0;
  }

  notify(topic: string): void {
    this.local.notify(topic);
    if (this.closed) return;
    this.sender.query("SELECT pg_notify($1, $2)", [CHANNEL, `${this.instance} ${topic}`]).catch((err: unknown) => {
      // The other replicas then learn of it at their next poll: slower, not wrong.
      this.options.logger?.warn(`could not send a wake-up to the other servers: ${describeError(err)}`);
    });
  }

  async next(topic: string, signal: AbortSignal): Promise<boolean> {
    this.parked.set(topic, (this.parked.get(topic) ?? 0) + 1);
    try {
      return await this.local.next(topic, signal);
    } finally {
      const left = (this.parked.get(topic) ?? 1) - 1;
      if (left === 0) this.parked.delete(topic);
      else this.parked.set(topic, left);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.local.close();
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.sender.end().catch(() => undefined);
  }

  private async listen(): Promise<void> {
    // keepAlive: a half-open connection (a peer gone without a word) is noticed, and reconnected.
    const client = new pg.Client({ connectionString: this.options.url, keepAlive: true });
    client.on("notification", (message) => {
      const payload = message.payload ?? "";
      const space = payload.indexOf(" ");
      if (space < 0 || payload.slice(0, space) === this.instance) return;
      this.local.notify(payload.slice(space + 1));
    });
    client.on("error", () => this.reconnect(client));
    client.on("end", () => this.reconnect(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      // Closed while connecting: this connection is nobody's.
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.attempt = 0;
  }

  private reconnect(dropped: pg.Client): void {
    if (this.closed || this.listener !== dropped) return;
    this.listener = undefined;
    dropped.end().catch(() => undefined);
    const retry = (): void => {
      if (this.closed) return;
      const delay = backoffMs(this.attempt++, { maxMs: 5_000 });
      setTimeout(() => {
        if (this.closed) return;
        this.listen().then(
          () => {
            this.options.logger?.info("listening for other servers' wake-ups again");
            // What was sent while we were away is lost: every waiter looks again.
            for (const topic of [...AFTER_RECONNECT, ...this.parked.keys()]) this.local.notify(topic);
          },
          (err: unknown) => {
            this.options.logger?.warn(`cannot listen for other servers' wake-ups (${describeError(err)}); retrying`);
            retry();
          },
        );
      }, delay).unref();
    };
    this.options.logger?.warn("lost the connection that hears other servers' wake-ups; reconnecting");
    retry();
  }
}

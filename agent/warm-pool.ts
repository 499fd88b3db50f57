/**
 * Warm containers (`berth agent --warm-pool N`): up to N started, idle flow-run containers per recently used
 * container shape (image and everything else a run's container is made with, bar the run itself), each
 * waiting on its standard input for one run (flow-run/main.ts). The agent attaches to that input as soon as
 * the container has started, and holds it. A claimed run of that shape is handed to one: the agent renames it
 * after the run, as a cold start would name it, and writes the run's variables (its run token among them) to
 * the input it holds, so that the run reaches the container without a new connection to the engine. The
 * container serves that one run and is removed after it like any other.
 *
 * - A warm container is used only for a run whose image id is the one it runs: a new flow version, or a tag
 *   that moved, never gets an older image's container. Once a flow's run comes with another shape (a new
 *   version's image), the idle containers of the flow's former shape are removed: they are out of date.
 * - Idle ones outlive nothing: each exits by itself after its time to live (and is then removed), the pool
 *   keeps only the most recently used shapes, and a stopping or restarting agent removes its idle ones, so
 *   the pool never holds more than N per shape, across restarts too.
 */
import { createHash, randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { AGENT_LABEL, FLOW_RUN_LABEL, OWNER_LABEL, type ContainerEngine, type ContainerInfo, type ContainerInput, type ContainerSpec } from "../engine/port.js";
import { WARM_TTL_ENV } from "../config/flow-run-env.js";
import { ENGINE_CALL_MS, bounded } from "../engine/bounded.js";
import { describeError } from "../wire/errors.js";

/** On every warm container: the key of its shape (an idle one has no run label yet, and labels never change). */
export const WARM_LABEL = "io.berth.warm";

/** A run's container is named after it (run-lifecycle.ts containerName); so is a warm container once handed one. */
export const RUN_NAME_PREFIX = "berth-run-";

/** The run a container belongs to: its label's, or for a warm container that was handed one, its name's. */
export function runOfContainer(c: ContainerInfo): string | undefined {
  return c.labels[FLOW_RUN_LABEL] ?? (c.labels[WARM_LABEL] !== undefined && c.name.startsWith(RUN_NAME_PREFIX) ? c.name.slice(RUN_NAME_PREFIX.length) : undefined);
}

/** How many shapes the pool keeps warm containers for: the most recently used. */
const MAX_SHAPES = 4;

export interface WarmPoolOptions {
  engine: ContainerEngine;
  agentId: () => string;
  /** Idle containers per shape. */
  size: number;
  /** How long an idle container waits for a run before it exits. */
  ttlMs: number;
  log: () => Logger;
  /**
   * Longest each engine call of the pool may take (default ENGINE_CALL_MS): an engine that never answers
   * fails that container, rather than keep the pool, and the agent's stop, waiting on it.
   */
  engineCallMs?: number;
}

interface WarmContainer {
  id: string;
  imageId: string;
  createdAt: number;
  /** Its standard input, attached once it started: where its run is written. */
  input: ContainerInput;
}

/** An idle container taken out of the pool for a run. */
export type TakenContainer = Pick<WarmContainer, "id" | "input">;

/** What makes two runs' containers interchangeable: everything in their spec but the run's own variables. */
export function shapeKey(spec: ContainerSpec, imageId: string): string {
  const { image, cmd, user, capDrop, securityOpt, pidsLimit, memoryBytes, cpus, binds, network, placement } = spec;
  const shape = { imageId, image, cmd, user, capDrop, securityOpt, pidsLimit, memoryBytes, cpus, binds, network, placement };
  return createHash("sha256").update(JSON.stringify(shape)).digest("hex").slice(0, 24);
}

export class WarmPool {
  /** Idle containers by shape key, oldest first; the map's order is the shapes' recency (most recent last). */
  private readonly idle = new Map<string, WarmContainer[]>();
  /** Containers being made, by shape key: a fill in flight counts toward the size. */
  private readonly making = new Map<string, number>();
  /** The flow whose runs each shape was last filled for: a new version's shape retires the old one's. */
  private readonly flowOf = new Map<string, string>();
  /** Every make under way, for close() to wait on. */
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly options: WarmPoolOptions) {}

  get enabled(): boolean {
    return this.options.size > 0 && this.options.engine.openInput !== undefined && this.options.engine.renameContainer !== undefined;
  }

  /** Idle containers now, in all. */
  get idleCount(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  /**
   * An idle container of this shape, taken out of the pool (undefined when there is none). Expired ones and
   * any of another image are removed on the way.
   */
  take(key: string, imageId: string): TakenContainer | undefined {
    const list = this.idle.get(key);
    if (!list) return undefined;
    // Most recent shape last.
    this.idle.delete(key);
    this.idle.set(key, list);
    const now = Date.now();
    while (list.length > 0) {
      const warm = list.shift()!;
      // Its own timer ends it at ttlMs: one close to it may be exiting already.
      const why =
        warm.imageId !== imageId
          ? "its image is no longer the run's"
          : now - warm.createdAt >= this.options.ttlMs - 1_000
            ? "its time to live is (nearly) over"
            : warm.input.lost
              ? "its input is no longer attached (it exited, or the engine restarted)"
              : undefined;
      if (why === undefined) return { id: warm.id, input: warm.input };
      void this.remove(warm, why);
    }
    return undefined;
  }

  /**
   * Makes idle containers of this shape up to the pool's size, in the background. `spec` is a run's container
   * spec without the run (name, run variables and run labels are the pool's own).
   */
  fill(key: string, imageId: string, spec: ContainerSpec, flowName: string): void {
    if (!this.enabled || this.stopped) return;
    for (const [other, name] of this.flowOf) {
      if (name !== flowName || other === key) continue;
      this.flowOf.delete(other);
      for (const warm of this.idle.get(other) ?? []) void this.remove(warm, `flow "${flowName}" runs another image now`);
      this.idle.delete(other);
    }
    this.flowOf.set(key, flowName);
    const list = this.idle.get(key) ?? [];
    this.idle.delete(key);
    this.idle.set(key, list);
    this.evictShapes();
    const missing = this.options.size - list.length - (this.making.get(key) ?? 0);
    for (let i = 0; i < missing; i++) {
      const made = this.make(key, imageId, spec);
      this.inFlight.add(made);
      void made.finally(() => this.inFlight.delete(made));
    }
  }

  /** Removes every idle container, and makes no more (the agent is stopping). */
  async close(): Promise<void> {
    this.stopped = true;
    // A container being made is removed by its maker once made (stopped is set).
    await Promise.allSettled([...this.inFlight]);
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(all.map((warm) => this.remove(warm, "the agent is stopping")));
  }

  /**
   * As the agent starts (`running` true): removes its idle warm containers left from before a restart (they
   * wait for runs nobody will send them). Later, only warm containers that exited unused: a running one may be
   * on its way into the pool, or out of it to its run.
   */
  async removeLeftovers(running: boolean): Promise<void> {
    const mine = new Set([...this.idle.values()].flat().map((w) => w.id));
    const found = await this.options.engine.listContainers({ [OWNER_LABEL]: "true", [AGENT_LABEL]: this.options.agentId() });
    for (const info of found) {
      if (info.labels[WARM_LABEL] === undefined || mine.has(info.id)) continue;
      // Named after a run once assigned: those are runs (adoption follows them), not idle containers.
      if (!info.name.startsWith("berth-warm-")) continue;
      if (!running && (info.state === "running" || info.state === "created")) continue;
      await this.remove({ id: info.id }, info.state === "running" ? "left idle by an earlier run of this agent" : "it exited unused");
    }
  }

  /** Drops idle containers that are past their time to live (they exited by themselves). */
  prune(): void {
    const now = Date.now();
    for (const [key, list] of this.idle) {
      const kept = list.filter((warm) => now - warm.createdAt < this.options.ttlMs);
      for (const warm of list) if (!kept.includes(warm)) void this.remove(warm, "its time to live is over");
      if (kept.length === 0) this.idle.delete(key);
      else this.idle.set(key, kept);
    }
  }

  private evictShapes(): void {
    while (this.idle.size > MAX_SHAPES) {
      const [oldest, list] = this.idle.entries().next().value as [string, WarmContainer[]];
      this.idle.delete(oldest);
      this.flowOf.delete(oldest);
      for (const warm of list) void this.remove(warm, "its shape is no longer among the most recently used");
    }
  }

  private async make(key: string, imageId: string, spec: ContainerSpec): Promise<void> {
    this.making.set(key, (this.making.get(key) ?? 0) + 1);
    const name = `berth-warm-${this.options.agentId().slice(0, 8)}-${randomUUID().slice(0, 8)}`;
    try {
      const starting = this.options.engine.runContainer({
        ...spec,
        name,
        env: { ...spec.env, [WARM_TTL_ENV]: String(this.options.ttlMs) },
        labels: { [OWNER_LABEL]: "true", [AGENT_LABEL]: this.options.agentId(), [WARM_LABEL]: key },
        openStdin: true,
      });
      let id: string;
      try {
        id = await this.bounded(starting, `starting warm container ${name}`);
      } catch (err) {
        // One the engine makes after all is removed once it is.
        starting.then((late) => this.remove({ id: late }, "it was made after the pool gave up on it"), () => undefined);
        throw err;
      }
      let input: ContainerInput;
      const attaching = this.options.engine.openInput!(id);
      try {
        input = await this.bounded(attaching, `attaching to the input of warm container ${name}`);
      } catch (err) {
        // An attachment that comes after all is let go.
        attaching.then((late) => late.close(), () => undefined);
        await this.remove({ id }, `its input could not be attached (${describeError(err)})`);
        throw err;
      }
      if (this.stopped || !this.idle.has(key)) {
        await this.remove({ id, input }, "the pool no longer wants it");
        return;
      }
      this.idle.get(key)!.push({ id, imageId, createdAt: Date.now(), input });
    } catch (err) {
      this.options.log().warn(`could not make a warm container: ${describeError(err)}`);
    } finally {
      this.making.set(key, (this.making.get(key) ?? 1) - 1);
    }
  }

  private bounded<T>(call: Promise<T>, what: string): Promise<T> {
    return bounded(call, this.options.engineCallMs ?? ENGINE_CALL_MS, what);
  }

  private async remove({ id, input }: { id: string; input?: ContainerInput }, why: string): Promise<void> {
    input?.close();
    this.options.log().debug({ containerId: id.slice(0, 12) }, `removing a warm container: ${why}`);
    await this.bounded(this.options.engine.removeContainer(id), `removing warm container ${id.slice(0, 12)}`).catch((err: unknown) => {
      this.options.log().warn({ containerId: id.slice(0, 12) }, `could not remove a warm container: ${describeError(err)}`);
    });
  }
}

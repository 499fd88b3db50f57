/**
 * Containers left by agents that are gone for good. An agent removes its own containers when their runs end,
 * and adopts them when it restarts; but an agent that never comes back (its host renamed, its name changed, it
 * was retired) leaves its last containers on the engine. Every minute, each agent lists the berth containers
 * other agents made on its engine and asks the server which may go: those of runs that are over, whose agent
 * it has not heard from for server.agentGoneAfter. The server answers only for agents and runs it knows, so a
 * container of another berth sharing the engine is never touched.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { AGENT_LABEL, OWNER_LABEL, type ContainerEngine } from "../engine/port.js";
import { runOfContainer } from "./warm-pool.js";
import { describeError } from "../wire/errors.js";

export interface OrphanCollectorDeps {
  client: ApiClient;
  engine: ContainerEngine;
  agentId: () => string;
  log: () => Logger;
  signal?: AbortSignal;
  onRemoved?: () => void;
}

/** At most this many containers are asked about in one pass (the API's bound); the rest wait for the next. */
const PER_PASS = 1000;

export class OrphanCollector {
  private pass: Promise<string[]> | undefined;

  constructor(private readonly deps: OrphanCollectorDeps) {}

  /** One pass; answers with the names of the containers removed. A pass under way is joined, not doubled. */
  collect(): Promise<string[]> {
    this.pass ??= this.run().finally(() => (this.pass = undefined));
    return this.pass;
  }

  private async run(): Promise<string[]> {
    const { engine, client, log } = this.deps;
    const mine = this.deps.agentId();
    const theirs = (await engine.listContainers({ [OWNER_LABEL]: "true" }))
      .flatMap((c) => {
        const flowRunId = runOfContainer(c);
        return c.labels[AGENT_LABEL] !== undefined && c.labels[AGENT_LABEL] !== mine && flowRunId !== undefined ? [{ ...c, flowRunId }] : [];
      })
      .slice(0, PER_PASS);
    if (theirs.length === 0) return [];
    const { remove } = await client.orphans(
      mine,
      { containers: theirs.map((c) => ({ container: c.id, agentId: c.labels[AGENT_LABEL]!, flowRunId: c.flowRunId })) },
      this.deps.signal,
    );
    const names = new Map(theirs.map((c) => [c.id, c.name]));
    const removed: string[] = [];
    for (const { container, reason } of remove) {
      const name = names.get(container) ?? container;
      try {
        await engine.removeContainer(container);
      } catch (err) {
        log().warn(`could not remove container ${name} (${describeError(err)}); trying again later`);
        continue;
      }
      removed.push(name);
      this.deps.onRemoved?.();
      log().info({ container: name }, `removed container ${name}, left on this engine: ${reason}`);
    }
    return removed;
  }
}


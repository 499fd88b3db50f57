/**
 * What the claim race's parent and its racing child processes share: how to open the one store they race on,
 * what a claim looks like once reported, and the messages on the IPC channel between them.
 */
import { pathToFileURL } from "node:url";
import type { StateStore } from "../../store/port.js";

/**
 * How to open one shared store from any process: `module` (a compiled module of dist/, by absolute path)
 * exports `exportName`, a function that takes `args` and resolves with a StateStore. Child processes run
 * plain JavaScript, so this names the call rather than holding a function.
 */
export interface StoreOpener {
  module: string;
  exportName: string;
  /** JSON values only: they cross to the child processes on the command line. */
  args: readonly unknown[];
}

/** One run as a claimer received it. */
export interface ReportedClaim {
  /** The OS process that made the claim: a racer, or the server that answered. */
  process: string;
  claimer: string;
  agentId: string;
  flowRunId: string;
  state: string;
  version: number;
  epoch: number;
}

/** A racer's setup, passed as its only argument. */
export interface RacerSetup {
  opener: StoreOpener;
  claimers: readonly { name: string; labels: readonly string[]; max: number }[];
  leaseMs: number;
}

export type ParentMessage = { type: "go" };
export type RacerMessage =
  | { type: "ready" }
  | { type: "done"; claims: ReportedClaim[] }
  | { type: "failed"; error: string };

export async function openStore(opener: StoreOpener): Promise<StateStore> {
  const module = (await import(pathToFileURL(opener.module).href)) as Record<string, unknown>;
  const open = module[opener.exportName];
  if (typeof open !== "function") throw new Error(`${opener.module} exports no function ${opener.exportName}`);
  return (await open(...opener.args)) as StateStore;
}

/**
 * The server's Prometheus metrics (`GET /metrics`), with prom-client, on a registry of the server's own so
 * that several servers in one process (tests) never mix their figures.
 *
 * Two kinds:
 * - events counted as they happen in this process: runs created and finished, claims and their latency, the
 *   wait of each claimed run, reaper actions, scheduler slots, HTTP requests. With several replicas each
 *   counts its own; Prometheus sums them (`sum without (instance)`).
 * - the state of the whole system, read from the store at each scrape: runs by flow and state, the due queue
 *   per label set and its oldest wait, agents by status. Every replica reports the same figures, so dashboards
 *   take `max without (instance)` of them.
 *
 * Label values are bounded: flow names, label sets, states, rules, route patterns; never a run or agent id.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { StateStore } from "../store/port.js";
import type { RunsSnapshot } from "../store/run-metrics.js";
import type { FlowRun, RunPhases } from "../wire/schema.js";
import type { AgentPresence } from "./presence.js";

/** A label set as one label value: its labels joined by commas, "(none)" for a run without labels. */
export function labelSetValue(labels: readonly string[]): string {
  return labels.length === 0 ? "(none)" : labels.join(",");
}

const AGENT_STATUSES = ["online", "unhealthy", "draining", "stopped", "lost"] as const;
/** Seconds: claims and HTTP requests take milliseconds; a queue wait takes anything up to hours. */
const FAST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly runsCreated: Counter<"flow" | "source">;
  readonly runsFinished: Counter<"flow" | "state">;
  readonly claimDuration: Histogram<"outcome">;
  readonly queueWait: Histogram<"labels">;
  readonly claimsParked: Gauge;
  readonly reaperActions: Counter<"rule" | "outcome">;
  readonly schedulerSlots: Counter<"outcome">;
  readonly httpDuration: Histogram<"method" | "route" | "status_code">;
  readonly phaseDuration: Histogram<"phase">;
  /** The store read of the scrape under way, shared by its gauges. */
  private snapshot: Promise<RunsSnapshot> | undefined;

  constructor(
    private readonly store: StateStore,
    presence: AgentPresence,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.runsCreated = new Counter({
      name: "berth_flow_runs_created_total",
      help: "Flow runs created, by flow and by who created them (api, scheduler)",
      labelNames: ["flow", "source"],
      registers,
    });
    this.runsFinished = new Counter({
      name: "berth_flow_runs_finished_total",
      help: "Flow runs that reached a final state, by flow and state (Success, Failed, Cancelled)",
      labelNames: ["flow", "state"],
      registers,
    });
    this.claimDuration = new Histogram({
      name: "berth_claim_duration_seconds",
      help: "Time the store took to answer one look of a claim, by outcome (claimed: at least one run; empty)",
      labelNames: ["outcome"],
      buckets: FAST_BUCKETS,
      registers,
    });
    this.queueWait = new Histogram({
      name: "berth_flow_run_queue_wait_seconds",
      help: "Time a claimed run waited in the queue, from when it was due (its scheduled start) to its claim, by label set",
      labelNames: ["labels"],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.claimsParked = new Gauge({ name: "berth_claims_parked", help: "Claims parked on this server, waiting for a run (long-polls)", registers });
    this.reaperActions = new Counter({
      name: "berth_reaper_actions_total",
      help: "Runs the reaper moved, by rule (unstarted, silent, unconfirmed_cancel) and the state it moved them to",
      labelNames: ["rule", "outcome"],
      registers,
    });
    this.schedulerSlots = new Counter({
      name: "berth_scheduler_slots_total",
      help: "Schedule slots the scheduler decided, by outcome (created, missed, paused)",
      labelNames: ["outcome"],
      registers,
    });
    this.httpDuration = new Histogram({
      name: "berth_http_request_duration_seconds",
      help: "HTTP requests answered, by method, route pattern and status code (a parked claim counts its wait)",
      labelNames: ["method", "route", "status_code"],
      buckets: FAST_BUCKETS,
      registers,
    });

    this.phaseDuration = new Histogram({
      name: "berth_flow_run_phase_seconds",
      help: "Where runs' time goes, per step of an attempt: queue, image, container_create, container_start, runtime_start, flow, cleanup",
      labelNames: ["phase"],
      buckets: WAIT_BUCKETS,
      registers,
    });

    const read = (): Promise<RunsSnapshot> => this.snapshot ?? store.runsSnapshot();
    new Gauge({
      name: "berth_flow_runs",
      help: "Flow runs in the store, by flow and state",
      labelNames: ["flow", "state"],
      registers,
      async collect() {
        this.reset();
        for (const { flowName, state, count } of (await read()).runs) this.set({ flow: flowName, state }, count);
      },
    });
    new Gauge({
      name: "berth_queue_depth",
      help: "Scheduled runs already due, by label set",
      labelNames: ["labels"],
      registers,
      async collect() {
        this.reset();
        for (const { labels, count } of (await read()).queue) this.set({ labels: labelSetValue(labels) }, count);
      },
    });
    new Gauge({
      name: "berth_queue_oldest_wait_seconds",
      help: "How long the oldest due Scheduled run of each label set has waited",
      labelNames: ["labels"],
      registers,
      async collect() {
        this.reset();
        const now = presence.now();
        for (const { labels, oldestDue } of (await read()).queue) {
          this.set({ labels: labelSetValue(labels) }, Math.max(0, (now - Date.parse(oldestDue)) / 1000));
        }
      },
    });
    new Gauge({
      name: "berth_agents",
      help: "Agents registered, by status as the server sees it (lost: quiet for longer than agentLostAfter)",
      labelNames: ["status"],
      registers,
      async collect() {
        const counts = new Map<string, number>(AGENT_STATUSES.map((s) => [s, 0]));
        for (const agent of await store.listAgents()) {
          const { status } = presence.view(agent);
          counts.set(status, (counts.get(status) ?? 0) + 1);
        }
        for (const [status, n] of counts) this.set({ status }, n);
      },
    });
  }

  /** The text of a scrape: every metric, with one store read for the gauges of the runs. */
  async render(): Promise<string> {
    const snapshot = (this.snapshot = this.store.runsSnapshot());
    try {
      return await this.registry.metrics();
    } finally {
      if (this.snapshot === snapshot) this.snapshot = undefined;
    }
  }

  /** An attempt's timeline, once complete (cleaned up): each step between two known times. */
  phases(p: RunPhases): void {
    const steps: [string, string | null, string | null][] = [
      ["queue", p.queued, p.claimed],
      ["image", p.claimed, p.imageReady],
      ["container_create", p.imageReady, p.containerCreated],
      ["container_start", p.containerCreated, p.containerStarted],
      ["runtime_start", p.containerStarted, p.runtimeUp],
      ["flow", p.runtimeUp, p.flowFinished],
      ["cleanup", p.flowFinished, p.cleanedUp],
    ];
    for (const [phase, from, to] of steps) {
      if (from !== null && to !== null) this.phaseDuration.observe({ phase }, Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000));
    }
  }

  /** A run that was just claimed: how long it waited since it was due. */
  claimed(run: FlowRun, now: number): void {
    const due = Date.parse(run.scheduledStart ?? run.createdAt);
    this.queueWait.observe({ labels: labelSetValue(run.labels) }, Math.max(0, (now - due) / 1000));
  }
}

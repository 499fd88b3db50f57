/**
 * The agent's Prometheus metrics (served by agent/http.ts at /metrics), with prom-client on a registry of the
 * agent's own. Label values are bounded: outcomes, image sources; never a run id.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** How a run's image became ready: already on the host, pulled, or built here. */
export type ImageSource = "present" | "pulled" | "built";
/** How a run ended as far as this agent saw it; handed_back: given back to the queue without running. */
export type RunOutcome = "Success" | "Failed" | "Cancelled" | "handed_back";

const STEP_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export interface AgentGauges {
  /** Runs this agent holds now. */
  slotsUsed: () => number;
  slots: number;
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly imageSeconds: Histogram<"source">;
  readonly containerCreateSeconds: Histogram;
  readonly containerStartSeconds: Histogram;
  readonly runsFinished: Counter<"outcome">;
  readonly logLines: Counter<"result">;
  readonly imagesRemoved: Counter<"kind">;
  readonly imageBytesRemoved: Counter<"kind">;
  readonly orphansRemoved: Counter;
  readonly engineUp: Gauge;
  readonly diskFreeBytes: Gauge;

  constructor(gauges: AgentGauges) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: "berth_agent_slots", help: "Flow runs this agent runs at once (its concurrency)", registers }).set(gauges.slots);
    new Gauge({
      name: "berth_agent_slots_used",
      help: "Flow runs this agent holds now, from claim to cleanup",
      registers,
      collect() {
        this.set(gauges.slotsUsed());
      },
    });
    this.imageSeconds = new Histogram({
      name: "berth_agent_image_ready_seconds",
      help: "Time to make a run's storage image ready, by source (present, pulled, built)",
      labelNames: ["source"],
      buckets: STEP_BUCKETS,
      registers,
    });
    this.containerCreateSeconds = new Histogram({
      name: "berth_agent_container_create_seconds",
      help: "Time the engine took to create a run's container (a service on a swarm)",
      buckets: STEP_BUCKETS,
      registers,
    });
    this.containerStartSeconds = new Histogram({
      name: "berth_agent_container_start_seconds",
      help: "Time from a run's container created to started (on a swarm: to its task running)",
      buckets: STEP_BUCKETS,
      registers,
    });
    this.runsFinished = new Counter({
      name: "berth_agent_runs_finished_total",
      help: "Flow runs this agent saw end, by outcome (Success, Failed, Cancelled, handed_back)",
      labelNames: ["outcome"],
      registers,
    });
    this.logLines = new Counter({
      name: "berth_agent_log_lines_total",
      help: "Lines of containers' output the agent sent to the server as run logs, by result (shipped, dropped)",
      labelNames: ["result"],
      registers,
    });
    this.imagesRemoved = new Counter({
      name: "berth_agent_images_removed_total",
      help: "Images the agent removed to free disk, by kind (storage, runtime)",
      labelNames: ["kind"],
      registers,
    });
    this.imageBytesRemoved = new Counter({
      name: "berth_agent_image_removed_bytes_total",
      help: "Bytes of the images the agent removed to free disk, by kind (storage, runtime)",
      labelNames: ["kind"],
      registers,
    });
    this.orphansRemoved = new Counter({
      name: "berth_agent_orphan_containers_removed_total",
      help: "Containers left on the agent's engine by agents gone for good, of runs that are over, that it removed",
      registers,
    });
    this.engineUp = new Gauge({ name: "berth_agent_engine_up", help: "1 when the container engine answered the last check, else 0", registers });
    this.diskFreeBytes = new Gauge({ name: "berth_agent_disk_free_bytes", help: "Free space on the filesystem the agent watches (agent.diskPath)", registers });
  }
}

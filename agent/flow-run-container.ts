/**
 * One claimed flow run, from image to removed container. `run()` never throws: whatever goes wrong
 * (image missing, engine error, a container that exits without reporting) is recorded on the run with a
 * message that says why, so no run is left hanging in Submitted or Running by this agent.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../api/client.js";
import { describeError } from "../api/errors.js";
import { FINAL_FLOW_RUN_STATES, type ClaimedRun, type FlowRunStateName } from "../api/schema.js";
import { writeFlowRunState } from "../api/state-writes.js";
import { AGENT_LABEL, FLOW_RUN_LABEL, OWNER_LABEL, type ContainerRuntime } from "../docker/port.js";
import { IMAGE_FLOWS_DIR } from "../storage/docker-storage.js";
import type { PullPolicy } from "./options.js";

export interface ContainerDeps {
  client: ApiClient;
  runtime: ContainerRuntime;
  logger: Logger;
  agentId: string;
  /** The API URL as containers must use it. */
  apiUrl: string;
  apiToken: string | undefined;
  network: string | undefined;
  pullPolicy: PullPolicy;
  env: Record<string, string>;
  keepContainers: boolean;
  stopGraceMs: number;
  /** The berth runtime image, for flows whose storage is not an image (local storage). */
  runtimeImage: () => Promise<string>;
}

export function containerName(flowRunId: string): string {
  return `berth-run-${flowRunId}`;
}

export class FlowRunContainer {
  private containerId: string | undefined;
  private cancelRequested = false;
  private readonly log: Logger;

  constructor(
    readonly claim: ClaimedRun,
    private readonly deps: ContainerDeps,
  ) {
    this.log = deps.logger.child({ flowRunId: claim.flowRun.id });
  }

  get flowRunId(): string {
    return this.claim.flowRun.id;
  }

  async run(): Promise<void> {
    const { flowRun, flow } = this.claim;
    try {
      const image = flow.storage.type === "docker" ? flow.storage.image : await this.deps.runtimeImage();
      await this.ensureImage(image);
      this.containerId = await this.start(image);
      this.log.info({ containerId: this.containerId.slice(0, 12), image }, "flow run container started");
      const exitCode = await this.deps.runtime.waitContainer(this.containerId);
      await this.settle(exitCode);
    } catch (err) {
      this.log.warn({ err }, "flow run could not be run");
      await this.finish("Failed", `the agent could not run this flow run: ${describeError(err)}`, flowRun.version);
    } finally {
      await this.cleanup();
    }
  }

  /** Stops the container: SIGTERM, then SIGKILL after the grace period. */
  async cancel(): Promise<void> {
    this.cancelRequested = true;
    if (this.containerId) await this.deps.runtime.stopContainer(this.containerId, this.deps.stopGraceMs);
  }

  private async ensureImage(image: string): Promise<void> {
    const { runtime, pullPolicy } = this.deps;
    if (pullPolicy === "always") return runtime.pullImage(image);
    if (await runtime.imageExists(image)) return;
    if (pullPolicy === "never") {
      throw new Error(`image ${image} is not on this host and the pull policy is "never": build it here or use --pull-policy if-not-present`);
    }
    this.log.info({ image }, "pulling image");
    await runtime.pullImage(image);
  }

  private async start(image: string): Promise<string> {
    const { flowRun, flow } = this.claim;
    const env: Record<string, string> = {
      ...this.deps.env,
      BERTH_API_URL: this.deps.apiUrl,
      BERTH_FLOW_RUN_ID: flowRun.id,
    };
    if (this.deps.apiToken) env.BERTH_API_TOKEN = this.deps.apiToken;
    const spec = {
      name: containerName(flowRun.id),
      image,
      cmd: ["berth", "execute", "flow-run"],
      env,
      labels: { [OWNER_LABEL]: "true", [AGENT_LABEL]: this.deps.agentId, [FLOW_RUN_LABEL]: flowRun.id },
      ...(this.deps.network ? { network: this.deps.network } : {}),
      ...(flow.storage.type === "local" ? { binds: [`${flow.storage.directory}:${IMAGE_FLOWS_DIR}:ro`] } : {}),
    };
    try {
      return await this.deps.runtime.runContainer(spec);
    } catch (err) {
      // A container of an earlier attempt at this run may still hold the deterministic name.
      if (!/already in use|Conflict/i.test(describeError(err))) throw err;
      await this.deps.runtime.removeContainer(spec.name);
      return this.deps.runtime.runContainer(spec);
    }
  }

  /** After the container stopped: if it did not record a final state, record one from what we know. */
  private async settle(exitCode: number): Promise<void> {
    const current = await this.deps.client.getFlowRun(this.flowRunId);
    if (FINAL_FLOW_RUN_STATES.includes(current.state)) {
      this.log.info({ state: current.state, exitCode }, "flow run finished");
      return;
    }
    if (this.cancelRequested || current.state === "Cancelling") {
      await this.finish("Cancelled", "cancelled: the agent stopped the container", current.version);
      return;
    }
    const output = this.containerId ? await this.deps.runtime.containerOutput(this.containerId, 30).catch(() => "") : "";
    const tail = output.trim() === "" ? "(no output)" : output.trimEnd();
    await this.finish("Failed", `the container exited with code ${exitCode} without reporting a final state; last output:\n${tail}`, current.version);
  }

  private async finish(state: FlowRunStateName, message: string, knownVersion: number): Promise<void> {
    try {
      const outcome = await writeFlowRunState(this.deps.client, this.flowRunId, { state, message }, knownVersion);
      this.log.info({ state: outcome.run.state, applied: outcome.applied }, message.split("\n")[0]);
    } catch (err) {
      this.log.error({ err, state }, "could not record the flow run's final state");
    }
  }

  private async cleanup(): Promise<void> {
    if (!this.containerId || this.deps.keepContainers) return;
    await this.deps.runtime.removeContainer(this.containerId).catch((err: unknown) => {
      this.log.warn({ err }, "could not remove the flow run container");
    });
  }
}

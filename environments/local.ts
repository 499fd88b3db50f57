/**
 * LocalEnvironment, the default: runs the flow in the current process (inside a flow run's container,
 * that is the container's process) with the default flow runner and executor.
 */
import type { EnvironmentSpec } from "../wire/schema.js";
import type { FlowState } from "../flows/state.js";
import type { Storage } from "../storage/storage.js";
import { Environment, type EnvironmentExecuteOptions } from "./environment.js";
import { environmentSpec } from "./spec.js";

export class LocalEnvironment extends Environment {
  override async execute(storage: Storage, flowLocation: string, opts: EnvironmentExecuteOptions = {}): Promise<FlowState> {
    await this.onStart?.();
    try {
      const flow = await storage.getFlow(flowLocation);
      // flow.run() uses the default runner and executor, which a flow-run container swaps for reporting ones.
      return await flow.run(opts);
    } catch (err) {
      this.logger.error({ err }, "Unexpected error raised during flow run");
      throw err;
    } finally {
      await this.onExit?.();
    }
  }

  // Identity is by class: a subclass of LocalEnvironment is custom code the server must not mistake for this.
  override serialize(): EnvironmentSpec {
    return Object.getPrototypeOf(this).constructor === LocalEnvironment
      ? environmentSpec(this, "LocalEnvironment", "LocalEnvironment")
      : super.serialize();
  }
}

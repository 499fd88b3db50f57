/**
 * The custom-environment example: a user's own Environment subclass that exists only in the flow's
 * storage image. The server only ever sees its serialized form (class name, labels, metadata).
 *
 *   berth register examples/custom-environment.ts --no-push
 *   berth run "Custom Environment Example" --watch
 */
import os from "node:os";
import {
  DockerStorage,
  Environment,
  Flow,
  getDefaultExecutorClass,
  getDefaultFlowRunnerClass,
  task,
  type Storage,
} from "berth";

/** Runs a flow with the default flow runner and executor, like the built-in LocalEnvironment. */
class MyCustomEnvironment extends Environment {
  /** npm modules the build-time healthcheck must resolve inside the image. */
  override get dependencies(): string[] {
    return [];
  }

  /** Sets up any infrastructure this environment needs; here it only says where it runs. */
  override async setup(_storage: Storage): Promise<void> {
    // In a flow-run container, the flow-run process is process 1 of the container's own PID namespace.
    this.logger.info(`setup ran as process ${process.pid} on ${os.hostname()}`);
  }

  override async execute(storage: Storage, flowLocation: string, _opts: Record<string, unknown> = {}): Promise<void> {
    await this.onStart?.();
    try {
      this.logger.info(`execute ran as process ${process.pid} on ${os.hostname()} for ${flowLocation}`);
      const flow = await storage.getFlow(flowLocation);
      const Executor = getDefaultExecutorClass();
      const Runner = getDefaultFlowRunnerClass();
      await new Runner({ flow }).run({ executor: new Executor() });
    } catch (err) {
      this.logger.error({ err }, "Unexpected error raised during flow run");
      throw err;
    } finally {
      await this.onExit?.();
    }
  }
}

const getValue = task(() => "Example!", { name: "get_value" });
const outputValue = task(({ value }: { value: string }) => console.log(value), { name: "output_value" });

const flow = new Flow("Custom Environment Example", {
  environment: new MyCustomEnvironment(),
  storage: new DockerStorage({ registryUrl: "localhost:5000/dev/", imageName: "custom-env-flow", imageTag: "0.1.0" }),
});

// Task dependencies with the imperative API.
outputValue.setUpstream(getValue, { flow });
outputValue.bind({ value: getValue }, { flow });

export default flow;

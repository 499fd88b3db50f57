import { Flow } from "../../flows/flow.js";
import { task } from "../../flows/task.js";

/** The seed's example graph (setUpstream + bind); `output` receives what output_value is given. */
export function seedFlow(output: (value: string) => void = (value) => console.log(value)): Flow {
  const getValue = task(() => "Example!", { name: "get_value" });
  const outputValue = task(({ value }: { value: string }) => output(value), { name: "output_value" });
  const flow = new Flow("Custom Environment Example");
  outputValue.setUpstream(getValue, { flow });
  outputValue.bind({ value: getValue }, { flow });
  return flow;
}

/** A flow's last runs as a strip of coloured marks, oldest on the left; each links to its run. */
import type { FlowRun } from "../../wire/schema.js";

export function OutcomeStrip({ runs }: { runs: FlowRun[] }) {
  if (runs.length === 0) return <span class="muted">no runs yet</span>;
  return (
    <span class="strip" aria-label="last runs">
      {[...runs].reverse().map((run) => (
        <a key={run.id} href={`#/runs/${run.id}`} class={`mark state-${run.state.toLowerCase()}`} title={`${run.state} · ${run.createdAt}`} />
      ))}
    </span>
  );
}

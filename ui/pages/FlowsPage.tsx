/** Flows: each flow's newest version, its labels, schedule and next runs, its last runs, and a Run button. */
import { useState } from "preact/hooks";
import type { FlowRecord, FlowRun, ScheduleView } from "../../wire/schema.js";
import { api } from "../api.js";
import { OutcomeStrip } from "../components/OutcomeStrip.js";
import { RunDialog } from "../components/RunDialog.js";
import { clock } from "../format.js";
import { usePoll } from "../hooks.js";

interface FlowRow {
  flow: FlowRecord;
  versions: number;
  runs: FlowRun[];
  schedule: ScheduleView | undefined;
}

async function loadFlows(signal: AbortSignal): Promise<FlowRow[]> {
  const [{ flows }, { schedules }] = await Promise.all([api.flows(signal), api.schedules(signal)]);
  const newest = new Map<string, { flow: FlowRecord; versions: number }>();
  for (const flow of flows) {
    const seen = newest.get(flow.name);
    if (!seen) newest.set(flow.name, { flow, versions: 1 });
    else newest.set(flow.name, { flow: flow.version > seen.flow.version ? flow : seen.flow, versions: seen.versions + 1 });
  }
  const rows = [...newest.values()].sort((a, b) => a.flow.name.localeCompare(b.flow.name));
  const runs = await Promise.all(rows.map((r) => api.runs({ flowName: r.flow.name, limit: 12 }, signal)));
  return rows.map((r, i) => ({ ...r, runs: runs[i]?.flowRuns ?? [], schedule: schedules.find((s) => s.flowName === r.flow.name) }));
}

export function FlowsPage() {
  const { data, error } = usePoll(loadFlows, 5000, []);
  const [running, setRunning] = useState<FlowRecord | undefined>(undefined);
  return (
    <main>
      <h1>Flows</h1>
      {error && <p class="error">{error.message}</p>}
      {data && data.length === 0 && (
        <p class="muted">
          No flows yet: <code>berth register flow.ts</code>
        </p>
      )}
      {data && data.length > 0 && (
        <table class="table" data-testid="flows">
          <thead>
            <tr>
              <th>flow</th>
              <th>version</th>
              <th>labels</th>
              <th>schedule</th>
              <th>last runs</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {data.map(({ flow, versions, runs, schedule }) => (
              <tr key={flow.name} data-flow={flow.name}>
                <td class="strong">{flow.name}</td>
                <td>
                  v{flow.version}
                  {versions > 1 && <span class="muted"> ({versions} versions)</span>}
                </td>
                <td>{flow.labels.length > 0 ? flow.labels.map((l) => <span class="label" key={l}>{l}</span>) : <span class="muted">none</span>}</td>
                <td>
                  {!schedule || schedule.clocks.length === 0 ? (
                    <span class="muted">none</span>
                  ) : (
                    schedule.clocks.map((c) => (
                      <div key={c.key}>
                        {c.description}
                        {schedule.paused ? <span class="label">paused</span> : <span class="muted"> · next {clock(c.next)}</span>}
                      </div>
                    ))
                  )}
                </td>
                <td>
                  <OutcomeStrip runs={runs} />
                </td>
                <td>
                  <button onClick={() => setRunning(flow)} aria-label={`Run ${flow.name}`}>
                    Run
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {running && <RunDialog flow={running} onClose={() => setRunning(undefined)} />}
    </main>
  );
}

/**
 * Runs: newest first, filtered by flow, state, label and creation time, a page at a time (the store pages,
 * so ten thousand runs cost what a hundred do); states update live. A Scheduled run nobody can take says why.
 */
import { useState } from "preact/hooks";
import type { FlowRunView } from "../../wire/schema.js";
import { api, type RunFilter } from "../api.js";
import { StateBadge } from "../components/StateBadge.js";
import { clock, runDuration } from "../format.js";
import { usePoll } from "../hooks.js";

export const RUN_STATES = ["Scheduled", "Submitted", "Running", "Success", "Failed", "Cancelling", "Cancelled"];
const PAGE = 50;

export function RunsPage() {
  const [filter, setFilter] = useState<RunFilter>({});
  const [older, setOlder] = useState<FlowRunView[]>([]);
  const [more, setMore] = useState<string | undefined>(undefined);
  const first = usePoll((signal) => api.runs({ ...filter, limit: PAGE }, signal), 2000, [JSON.stringify(filter)]);
  const agents = usePoll((signal) => api.agents(signal), 10_000, []);
  const flows = usePoll((signal) => api.flows(signal), 30_000, []);
  const agentName = new Map((agents.data?.agents ?? []).map((a) => [a.id, a.name]));
  const flowNames = [...new Set((flows.data?.flows ?? []).map((f) => f.name))].sort();
  const runs = [...(first.data?.flowRuns ?? []), ...older];
  const lastId = runs.at(-1)?.id;
  const canPage = (first.data?.flowRuns.length ?? 0) === PAGE && (older.length === 0 || more !== undefined);
  const update = (change: Partial<RunFilter>) => {
    setOlder([]);
    setMore(undefined);
    setFilter(Object.fromEntries(Object.entries({ ...filter, ...change }).filter(([, v]) => v !== "" && v !== undefined)) as RunFilter);
  };
  const loadOlder = async () => {
    if (!lastId) return;
    const page = await api.runs({ ...filter, limit: PAGE, after: lastId });
    setOlder([...older, ...page.flowRuns]);
    setMore(page.flowRuns.length === PAGE ? page.flowRuns.at(-1)?.id : undefined);
  };
  return (
    <main>
      <h1>Runs</h1>
      <div class="toolbar">
        <select aria-label="flow" value={filter.flowName ?? ""} onChange={(e) => update({ flowName: (e.target as HTMLSelectElement).value })}>
          <option value="">every flow</option>
          {flowNames.map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
        <select aria-label="state" value={filter.state ?? ""} onChange={(e) => update({ state: (e.target as HTMLSelectElement).value })}>
          <option value="">every state</option>
          {RUN_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <input aria-label="label" placeholder="label" value={filter.label ?? ""} onChange={(e) => update({ label: (e.target as HTMLInputElement).value.trim() })} />
        <label>
          since{" "}
          <input
            type="datetime-local"
            aria-label="created since"
            onChange={(e) => {
              const v = (e.target as HTMLInputElement).value;
              update({ createdSince: v === "" ? "" : new Date(v).toISOString() });
            }}
          />
        </label>
      </div>
      {first.error && <p class="error">{first.error.message}</p>}
      {first.data && runs.length === 0 && <p class="muted">No runs match.</p>}
      {runs.length > 0 && (
        <table class="table" data-testid="runs">
          <thead>
            <tr>
              <th>state</th>
              <th>flow</th>
              <th>labels</th>
              <th>agent</th>
              <th>start</th>
              <th>duration</th>
              <th>note</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((run) => (
              <tr key={run.id} data-run={run.id}>
                <td>
                  <StateBadge state={run.state} title={run.stateMessage} />
                </td>
                <td>
                  <a href={`#/runs/${run.id}`}>
                    {run.flowName} <span class="muted">v{run.flowVersion}</span>
                  </a>
                </td>
                <td>{run.labels.map((l) => <span class="label" key={l}>{l}</span>)}</td>
                <td>{run.agentId ? (agentName.get(run.agentId) ?? run.agentId.slice(0, 8)) : <span class="muted">—</span>}</td>
                <td>{clock(run.startedAt ?? run.scheduledStart)}</td>
                <td>{runDuration(run)}</td>
                <td class="note" data-testid="pickup">
                  {run.state === "Scheduled" && run.pickup ? run.pickup : ""}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {canPage && (
        <button class="secondary" onClick={() => void loadOlder()}>
          Older runs
        </button>
      )}
    </main>
  );
}

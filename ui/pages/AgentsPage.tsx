/** Agents: name, labels, status, health, slots used of total, free disk and last heartbeat. */
import type { AgentRecord } from "../../wire/schema.js";
import { api } from "../api.js";
import { ago } from "../format.js";
import { usePoll } from "../hooks.js";

const GiB = 1024 ** 3;

function Health({ agent }: { agent: AgentRecord }) {
  if (!agent.health) return <span class="muted">not reported</span>;
  if (agent.health.reasons.length === 0) return <span class="ok">healthy</span>;
  return (
    <span class="bad" title={agent.health.reasons.join("\n")}>
      {agent.health.reasons[0]}
      {agent.health.reasons.length > 1 ? ` (+${agent.health.reasons.length - 1})` : ""}
    </span>
  );
}

export function AgentsPage() {
  const { data, error } = usePoll((signal) => api.agents(signal), 3000, []);
  return (
    <main>
      <h1>Agents</h1>
      {error && <p class="error">{error.message}</p>}
      {data && data.agents.length === 0 && (
        <p class="muted">
          No agent has registered: <code>berth agent --label …</code>
        </p>
      )}
      {data && data.agents.length > 0 && (
        <table class="table" data-testid="agents">
          <thead>
            <tr>
              <th>agent</th>
              <th>labels</th>
              <th>status</th>
              <th>health</th>
              <th>slots</th>
              <th>disk free</th>
              <th>last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {data.agents.map((a) => (
              <tr key={a.id} data-agent={a.name}>
                <td class="strong">{a.name}</td>
                <td>{a.labels.length > 0 ? a.labels.map((l) => <span class="label" key={l}>{l}</span>) : <span class="muted">none</span>}</td>
                <td>
                  <span class={`status status-${a.status}`}>{a.status}</span>
                  {a.waiting ? <span class="muted"> · waiting for work</span> : ""}
                </td>
                <td>
                  <Health agent={a} />
                </td>
                <td>
                  {a.health ? a.health.slotsUsed : "?"} / {a.concurrency}
                </td>
                <td>{a.health?.diskFreeBytes != null ? `${(a.health.diskFreeBytes / GiB).toFixed(1)} GiB` : "—"}</td>
                <td>{ago(a.lastHeartbeatAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}

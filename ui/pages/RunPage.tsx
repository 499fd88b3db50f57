/**
 * One run: its DAG with each task coloured by its state, the state timeline, where its time went, its
 * parameters, the failing task's error, its live logs, and Cancel and Re-run.
 */
import { useState } from "preact/hooks";
import { PHASE_STEPS } from "../../cli/format.js";
import type { FlowRunView, RunPhases } from "../../wire/schema.js";
import { api } from "../api.js";
import { Dag } from "../components/Dag.js";
import { Logs } from "../components/Logs.js";
import { StateBadge } from "../components/StateBadge.js";
import { FINAL, clock, duration, runDuration } from "../format.js";
import { usePoll } from "../hooks.js";

function Phases({ phases }: { phases: RunPhases }) {
  const steps = PHASE_STEPS.map(([label, from, to]) => {
    const start = phases[from];
    const end = phases[to];
    return start && end ? { label, ms: Math.max(0, Date.parse(end as string) - Date.parse(start as string)) } : undefined;
  }).filter((s): s is { label: string; ms: number } => s !== undefined);
  if (steps.length === 0) return null;
  const total = steps.reduce((sum, s) => sum + s.ms, 0) || 1;
  return (
    <div class="phases" data-testid="phases">
      <div class="phase-bar">
        {steps.map((s) => (
          <span key={s.label} class={`phase phase-${s.label}`} style={{ width: `${Math.max(1, (100 * s.ms) / total)}%` }} title={`${s.label} ${duration(s.ms)}`} />
        ))}
      </div>
      <div class="phase-legend">
        {steps.map((s) => (
          <span key={s.label}>
            <i class={`phase phase-${s.label}`} /> {s.label} {duration(s.ms)}
            {s.label === "image" && phases.imageSource ? ` (${phases.imageSource})` : ""}
          </span>
        ))}
      </div>
    </div>
  );
}

export function RunPage({ id }: { id: string }) {
  const run = usePoll((signal) => api.run(id, signal), 1000, [id]);
  const final = run.data !== undefined && FINAL.has(run.data.state);
  const flowId = run.data?.flowId;
  const flow = usePoll((signal) => (flowId ? api.flow(flowId, signal) : Promise.resolve(undefined)), 0, [flowId]);
  const taskRuns = usePoll((signal) => api.taskRuns(id, signal), final ? 0 : 1000, [id, final]);
  const states = usePoll((signal) => api.states(id, signal), final ? 0 : 2000, [id, final]);
  const [action, setAction] = useState<string | undefined>(undefined);
  if (run.error && !run.data) return <main class="error">{run.error.message}</main>;
  if (!run.data) return <main class="muted">loading…</main>;
  const r: FlowRunView = run.data;
  const failed = (taskRuns.data?.taskRuns ?? []).filter((t) => t.state === "Failed");
  const cancel = async () => {
    try {
      await api.cancel(id);
      setAction("cancel requested");
      run.refresh();
    } catch (err) {
      setAction(err instanceof Error ? err.message : String(err));
    }
  };
  const rerun = async () => {
    try {
      const { flowRun } = await api.createRun({ flowId: r.flowId, parameters: r.parameters, labels: r.labels });
      location.hash = `#/runs/${flowRun.id}`;
    } catch (err) {
      setAction(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <main>
      <h1>
        {r.flowName} <span class="muted">v{r.flowVersion}</span> <StateBadge state={r.state} title={r.stateMessage} />
      </h1>
      <p class="muted mono">{r.id}</p>
      <div class="toolbar">
        {!final && r.state !== "Cancelling" && (
          <button class="danger" onClick={() => void cancel()}>
            Cancel
          </button>
        )}
        <button class="secondary" onClick={() => void rerun()}>
          Re-run
        </button>
        {action && <span class="muted">{action}</span>}
      </div>
      {r.stateMessage && <p data-testid="state-message">{r.stateMessage}</p>}
      {r.state === "Scheduled" && r.pickup && (
        <p class="note" data-testid="pickup">
          {r.pickup}
        </p>
      )}
      <dl class="facts">
        <dt>labels</dt>
        <dd>{r.labels.length > 0 ? r.labels.join(", ") : "none"}</dd>
        <dt>created</dt>
        <dd>{clock(r.createdAt)}</dd>
        <dt>started</dt>
        <dd>{clock(r.startedAt)}</dd>
        <dt>duration</dt>
        <dd>{runDuration(r)}</dd>
        <dt>attempt</dt>
        <dd>{r.epoch}</dd>
      </dl>
      {failed.length > 0 && (
        <section class="failure" data-testid="failure">
          {failed.map((t) => (
            <p key={t.taskSlug}>
              <strong>{t.taskName}</strong> failed: {t.message ?? "no message"}
            </p>
          ))}
        </section>
      )}
      <h2>Tasks</h2>
      {flow.data ? <Dag tasks={flow.data.tasks} taskRuns={taskRuns.data?.taskRuns ?? []} /> : <p class="muted">loading the flow…</p>}
      {r.phases && (
        <>
          <h2>Where its time went</h2>
          <Phases phases={r.phases} />
        </>
      )}
      <h2>Timeline</h2>
      <ol class="timeline" data-testid="timeline">
        {(states.data?.states ?? []).map((s) => (
          <li key={s.version}>
            <StateBadge state={s.state} /> <span class="muted">{clock(s.at)}</span> {s.message}
          </li>
        ))}
      </ol>
      <h2>Parameters</h2>
      <pre class="params">{JSON.stringify(r.parameters, null, 2)}</pre>
      <h2>Logs</h2>
      <Logs runId={id} following={!final || (r.phases !== undefined && r.phases.containerStarted !== null && r.phases.cleanedUp === null)} />
    </main>
  );
}

/**
 * A flow's DAG: laid out by dagre (left to right), drawn as SVG, each task coloured by its state in this run.
 * Large flows are drawn too; past a few hundred tasks the labels are left out to keep the page responsive.
 */
import dagre from "@dagrejs/dagre";
import { useMemo } from "preact/hooks";
import type { FlowRecord, TaskRun } from "../../wire/schema.js";

const NODE_W = 150;
const NODE_H = 34;
const LABELS_UP_TO = 400;

export function Dag({ tasks, taskRuns }: { tasks: FlowRecord["tasks"]; taskRuns: TaskRun[] }) {
  const layout = useMemo(() => {
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 40, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const task of tasks) g.setNode(task.slug, { width: NODE_W, height: NODE_H });
    for (const task of tasks) for (const up of task.upstream ?? []) g.setEdge(up, task.slug);
    dagre.layout(g);
    const graph = g.graph();
    return {
      width: graph.width ?? 0,
      height: graph.height ?? 0,
      nodes: tasks.map((task) => ({ task, ...g.node(task.slug) })),
      edges: g.edges().map((e) => ({ key: `${e.v}->${e.w}`, points: (g.edge(e).points ?? []) as { x: number; y: number }[] })),
    };
  }, [tasks]);
  const states = new Map(taskRuns.map((t) => [t.taskSlug, t]));
  if (tasks.length === 0) return <p class="muted">This flow version names no tasks.</p>;
  return (
    <div class="dag">
      <svg width={layout.width} height={layout.height} viewBox={`0 0 ${layout.width} ${layout.height}`} role="img" aria-label="the flow's tasks">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="edge-head" />
          </marker>
        </defs>
        {layout.edges.map((edge) => (
          <polyline key={edge.key} class="edge" points={edge.points.map((p) => `${p.x},${p.y}`).join(" ")} marker-end="url(#arrow)" />
        ))}
        {layout.nodes.map(({ task, x, y }) => {
          const run = states.get(task.slug);
          const state = run?.state ?? "Pending";
          return (
            <g key={task.slug} class={`node state-${state.toLowerCase()}`} data-task={task.slug} data-state={state} transform={`translate(${x - NODE_W / 2},${y - NODE_H / 2})`}>
              <title>{`${task.name}: ${state}${run?.message ? ` (${run.message})` : ""}`}</title>
              <rect width={NODE_W} height={NODE_H} rx="6" />
              {tasks.length <= LABELS_UP_TO && (
                <text x={NODE_W / 2} y={NODE_H / 2 + 4} text-anchor="middle">
                  {task.name.length > 20 ? `${task.name.slice(0, 19)}…` : task.name}
                </text>
              )}
            </g>
          );
        })}
      </svg>
    </div>
  );
}

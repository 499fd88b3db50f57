/** A run's or a task's state, coloured the same way everywhere. */
export function StateBadge({ state, title }: { state: string; title?: string | null }) {
  return (
    <span class={`state state-${state.toLowerCase()}`} title={title ?? state} data-state={state}>
      {state}
    </span>
  );
}

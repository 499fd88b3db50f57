/** The Run button's form: the flow's parameters (JSON values, defaults filled in), then a new run. */
import { useState } from "preact/hooks";
import type { FlowRecord } from "../../wire/schema.js";
import { api } from "../api.js";

export function RunDialog({ flow, onClose }: { flow: FlowRecord; onClose: () => void }) {
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(flow.parameters.map((p) => [p.name, p.default === undefined ? "" : JSON.stringify(p.default)])),
  );
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    const parameters: Record<string, unknown> = {};
    for (const p of flow.parameters) {
      const text = values[p.name] ?? "";
      if (text.trim() === "") {
        if (p.required) return setError(`parameter ${p.name} is required`);
        continue;
      }
      try {
        parameters[p.name] = JSON.parse(text);
      } catch {
        // Plain words are taken as a string, as the CLI's --param k=v does.
        parameters[p.name] = text;
      }
    }
    setBusy(true);
    try {
      const { flowRun } = await api.createRun({ flowId: flow.id, parameters });
      location.hash = `#/runs/${flowRun.id}`;
      onClose();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };
  return (
    <div class="overlay">
      <form
        class="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <h2>
          Run {flow.name} <span class="muted">v{flow.version}</span>
        </h2>
        {flow.parameters.length === 0 && <p class="muted">This flow takes no parameters.</p>}
        {flow.parameters.map((p) => (
          <label key={p.name} class="field">
            {p.name}
            {p.required ? " *" : ""}
            <input
              value={values[p.name] ?? ""}
              aria-label={`parameter ${p.name}`}
              onInput={(e) => setValues({ ...values, [p.name]: (e.target as HTMLInputElement).value })}
              placeholder="a JSON value, or text"
            />
          </label>
        ))}
        {error && <p class="error">{error}</p>}
        <div class="actions">
          <button type="button" class="secondary" onClick={onClose}>
            Close
          </button>
          <button type="submit" disabled={busy}>
            Start run
          </button>
        </div>
      </form>
    </div>
  );
}

/**
 * A run's logs, following like `berth logs --follow`: each request long-polls for lines after the last one
 * seen, until the run is over and its output has settled. Filterable by task and level.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import type { StoredLog } from "../../wire/schema.js";
import { api } from "../api.js";

const LEVELS = ["debug", "info", "warn", "error"] as const;

export function Logs({ runId, following }: { runId: string; following: boolean }) {
  const [lines, setLines] = useState<StoredLog[]>([]);
  const [error, setError] = useState<string | undefined>(undefined);
  const [task, setTask] = useState("");
  const [level, setLevel] = useState("debug");
  const followingRef = useRef(following);
  followingRef.current = following;
  const box = useRef<HTMLPreElement>(null);
  const pinned = useRef(true);

  useEffect(() => {
    const controller = new AbortController();
    let after = 0;
    setLines([]);
    const loop = async () => {
      // One more read after the run stops following, so that the last lines are in.
      for (let last = false; !controller.signal.aborted; ) {
        try {
          const page = await api.logs(runId, after, followingRef.current ? 20_000 : 0, controller.signal);
          after = page.next;
          if (page.logs.length > 0) setLines((old) => [...old, ...page.logs]);
          setError(undefined);
          if (page.logs.length >= 1000) continue;
          if (last) return;
          if (!followingRef.current) last = true;
        } catch (err) {
          if (controller.signal.aborted) return;
          setError(err instanceof Error ? err.message : String(err));
          await new Promise((resolve) => setTimeout(resolve, 2000));
        }
      }
    };
    void loop();
    return () => controller.abort();
  }, [runId]);

  // Follow the newest line inside the log box (never by scrolling the page), unless the reader scrolled up.
  useEffect(() => {
    if (box.current && pinned.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines.length]);

  const tasks = [...new Set(lines.map((l) => l.task).filter((t): t is string => !!t))].sort();
  const minLevel = LEVELS.indexOf(level as (typeof LEVELS)[number]);
  const shown = lines.filter((l) => (task === "" || l.task === task) && LEVELS.indexOf(l.level as (typeof LEVELS)[number]) >= minLevel);
  return (
    <section class="logs">
      <div class="toolbar">
        <label>
          task{" "}
          <select value={task} onChange={(e) => setTask((e.target as HTMLSelectElement).value)} aria-label="filter logs by task">
            <option value="">all</option>
            {tasks.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        <label>
          level{" "}
          <select value={level} onChange={(e) => setLevel((e.target as HTMLSelectElement).value)} aria-label="lowest log level">
            {LEVELS.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </label>
        <span class="muted">
          {shown.length} of {lines.length} lines{following ? " · following" : ""}
        </span>
      </div>
      {error && <p class="error">logs: {error}</p>}
      <pre
        class="log-lines"
        data-testid="logs"
        ref={box}
        onScroll={(e) => {
          const el = e.currentTarget;
          pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {shown.map((l) => (
          <div key={l.id} class={`log log-${l.level}`}>
            <span class="log-at">{l.at.slice(11, 23)}</span> <span class="log-level">{l.level.padEnd(5)}</span>{" "}
            {l.task && <span class="log-task">[{l.task}]</span>} {l.stream && <span class="log-stream">[{l.stream}]</span>} {l.message}
          </div>
        ))}
      </pre>
    </section>
  );
}

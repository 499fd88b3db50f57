/** Data that follows the server: fetched at once, then again every `everyMs` while the page shows it. */
import { useEffect, useRef, useState } from "preact/hooks";

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  /** Fetch again now (after an action). */
  refresh: () => void;
}

export function usePoll<T>(load: (signal: AbortSignal) => Promise<T>, everyMs: number, deps: unknown[]): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const once = async () => {
      try {
        const value = await loadRef.current(controller.signal);
        if (controller.signal.aborted) return;
        setData(value);
        setError(undefined);
      } catch (err) {
        if (controller.signal.aborted) return;
        setError(err instanceof Error ? err : new Error(String(err)));
      }
      if (everyMs > 0) timer = setTimeout(() => void once(), everyMs);
    };
    void once();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [...deps, everyMs, tick]);
  return { data, error, refresh: () => setTick((t) => t + 1) };
}

import { EXIT } from "./exit.js";

/**
 * The only module that installs signal handlers and exits. First SIGTERM/SIGINT: `graceful` (bounded by
 * the caller); a second one: `forceful`, then exit at once.
 */
export function onShutdown(handlers: { graceful: (signal: string) => Promise<void>; forceful?: () => void }): void {
  let signals = 0;
  const handle = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      handlers
        .graceful(signal)
        .then(() => process.exit(EXIT.ok))
        .catch((err: unknown) => {
          process.stderr.write(`berth: shutdown failed: ${(err as Error)?.message ?? String(err)}\n`);
          process.exit(EXIT.error);
        });
      return;
    }
    handlers.forceful?.();
    process.exit(EXIT.interrupted);
  };
  process.on("SIGTERM", handle);
  process.on("SIGINT", handle);
}

/** An AbortSignal aborted by the first SIGTERM or SIGINT. */
export function signalOnInterrupt(): AbortSignal {
  const controller = new AbortController();
  const abort = () => controller.abort();
  process.once("SIGTERM", abort);
  process.once("SIGINT", abort);
  return controller.signal;
}

/**
 * The engine reports builds, pulls, pushes and imports as a stream of JSON messages, one per line. A failure
 * arrives as a message with `error`/`errorDetail` inside an HTTP 200 response, so the stream must be read to
 * the end before anyone can say it succeeded.
 */
import { addAbortSignal, type Readable } from "node:stream";

export interface ProgressMessage {
  stream?: string;
  status?: string;
  id?: string;
  error?: string;
  errorDetail?: { message?: string; code?: number };
  aux?: { ID?: string };
}

/** Reads every message; resolves with the first error message the engine reported, if any. */
export async function followProgress(
  stream: Readable,
  onMessage: (message: ProgressMessage) => void,
  signal?: AbortSignal,
): Promise<{ error: string | undefined }> {
  if (signal) addAbortSignal(signal, stream);
  let pending = "";
  let error: string | undefined;
  const handle = (line: string): void => {
    const text = line.trim();
    if (text === "") return;
    const message = parse(text);
    if (error === undefined && (message.error !== undefined || message.errorDetail !== undefined)) {
      error = (message.errorDetail?.message ?? message.error ?? "unknown error").trim();
    }
    onMessage(message);
  };
  for await (const chunk of stream) {
    pending += typeof chunk === "string" ? chunk : (chunk as Buffer).toString("utf8");
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      handle(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
    }
  }
  handle(pending);
  return { error };
}

function parse(text: string): ProgressMessage {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null) return value as ProgressMessage;
  } catch {
    // Older engines and proxies sometimes interleave plain text; keep it as output rather than fail the build.
  }
  return { stream: `${text}\n` };
}

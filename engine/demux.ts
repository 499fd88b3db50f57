import type { OutputLine } from "../shared/output-frames.js";
/**
 * Docker multiplexes a non-TTY container's stdout and stderr into frames with an 8-byte header
 * (stream type, three zero bytes, big-endian length). A TTY container's log is raw text.
 */

export function demultiplex(buffer: Buffer): string {
  if (!looksMultiplexed(buffer)) return buffer.toString("utf8");
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const length = buffer.readUInt32BE(offset + 4);
    const start = offset + 8;
    parts.push(buffer.subarray(start, Math.min(start + length, buffer.length)));
    offset = start + length;
  }
  return Buffer.concat(parts).toString("utf8");
}

function looksMultiplexed(buffer: Buffer): boolean {
  if (buffer.length < 8) return buffer.length === 0;
  const type = buffer[0] ?? 255;
  return type <= 2 && buffer[1] === 0 && buffer[2] === 0 && buffer[3] === 0;
}

/**
 * A followed log (multiplexed frames, each line prefixed by the engine's RFC 3339 timestamp) as lines in
 * order, per stream: a frame or a line split across chunks is put back together; a last line without a
 * newline still comes out when the log ends.
 */
export async function* outputLines(chunks: AsyncIterable<Buffer | string>): AsyncGenerator<OutputLine> {
  let pending: Buffer = Buffer.alloc(0);
  const partial: Record<OutputLine["stream"], string> = { stdout: "", stderr: "" };
  function* lines(stream: OutputLine["stream"], text: string): Generator<OutputLine> {
    const all = partial[stream] + text;
    const parts = all.split("\n");
    partial[stream] = parts.pop() ?? "";
    for (const part of parts) yield stampedLine(stream, part);
  }
  for await (const chunk of chunks) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, Buffer.from(chunk)]);
    while (pending.length >= 8) {
      const length = pending.readUInt32BE(4);
      if (pending.length < 8 + length) break;
      const stream = pending[0] === 2 ? "stderr" : "stdout";
      yield* lines(stream, pending.subarray(8, 8 + length).toString("utf8"));
      pending = pending.subarray(8 + length);
    }
  }
  for (const stream of ["stdout", "stderr"] as const) if (partial[stream] !== "") yield stampedLine(stream, partial[stream]);
}

/** "2026-12-02T05:01:02.123456789Z text" → the line, with its time cut to milliseconds. */
function stampedLine(stream: OutputLine["stream"], raw: string): OutputLine {
  const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d) /.exec(text);
  if (!match) return { stream, at: new Date().toISOString(), text };
  const at = new Date(`${match[1]}${(match[2] ?? ".000").slice(0, 4).padEnd(4, "0")}${match[3]}`);
  return { stream, at: Number.isNaN(at.getTime()) ? new Date().toISOString() : at.toISOString(), text: text.slice(match[0].length) };
}

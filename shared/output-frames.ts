/**
 * How a flow-run container's output becomes run logs, every byte of it, each line once.
 *
 * Two paths, one store:
 * - The runtime ships console lines itself (with their task and level), numbered 1, 2, … (`seq`), and also
 *   writes each one to stdout or stderr framed by an OSC escape sequence, which terminals do not show:
 *   `ESC ] berth; <seq> ; <level> ; <task> BEL <message> ESC ] berth; BEL`.
 * - The agent follows the container's output (the engine's log). Unframed lines (process.stdout.write, child
 *   processes, native modules) it ships as they come, numbered RAW_SEQ_BASE + their position in the output.
 *   Framed lines it keeps, and ships when the container has stopped: those the runtime shipped already are
 *   ignored by the store (a numbered line is stored once per attempt), those it could not (killed before it
 *   flushed) are recovered.
 * Following the output again (after an agent restart) numbers every line the same way, so nothing is stored
 * twice either.
 */
import { MAX_LOG_MESSAGE_LENGTH } from "../wire/constants.js";
import type { LogLevel, LogLine } from "../wire/schema.js";
import { cutText } from "./text.js";

/** Where the agent's numbers for unframed lines start: far above any console line's. */
export const RAW_SEQ_BASE = 1_000_000_000;

const OPEN = "\u001b]berth;";
const BEL = "\u0007";
const CLOSE = `${OPEN}${BEL}`;
const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** A console line as the runtime writes it to its stdout or stderr. */
export function frameConsoleLine(seq: number, level: LogLevel, task: string | null, message: string): string {
  return `${OPEN}${seq};${level};${encodeURIComponent(task ?? "")}${BEL}${message}${CLOSE}\n`;
}

/** The text without frames: what a person should see of the output (failure reports). */
export function unframe(text: string): string {
  return text.replace(/\u001b\]berth;[^\u0007]*\u0007/g, "");
}

/** A line of a container's output as the engine gives it. */
export interface OutputLine {
  stream: "stdout" | "stderr";
  /** The engine's timestamp of the line (ISO, milliseconds). */
  at: string;
  text: string;
}

export type ReadLine = { kind: "raw"; line: LogLine } | { kind: "console"; line: LogLine };

/** Turns a container's output, line by line in order, into run log lines. One per container attempt. */
export class OutputReader {
  private raw = 0;
  /** A console line spanning several output lines (its message had newlines), per stream. */
  private open = new Map<OutputLine["stream"], { header: { seq: number; level: LogLevel; task: string | null }; at: string; parts: string[] }>();

  read(line: OutputLine): ReadLine | undefined {
    const pending = this.open.get(line.stream);
    if (pending) {
      const end = line.text.endsWith(CLOSE);
      pending.parts.push(end ? line.text.slice(0, -CLOSE.length) : line.text);
      if (!end) return undefined;
      this.open.delete(line.stream);
      return this.console(pending.header, pending.at, pending.parts.join("\n"), line.stream);
    }
    const header = line.text.startsWith(OPEN) ? parseHeader(line.text) : undefined;
    if (header) {
      const body = line.text.slice(header.length);
      if (body.endsWith(CLOSE)) return this.console(header, line.at, body.slice(0, -CLOSE.length), line.stream);
      this.open.set(line.stream, { header, at: line.at, parts: [body] });
      return undefined;
    }
    this.raw += 1;
    const message = cutText(line.text, MAX_LOG_MESSAGE_LENGTH);
    return { kind: "raw", line: { at: line.at, level: line.stream === "stderr" ? "warn" : "info", message, task: null, seq: RAW_SEQ_BASE + this.raw, stream: line.stream } };
  }

  /** Console lines whose end never came (the container was killed mid-write). */
  unfinished(): LogLine[] {
    return [...this.open].map(([stream, p]) => this.console(p.header, p.at, p.parts.join("\n"), stream).line);
  }

  private console(header: { seq: number; level: LogLevel; task: string | null }, at: string, message: string, stream: OutputLine["stream"]): ReadLine {
    return { kind: "console", line: { at, level: header.level, message: cutText(message, MAX_LOG_MESSAGE_LENGTH), task: header.task, seq: header.seq, stream } };
  }
}

function parseHeader(text: string): { seq: number; level: LogLevel; task: string | null; length: number } | undefined {
  const end = text.indexOf(BEL, OPEN.length);
  if (end < 0) return undefined;
  const [seqText, level, task] = text.slice(OPEN.length, end).split(";");
  const seq = Number(seqText);
  if (!Number.isSafeInteger(seq) || seq <= 0 || seq >= RAW_SEQ_BASE || !LEVELS.includes(level as LogLevel)) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(task ?? "");
  } catch {
    return undefined;
  }
  return { seq, level: level as LogLevel, task: decoded === "" ? null : decoded, length: end + 1 };
}

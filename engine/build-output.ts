/**
 * Follows the classic builder's output so that a failure can be reported the way a user debugs it: which
 * step failed, what that step printed last, and the engine's error.
 */
import { BerthError } from "../wire/errors.js";
import type { ProgressMessage } from "./progress.js";

const STEP = /^Step \d+\/\d+ : /;
/** Builder chatter that says nothing about why a step failed. */
const NOISE = /^ ---> |^Removing intermediate container |^Successfully (built|tagged) /;
/** The builder colours a step's stderr with ANSI escapes; they only garble logs and error messages. */
const ANSI = /\x1b\[[0-9;]*m/g;
const MESSAGE_TAIL = 20;
const DETAILS_TAIL = 100;

export class BuildOutput {
  readonly lines: string[] = [];
  imageId: string | undefined;
  private step: string | undefined;
  private stepStart = 0;
  private partial = "";

  constructor(private readonly onOutput?: (line: string) => void) {}

  take(message: ProgressMessage): void {
    if (message.aux?.ID) this.imageId = message.aux.ID;
    if (message.stream === undefined) return;
    const text = this.partial + message.stream;
    const parts = text.split("\n");
    this.partial = parts.pop() ?? "";
    for (const part of parts) this.line(part);
  }

  /** Flushes a last line that had no newline; returns the image id the build produced. */
  finish(): string | undefined {
    if (this.partial !== "") this.line(this.partial);
    this.partial = "";
    if (this.imageId === undefined) {
      const built = this.lines.map((l) => /^Successfully built ([0-9a-f]+)/.exec(l)?.[1]).find(Boolean);
      if (built) this.imageId = built;
    }
    return this.imageId;
  }

  failure(tag: string, error: string, cause?: unknown): BerthError {
    this.finish();
    const stepOutput = this.lines.slice(this.stepStart + 1).filter((l) => !NOISE.test(l) && l.trim() !== "");
    const shown = stepOutput.slice(-MESSAGE_TAIL);
    const where = this.step === undefined ? "" : ` at ${this.step}`;
    // The classic builder pulls a missing FROM image; on hosts without a registry that is the usual failure.
    const hint = this.step !== undefined && /^Step \d+\/\d+ : FROM /i.test(this.step) && stepOutput.length === 0
      ? " (is the base image on this host? see `docker images`)"
      : "";
    const body = shown.length > 0 ? `\n${shown.map((l) => `  | ${l}`).join("\n")}` : "";
    return new BerthError("BERTH_E_IMAGE_BUILD", `docker build of ${tag} failed${where}: ${error}${hint}${body}`, {
      ...(cause === undefined ? {} : { cause }),
      details: { tag, step: this.step ?? null, error, output: this.lines.slice(-DETAILS_TAIL) },
    });
  }

  private line(raw: string): void {
    const line = raw.replace(ANSI, "").replace(/\r$/, "");
    if (STEP.test(line)) {
      this.step = line;
      this.stepStart = this.lines.length;
    }
    this.lines.push(line);
    this.onOutput?.(line);
  }
}

import { afterEach, describe, expect, it, vi } from "vitest";
import { consoleSink, createLogger, getLogSink, setLogSink, type LogRecord } from "../shared/logging.js";

afterEach(() => {
  setLogSink(consoleSink);
  vi.restoreAllMocks();
});

describe("logging", () => {
  it("sends records with bindings and fields to the process-wide sink, even one set later", () => {
    const logger = createLogger({ environment: "Env" }).child({ task: "t" });
    const records: LogRecord[] = [];
    const previous = setLogSink((r) => records.push(r));
    expect(previous).toBe(consoleSink);
    logger.info("plain");
    logger.warn({ n: 2 }, "with fields");
    logger.debug({ msg: "from msg" });
    expect(records.map(({ level, message, fields }) => ({ level, message, fields }))).toEqual([
      { level: "info", message: "plain", fields: { environment: "Env", task: "t" } },
      { level: "warn", message: "with fields", fields: { environment: "Env", task: "t", n: 2 } },
      { level: "debug", message: "from msg", fields: { environment: "Env", task: "t" } },
    ]);
    expect(Number.isNaN(Date.parse(records[0]!.at))).toBe(false);
    expect(getLogSink()).not.toBe(consoleSink);
  });

  it("renders an err field's message and stack into the message", () => {
    const records: LogRecord[] = [];
    setLogSink((r) => records.push(r));
    const err = new Error("disk full");
    createLogger().error({ err }, "Unexpected error raised during flow run");
    const message = records[0]!.message;
    expect(message.startsWith("Unexpected error raised during flow run: disk full\n")).toBe(true);
    expect(message).toContain("flows-logging.test.ts");
    expect(records[0]!.fields).toEqual({});
  });

  it("the default sink writes info to stdout and errors to stderr", () => {
    const out = vi.spyOn(console, "log").mockImplementation(() => {});
    const errOut = vi.spyOn(console, "error").mockImplementation(() => {});
    const logger = createLogger({ a: 1 });
    logger.info("hello");
    logger.error("bad");
    expect(out.mock.calls[0]![0]).toMatch(/ INFO hello \{"a":1\}$/);
    expect(errOut.mock.calls[0]![0]).toMatch(/ ERROR bad \{"a":1\}$/);
  });
});

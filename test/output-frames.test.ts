/** The framing of console lines in a container's output, and how the agent reads the output back (unit). */
import { describe, expect, it } from "vitest";
import { outputLines } from "../engine/demux.js";
import { OutputReader, RAW_SEQ_BASE, frameConsoleLine, unframe, type OutputLine } from "../shared/output-frames.js";

const at = "2030-01-01T00:00:00.000Z";
const out = (text: string, stream: OutputLine["stream"] = "stdout"): OutputLine => ({ stream, at, text });

/** The text a frame puts on the output, as lines without their newline. */
const lines = (framed: string) => framed.replace(/\n$/, "").split("\n");

describe("OutputReader", () => {
  it("numbers unframed lines by their place in the output, and reads framed ones with their seq, level and task", () => {
    const reader = new OutputReader();
    expect(reader.read(out("plain"))?.line).toEqual({ at, level: "info", message: "plain", task: null, seq: RAW_SEQ_BASE + 1, stream: "stdout" });
    const [framed] = lines(frameConsoleLine(7, "warn", "my task/1", "careful"));
    expect(reader.read(out(framed!, "stderr"))).toEqual({ kind: "console", line: { at, level: "warn", message: "careful", task: "my task/1", seq: 7, stream: "stderr" } });
    expect(reader.read(out("oops", "stderr"))?.line).toMatchObject({ level: "warn", seq: RAW_SEQ_BASE + 2, stream: "stderr" });
  });

  it("puts a multi-line console message back together, while the other stream's lines go on", () => {
    const reader = new OutputReader();
    const [first, second, third] = lines(frameConsoleLine(3, "info", null, "one\ntwo\nthree"));
    expect(reader.read(out(first!))).toBeUndefined();
    expect(reader.read(out("meanwhile", "stderr"))?.line).toMatchObject({ message: "meanwhile", seq: RAW_SEQ_BASE + 1 });
    expect(reader.read(out(second!))).toBeUndefined();
    expect(reader.read(out(third!))).toEqual({ kind: "console", line: { at, level: "info", message: "one\ntwo\nthree", task: null, seq: 3, stream: "stdout" } });
  });

  it("gives back a console message cut off by a kill, and treats a broken frame as plain output", () => {
    const reader = new OutputReader();
    const [first] = lines(frameConsoleLine(9, "error", "t", "dying\nwords"));
    reader.read(out(first!));
    expect(reader.unfinished()).toEqual([{ at, level: "error", message: "dying", task: "t", seq: 9, stream: "stdout" }]);
    expect(new OutputReader().read(out("\u001b]berth;notanumber;info;\u0007text"))?.kind).toBe("raw");
  });

  it("unframes output for people", () => {
    expect(unframe(`${frameConsoleLine(1, "info", "t", "hello")}raw\n`)).toBe("hello\nraw\n");
  });
});

describe("outputLines", () => {
  function frame(stream: 1 | 2, text: string): Buffer {
    const payload = Buffer.from(text);
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(payload.length, 4);
    return Buffer.concat([header, payload]);
  }
  async function* chunks(...parts: Buffer[]) {
    for (const part of parts) yield part;
  }

  it("demultiplexes frames split across chunks into timestamped lines per stream, and keeps a last line without a newline", async () => {
    const all = Buffer.concat([
      frame(1, "2030-01-01T00:00:01.123456789Z first\n2030-01-01T00:00:02.5Z sec"),
      frame(2, "2030-01-01T00:00:03Z err line\n"),
      frame(1, "ond\n2030-01-01T00:00:04.000000001Z tail"),
    ]);
    const got: OutputLine[] = [];
    for await (const line of outputLines(chunks(all.subarray(0, 5), all.subarray(5, 40), all.subarray(40)))) got.push(line);
    expect(got).toEqual([
      { stream: "stdout", at: "2030-01-01T00:00:01.123Z", text: "first" },
      { stream: "stderr", at: "2030-01-01T00:00:03.000Z", text: "err line" },
      { stream: "stdout", at: "2030-01-01T00:00:02.500Z", text: "second" },
      { stream: "stdout", at: "2030-01-01T00:00:04.000Z", text: "tail" },
    ]);
  });
});

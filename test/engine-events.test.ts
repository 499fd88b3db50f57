import { describe, expect, it } from "vitest";
import { parseContainerEvent, parseImageEvent, sinceParameter } from "../engine/events.js";

/** A line as Docker 20.10 writes it for `docker rm -f` of a running container. */
const DIE =
  '{"status":"die","id":"21af72","from":"berth-node:20.20.2","Type":"container","Action":"die","Actor":{"ID":"21af72",' +
  '"Attributes":{"exitCode":"137","image":"berth-node:20.20.2","io.berth.image":"node-base","io.berth.epoch":"2","name":"berth-run-r1"}},' +
  '"scope":"local","time":1796140916,"timeNano":1796140916034888262}';

describe("parseContainerEvent", () => {
  it("keeps every digit of timeNano, which a JSON number would round", () => {
    const event = parseContainerEvent(DIE);
    expect(event?.timeNano).toBe(1796140916034888262n);
    expect(BigInt(Number(1796140916034888262n))).not.toBe(1796140916034888262n);
  });

  it("separates the labels from the engine's own attributes and reads the exit code", () => {
    expect(parseContainerEvent(DIE)).toEqual({
      action: "die",
      id: "21af72",
      name: "berth-run-r1",
      labels: { "io.berth.image": "node-base", "io.berth.epoch": "2" },
      timeNano: 1796140916034888262n,
      exitCode: 137,
    });
  });

  it("falls back to whole seconds from engines without timeNano", () => {
    const line = '{"Type":"container","Action":"start","Actor":{"ID":"c1","Attributes":{"name":"n"}},"time":1700000000}';
    expect(parseContainerEvent(line)?.timeNano).toBe(1_700_000_000_000_000_000n);
  });

  it("ignores blank lines, other actions and other types", () => {
    expect(parseContainerEvent("  ")).toBeUndefined();
    expect(parseContainerEvent(DIE.replaceAll('"die"', '"kill"'))).toBeUndefined();
    expect(parseContainerEvent('{"Type":"network","Action":"destroy","Actor":{"ID":"n1"}}')).toBeUndefined();
  });
});

describe("parseImageEvent", () => {
  it("reads every action on an image, and nothing else", () => {
    const tag = '{"status":"tag","id":"sha256:79f6","Type":"image","Action":"tag","Actor":{"ID":"sha256:79f6","Attributes":{"name":"flow:moving"}},"time":1796277425}';
    expect(parseImageEvent(tag)).toEqual({ action: "tag", id: "sha256:79f6" });
    expect(parseImageEvent(tag.replaceAll('"tag"', '"delete"'))).toEqual({ action: "delete", id: "sha256:79f6" });
    expect(parseImageEvent(DIE)).toBeUndefined();
    expect(parseImageEvent("")).toBeUndefined();
  });
});

describe("sinceParameter", () => {
  it("writes seconds and nanoseconds as the engine reads them", () => {
    expect(sinceParameter(1_700_000_000_123)).toBe("1700000000.123000000");
    expect(sinceParameter(1_700_000_000_000)).toBe("1700000000.000000000");
  });
});

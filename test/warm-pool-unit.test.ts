/**
 * The warm pool's bookkeeping, on a fake engine: its size bound with containers still being made, which
 * leftovers it removes when (never a container on its way to a run), and a flow's former shape retired.
 */
import pino from "pino";
import { describe, expect, it } from "vitest";
import { WARM_LABEL, WarmPool } from "../agent/warm-pool.js";
import { AGENT_LABEL, OWNER_LABEL, type ContainerEngine, type ContainerInfo, type ContainerSpec } from "../engine/port.js";

function fakeEngine(listed: ContainerInfo[] = []) {
  const made: ContainerSpec[] = [];
  const removed: string[] = [];
  let release: () => void = () => {};
  let gate = Promise.resolve();
  const engine = {
    openInput: async () => ({ send: async () => {}, close: () => {} }),
    renameContainer: async () => {},
    runContainer: async (spec: ContainerSpec) => {
      const id = `c${made.push(spec)}`;
      await gate;
      return id;
    },
    removeContainer: async (id: string) => void removed.push(id),
    listContainers: async () => listed,
  } as unknown as ContainerEngine;
  return {
    engine,
    made,
    removed,
    hold: () => (gate = new Promise<void>((r) => (release = r))),
    release: () => release(),
  };
}

const spec: ContainerSpec = { name: "x", image: "img:1", cmd: ["berth", "execute", "flow-run"], env: { BERTH_API_URL: "http://127.0.0.1:1" } };
const pool = (engine: ContainerEngine, size = 2) => new WarmPool({ engine, agentId: () => "agent-12345678", size, ttlMs: 60_000, log: () => pino({ level: "silent" }) });
const settle = () => new Promise((r) => setTimeout(r, 20));

describe("WarmPool", () => {
  it("never makes more than its size per shape, counting those being made", async () => {
    const f = fakeEngine();
    const p = pool(f.engine, 2);
    void f.hold();
    p.fill("k1", "sha:1", spec, "Flow A");
    p.fill("k1", "sha:1", spec, "Flow A");
    p.fill("k1", "sha:1", spec, "Flow A");
    expect(f.made).toHaveLength(2);
    f.release();
    await settle();
    p.fill("k1", "sha:1", spec, "Flow A");
    expect(f.made).toHaveLength(2);
    expect(p.idleCount).toBe(2);
    // Made as idle containers of this agent: the run's name and variables are not theirs.
    expect(f.made[0]).toMatchObject({ openStdin: true, labels: { [OWNER_LABEL]: "true", [AGENT_LABEL]: "agent-12345678", [WARM_LABEL]: "k1" } });
    expect(f.made[0]!.name).toMatch(/^berth-warm-agent-12-/);
    expect(f.made[0]!.env).toMatchObject({ BERTH_WARM_TTL_MS: "60000" });
    // One taken: one made in its place.
    expect(p.take("k1", "sha:1")?.id).toBe("c1");
    p.fill("k1", "sha:1", spec, "Flow A");
    expect(f.made).toHaveLength(3);
  });

  it("gives a container only for its image, and retires a flow's former shape", async () => {
    const f = fakeEngine();
    const p = pool(f.engine, 1);
    p.fill("v1", "sha:1", spec, "Flow A");
    await settle();
    expect(p.take("v1", "sha:other")).toBeUndefined();
    expect(f.removed).toEqual(["c1"]);
    p.fill("v1", "sha:1", spec, "Flow A");
    await settle();
    p.fill("v2", "sha:2", { ...spec, image: "img:2" }, "Flow A");
    await settle();
    expect(f.removed).toEqual(["c1", "c2"]);
    expect(p.take("v1", "sha:1")).toBeUndefined();
    expect(p.take("v2", "sha:2")?.id).toBe("c3");
  });

  it("removes leftovers: at start every idle one, later only those that exited unused", async () => {
    const warm = (id: string, state: ContainerInfo["state"], name = `berth-warm-agent-12-${id}`): ContainerInfo => ({
      id,
      name,
      image: "img:1",
      labels: { [OWNER_LABEL]: "true", [AGENT_LABEL]: "agent-12345678", [WARM_LABEL]: "k1" },
      state,
      exitCode: state === "exited" ? 0 : null,
    });
    const listed = [warm("running-1", "running"), warm("created-1", "created"), warm("exited-1", "exited"), warm("assigned", "running", "berth-run-r1")];
    const later = fakeEngine(listed);
    await pool(later.engine).removeLeftovers(false);
    expect(later.removed).toEqual(["exited-1"]);
    const atStart = fakeEngine(listed);
    await pool(atStart.engine).removeLeftovers(true);
    expect(atStart.removed).toEqual(["running-1", "created-1", "exited-1"]);
  });

  it("keeps each idle container's input attached until it is handed a run, and pools none whose input cannot be attached", async () => {
    const f = fakeEngine();
    const attached: string[] = [];
    const closed: string[] = [];
    const sent: string[] = [];
    let failFor: string | undefined;
    Object.assign(f.engine, {
      openInput: async (id: string) => {
        if (id === failFor) throw new Error("the engine hung up");
        attached.push(id);
        return { send: async (data: string) => void sent.push(`${id}:${data}`), close: () => void closed.push(id) };
      },
    });
    const p = pool(f.engine, 1);
    p.fill("k1", "sha:1", spec, "Flow A");
    await settle();
    // Attached once made, before any run: the run then travels over it.
    expect(attached).toEqual(["c1"]);
    const taken = p.take("k1", "sha:1")!;
    await taken.input.send("run\n");
    expect(sent).toEqual(["c1:run\n"]);
    failFor = "c2";
    p.fill("k1", "sha:1", spec, "Flow A");
    await settle();
    expect(p.idleCount).toBe(0);
    expect(f.removed).toEqual(["c2"]);
    // An idle one's input is let go when it is removed.
    p.fill("k1", "sha:1", spec, "Flow A");
    await settle();
    await p.close();
    expect(closed).toEqual(["c3"]);
    expect(f.removed).toEqual(["c2", "c3"]);
  });

  it("skips and removes an idle container whose input is no longer attached", async () => {
    const f = fakeEngine();
    const inputs = new Map<string, { lost: boolean }>();
    Object.assign(f.engine, {
      openInput: async (id: string) => {
        const input = { send: async () => {}, close: () => {}, lost: false };
        inputs.set(id, input);
        return input;
      },
    });
    const p = pool(f.engine, 2);
    p.fill("k1", "sha:1", spec, "Flow A");
    await settle();
    inputs.get("c1")!.lost = true;
    expect(p.take("k1", "sha:1")?.id).toBe("c2");
    await settle();
    expect(f.removed).toEqual(["c1"]);
  });

  it("gives up on an engine that never answers: no container pooled, none left attached, and closing does not wait on it", async () => {
    const f = fakeEngine();
    const closed: string[] = [];
    let attach: (() => void) | undefined;
    Object.assign(f.engine, {
      // The engine takes the attach request and answers only much later.
      openInput: (id: string) =>
        new Promise((resolve) => (attach = () => resolve({ send: async () => {}, close: () => void closed.push(id), lost: false }))),
    });
    const p = new WarmPool({ engine: f.engine, agentId: () => "agent-12345678", size: 1, ttlMs: 60_000, engineCallMs: 50, log: () => pino({ level: "silent" }) });
    p.fill("k1", "sha:1", spec, "Flow A");
    await new Promise((r) => setTimeout(r, 120));
    expect(p.idleCount).toBe(0);
    expect(f.removed).toEqual(["c1"]);
    // The attachment that comes after all is let go at once.
    attach!();
    await settle();
    expect(closed).toEqual(["c1"]);
    // A start the engine never answers: stopping still ends (without the bound, this test would time out here).
    void f.hold();
    p.fill("k1", "sha:1", spec, "Flow A");
    await p.close();
    expect(p.idleCount).toBe(0);
    // The container the engine makes after all is removed once it is.
    f.release();
    await settle();
    expect(f.removed).toEqual(["c1", "c2"]);
  });
});

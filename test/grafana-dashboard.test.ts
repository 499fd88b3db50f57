/**
 * docs/grafana/berth-dashboard.json queries only metrics berth exports: every PromQL expression parses (with
 * Prometheus's own grammar, @prometheus-io/lezer-promql) and every metric it selects is declared by the
 * server's or an agent's /metrics (a histogram's _bucket, _sum and _count included).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import { describe, expect, it } from "vitest";
import { AgentMetrics } from "../agent/metrics.js";
import { ServerMetrics } from "../server/metrics.js";
import { AgentPresence } from "../server/presence.js";
import { openSqliteStore } from "../store/sqlite.js";
import { REPO } from "./support/processes.js";
import { families } from "./support/prometheus.js";

interface Panel {
  title: string;
  targets: { expr: string }[];
}

/** The metric names an expression selects; throws on a syntax error. */
function selected(expr: string): string[] {
  const names: string[] = [];
  const errors: number[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") names.push(expr.slice(node.from, node.to));
    },
  });
  if (errors.length > 0) throw new Error(`PromQL syntax error at ${errors.join(", ")} in: ${expr}`);
  return names;
}

/** Every series name a scrape's families can have. */
function seriesNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of families(text)) {
    names.add(name);
    if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(name + suffix);
  }
  return names;
}

describe("the Grafana dashboard", () => {
  it("queries only metrics the server and the agent export", async () => {
    const dashboard = JSON.parse(readFileSync(path.join(REPO, "docs", "grafana", "berth-dashboard.json"), "utf8")) as { panels: Panel[]; uid: string };
    expect(dashboard.uid).toBe("berth-overview");
    const store = await openSqliteStore(":memory:");
    try {
      const server = await new ServerMetrics(store, new AgentPresence(60_000, Date.now)).render();
      const agent = await new AgentMetrics({ slots: 1, slotsUsed: () => 0 }).registry.metrics();
      const exported = new Set([...seriesNames(server), ...seriesNames(agent)]);
      const queried = new Set<string>();
      for (const panel of dashboard.panels) {
        expect(panel.targets.length, panel.title).toBeGreaterThan(0);
        for (const target of panel.targets) {
          const names = selected(target.expr);
          expect(names.length, `${panel.title}: ${target.expr}`).toBeGreaterThan(0);
          for (const name of names) queried.add(name);
        }
      }
      expect([...queried].filter((name) => !exported.has(name))).toEqual([]);
      // Every berth metric has a panel, so the dashboard shows all there is to see.
      const berthFamilies = [...families(server).keys(), ...families(agent).keys()].filter((name) => name.startsWith("berth_"));
      const unseen = berthFamilies.filter((name) => ![...queried].some((q) => q === name || q.startsWith(`${name}_`)));
      expect(unseen).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

/**
 * Prometheus text in tests. Prometheus's own `promtool check metrics` (from Debian's package, unpacked by
 * scripts/prereqs.sh) is the parser that decides whether a scrape is valid and well named; `samples` then reads
 * its values for assertions.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const PROMETHEUS_DIR = process.env.BERTH_PROMETHEUS_DIR ?? "/var/cache/berth/prometheus";

/** A binary of Debian's prometheus package (promtool, prometheus); fails, never skips, when it is missing. */
export function prometheusBinary(name: "promtool" | "prometheus"): string {
  const file = path.join(PROMETHEUS_DIR, "usr", "bin", name);
  if (!existsSync(file)) throw new Error(`${file} is missing: run bash scripts/prereqs.sh (it unpacks Debian's prometheus package there)`);
  return file;
}

/**
 * Runs promtool over a scrape. Returns its complaints about berth's own series; throws when it cannot parse
 * the text at all. (prom-client's default nodejs_* gauges end in _total, which promtool's lint dislikes: not
 * berth's to rename.)
 */
export function promtoolProblems(text: string): string[] {
  const result = spawnSync(prometheusBinary("promtool"), ["check", "metrics"], { input: text, encoding: "utf8" });
  const output = `${result.stdout}${result.stderr}`;
  if (result.status === 0) return [];
  if (result.status !== 3) throw new Error(`promtool could not parse the scrape (exit ${result.status}): ${output}`);
  return output.split("\n").filter((line) => line.startsWith("berth_"));
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample line of a scrape (comments skipped). */
export function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of match[2]?.matchAll(LABEL) ?? []) labels[key!] = value!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    out.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return out;
}

/** The sum of the samples named `name` whose labels include `labels` (0 when none); a histogram's `_count`. */
export function sample(all: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

/** The metric families a scrape declares, with their type (`# TYPE name type`). */
export function families(text: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(match[1]!, match[2]!);
  return types;
}

/**
 * The label rule (Prefect's): a run is claimable by an agent only if every run label is an agent label, and a
 * run with no labels only by an agent with no labels, so that unlabelled work never lands on a specialised
 * agent by accident. Pure; the SQL claim in each store implements the same rule and the contract suite checks
 * that the two agree.
 */

export function labelsMatch(runLabels: readonly string[], agentLabels: readonly string[]): boolean {
  if (runLabels.length === 0) return agentLabels.length === 0;
  const offered = new Set(agentLabels);
  return runLabels.every((label) => offered.has(label));
}

/** Sorted and de-duplicated, so that stored label sets compare and print the same way everywhere. */
export function normalizeLabels(labels: readonly string[]): string[] {
  return [...new Set(labels)].sort();
}

export interface PickupCandidate {
  name: string;
  labels: readonly string[];
}

const LISTED_AGENTS = 10;

/**
 * Why a Scheduled run with `runLabels` is not being picked up by any of `onlineAgents`, as one sentence for a
 * user; undefined when some online agent could take it.
 */
export function explainPickup(runLabels: readonly string[], onlineAgents: readonly PickupCandidate[]): string | undefined {
  if (onlineAgents.some((agent) => labelsMatch(runLabels, agent.labels))) return undefined;
  if (onlineAgents.length === 0) return "no agent is online";
  const wanted =
    runLabels.length === 0
      ? "no online agent has no labels (a run without labels only goes to an agent without labels)"
      : `no online agent has labels ⊇ ${formatLabels(runLabels)}`;
  const listed = onlineAgents.slice(0, LISTED_AGENTS).map((agent) => `${agent.name} ${formatLabels(agent.labels)}`);
  const more = onlineAgents.length > LISTED_AGENTS ? ` and ${onlineAgents.length - LISTED_AGENTS} more` : "";
  return `${wanted}; online agents: ${listed.join(", ")}${more}`;
}

function formatLabels(labels: readonly string[]): string {
  return labels.length === 0 ? "(no labels)" : `[${labels.join(", ")}]`;
}

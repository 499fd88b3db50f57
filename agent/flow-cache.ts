/**
 * The flow versions an agent holds, so that its claims need not carry them (ClaimRequest.knownFlows): a flow
 * version never changes once registered, so a copy is good for the agent's life. Bounded, least recently
 * used first out.
 */
import type { RunClient } from "../client/run-client.js";
import { MAX_KNOWN_FLOWS } from "../wire/constants.js";
import type { ClaimedRun, FlowRecord } from "../wire/schema.js";

/** A claimed run with its flow, as the agent runs it (the claim's, or the agent's copy). */
export type AgentClaim = ClaimedRun & { flow: FlowRecord };

export class FlowCache {
  private readonly flows = new Map<string, FlowRecord>();

  constructor(private readonly capacity = MAX_KNOWN_FLOWS) {}

  /** The ids to send with a claim. */
  ids(): string[] {
    return [...this.flows.keys()];
  }

  /**
   * The claims of one answer with their flows: the one each carries (kept for the next claims), else the
   * agent's copy. All are looked up before any is kept, so no copy listed in the request is dropped before
   * its claim is served. A flow that is in neither (a server that left out one it was not told of) is read
   * from the server; a claim whose flow cannot be had goes to `lost` and is left out.
   */
  async completeAll(claims: readonly ClaimedRun[], client: RunClient, lost: (claim: ClaimedRun, err: unknown) => void): Promise<AgentClaim[]> {
    const found = claims.map((claim) => claim.flow ?? this.flows.get(claim.flowRun.flowId));
    const complete: AgentClaim[] = [];
    for (const [i, claim] of claims.entries()) {
      let flow = found[i];
      if (!flow) {
        try {
          flow = await client.getFlow(claim.flowRun.flowId);
        } catch (err) {
          lost(claim, err);
          continue;
        }
      }
      complete.push({ ...claim, flow });
    }
    for (const { flow } of complete) this.keep(flow);
    return complete;
  }

  private keep(flow: FlowRecord): void {
    // Re-inserted, it becomes the most recently used.
    this.flows.delete(flow.id);
    this.flows.set(flow.id, flow);
    while (this.flows.size > this.capacity) this.flows.delete(this.flows.keys().next().value!);
  }
}

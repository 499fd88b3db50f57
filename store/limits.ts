/**
 * Concurrency limits as one claim sees them: each limit's maximum and the slots taken, counted once at the
 * claim's start and as it takes runs. Pure; each store reads the counts inside its claim's transaction.
 */
export class LimitCounts {
  constructor(
    private readonly labelMax: ReadonlyMap<string, number>,
    private readonly flowMax: ReadonlyMap<string, number>,
    private readonly labelActive: Map<string, number>,
    private readonly flowActive: Map<string, number>,
  ) {}

  /** No limit at all is set: then none can refuse a run. */
  get none(): boolean {
    return this.labelMax.size === 0 && this.flowMax.size === 0;
  }

  get anyFull(): boolean {
    return this.fullLabels.length > 0 || this.fullFlows.length > 0;
  }

  get fullLabels(): string[] {
    return [...this.labelMax].filter(([label, max]) => (this.labelActive.get(label) ?? 0) >= max).map(([label]) => label);
  }

  get fullFlows(): string[] {
    return [...this.flowMax].filter(([name, max]) => (this.flowActive.get(name) ?? 0) >= max).map(([name]) => name);
  }

  allows(labels: readonly string[], flowName: string): boolean {
    const flowMax = this.flowMax.get(flowName);
    if (flowMax !== undefined && (this.flowActive.get(flowName) ?? 0) >= flowMax) return false;
    return labels.every((label) => {
      const max = this.labelMax.get(label);
      return max === undefined || (this.labelActive.get(label) ?? 0) < max;
    });
  }

  take(labels: readonly string[], flowName: string): void {
    if (this.flowMax.has(flowName)) this.flowActive.set(flowName, (this.flowActive.get(flowName) ?? 0) + 1);
    for (const label of labels) if (this.labelMax.has(label)) this.labelActive.set(label, (this.labelActive.get(label) ?? 0) + 1);
  }
}

/** Candidates are read in pages of at most this many, earliest start first. */
const CLAIM_PAGE = 64;

/**
 * A claim of `max` runs reads pages of twice that (8 at least) where limits may refuse some, and of just `max`
 * where there are none: every row read costs a lookup of the run, and a one-run claim needs one.
 */
export function claimPage(max: number, limits: LimitCounts): number {
  return Math.min(CLAIM_PAGE, limits.none ? max : Math.max(8, 2 * max));
}

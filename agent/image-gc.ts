/**
 * Image garbage collection on the agent's engine, every HOUSEKEEPING_INTERVAL_MS while the agent runs.
 *
 * When free disk under agent.diskPath falls below the low watermark, the agent removes berth's images that
 * nothing needs, oldest first, until free disk is back over the high watermark:
 * - storage images (label io.berth.storage=docker) that are neither the image of a flow's current version
 *   nor that of a flow version with runs not over or recent (the server says which: kept-images);
 * - berth runtime images (label io.berth.image=berth) but the newest and the one this agent runs (an agent
 *   whose image went makes it again: see berthImageKeeper).
 * Never an image a container on the engine uses, whoever's container it is. Each removal is logged with its
 * reason and reported to `onRemoved`.
 */
import type { Logger } from "pino";
import type { ContainerEngine, ImageInfo } from "../engine/port.js";
import { canonicalRef } from "../engine/refs.js";
import { formatBytes } from "../shared/sizes.js";
import { describeError } from "../wire/errors.js";

export interface ImageGcDeps {
  engine: ContainerEngine;
  /** The storage images the server says must stay (GET /api/agents/:id/kept-images). */
  keptImages: () => Promise<string[]>;
  /** The berth runtime image this agent runs now, if it has made or found one. */
  berthImage: () => string | undefined;
  freeBytes: () => Promise<number>;
  lowWatermarkBytes: number;
  highWatermarkBytes: number;
  log: () => Logger;
  onRemoved?: (removal: Removal) => void;
}

export type ImageKind = "storage" | "runtime";

export interface Removal {
  image: ImageInfo;
  kind: ImageKind;
  reason: string;
}

/** How often the agent looks at its free disk to collect images (and for containers left by other agents). */
export const HOUSEKEEPING_INTERVAL_MS = 60_000;

const REASONS: Record<ImageKind, string> = {
  storage: "a storage image of no current flow version and of no run that is not over or recent",
  runtime: "a berth runtime image that is neither the newest nor the one this agent runs",
};

export class ImageGc {
  private pass: Promise<Removal[]> | undefined;

  constructor(private readonly deps: ImageGcDeps) {}

  /** One pass, if free disk is under the low watermark; a pass under way is joined, not doubled. */
  collect(): Promise<Removal[]> {
    this.pass ??= this.run().finally(() => (this.pass = undefined));
    return this.pass;
  }

  private async run(): Promise<Removal[]> {
    const { deps } = this;
    const free = await deps.freeBytes();
    if (free >= deps.lowWatermarkBytes) return [];
    const candidates = await this.candidates();
    deps
      .log()
      .info(`free disk ${formatBytes(free)} is under agent.diskLowWatermark (${formatBytes(deps.lowWatermarkBytes)}): ${candidates.length} image(s) may go`);
    const removed: Removal[] = [];
    for (const candidate of candidates) {
      if ((await deps.freeBytes()) >= deps.highWatermarkBytes) break;
      const { image, reason } = candidate;
      const name = image.tags[0] ?? image.id;
      try {
        // By reference: removing the last one removes the image; an untagged image goes by its id.
        for (const ref of image.tags.length > 0 ? image.tags : [image.id]) await deps.engine.removeImage(ref);
      } catch (err) {
        deps.log().warn(`could not remove image ${name} (${describeError(err)}); leaving it`);
        continue;
      }
      removed.push(candidate);
      deps.onRemoved?.(candidate);
      deps.log().info({ image: image.tags, id: image.id, bytes: image.sizeBytes }, `removed image ${name} (${formatBytes(image.sizeBytes)}): ${reason}`);
    }
    return removed;
  }

  /** What may go, oldest first. */
  private async candidates(): Promise<Removal[]> {
    const { engine } = this.deps;
    const kept = new Set((await this.deps.keptImages()).map(canonicalRef));
    const used = new Set((await engine.listContainers({})).flatMap((c) => [c.image, ...(c.imageId ? [c.imageId] : [])]));
    const refs = (image: ImageInfo) => [image.id, ...image.tags, ...image.digests];
    const needed = (image: ImageInfo) => refs(image).some((r) => used.has(r) || kept.has(r));
    const storage = (await engine.listImages({ "io.berth.storage": "docker" })).map((image): Removal => ({ image, kind: "storage", reason: REASONS.storage }));
    // The newest runtime image stays (the next agent to start likely runs it), and so does this agent's own.
    const current = this.deps.berthImage();
    const runtimeImages = (await engine.listImages({ "io.berth.image": "berth" })).sort((a, b) => b.createdAt - a.createdAt);
    const runtime = runtimeImages
      .slice(1)
      .filter((i) => current === undefined || !i.tags.includes(current))
      .map((image): Removal => ({ image, kind: "runtime", reason: REASONS.runtime }));
    return [...storage, ...runtime].filter(({ image }) => !needed(image)).sort((a, b) => a.image.createdAt - b.image.createdAt);
  }
}

import { IMAGE_FLOWS_DIR } from "../wire/constants.js";
import type { BuildContextRef, StorageSpec } from "../wire/schema.js";
import { brand, hasBrand } from "../shared/brand.js";
import { Storage, type BuildContext, type BuildOutcome } from "./storage.js";

export interface DockerStorageOptions {
  /** Registry prefix, e.g. "localhost:5000/dev/"; no push when omitted. */
  registryUrl?: string;
  /** Image repository name; default: the slug of the (first) flow. */
  imageName?: string;
  /** Image tag; default: a content hash, so an unchanged flow is never rebuilt. */
  imageTag?: string;
  /** Image to build FROM; default: the berth image matching this berth. */
  baseImage?: string;
  /** Host path → path in the image; copied into the image. */
  files?: Record<string, string>;
  /** Environment variables baked into the image. */
  env?: Record<string, string>;
  /** npm packages installed in the image (beside the flows), and left out of the flow bundle. */
  dependencies?: string[];
  /** Raw Dockerfile lines appended after the flows are copied, before the healthcheck. */
  extraDockerfileCommands?: string[];
  /** Skip the build-time healthcheck (default false). */
  ignoreHealthchecks?: boolean;
  /** Labels an agent must carry to run flows from this storage (default none). */
  labels?: string[];
}

export class DockerStorage extends Storage {
  readonly options: Readonly<DockerStorageOptions>;
  /** Hash of everything that goes into the image; set when its build context is made (build-context.ts). */
  contentHash: string | undefined;
  /** The build context the server keeps for agents to build from; set with contentHash. */
  buildContext: BuildContextRef | undefined;

  constructor(options: DockerStorageOptions = {}) {
    super(options.labels);
    this.options = { ...options };
  }

  protected locationFor(slug: string): string {
    return `${IMAGE_FLOWS_DIR}/${slug}.mjs`;
  }

  get registryUrl(): string {
    const url = this.options.registryUrl?.trim() ?? "";
    return url === "" || url.endsWith("/") ? url : `${url}/`;
  }

  get imageName(): string {
    const first = Object.values(this.flows)[0];
    const fromFlow = first ? first.slice(IMAGE_FLOWS_DIR.length + 1).replace(/\.mjs$/, "") : "berth-flow";
    return this.options.imageName ?? fromFlow;
  }

  get imageTag(): string | undefined {
    return this.options.imageTag ?? this.contentHash;
  }

  /** The full image reference; known once the tag is (given, or computed by build()). */
  get name(): string {
    return `${this.registryUrl}${this.imageName}:${this.imageTag ?? "latest"}`;
  }

  /** The package names `dependencies` install, which the flow bundle leaves as imports: "is-number@7.0.0" → "is-number". */
  get dependencyNames(): string[] {
    return (this.options.dependencies ?? []).map(packageName);
  }

  /** Bundled sources by flow name, for the builder. */
  flowSources(): ReadonlyMap<string, string> {
    return this.sources;
  }

  setContentHash(hash: string): void {
    this.contentHash = hash;
  }

  setBuildContext(ref: BuildContextRef): void {
    this.buildContext = ref;
  }

  async build(context: BuildContext = {}): Promise<BuildOutcome> {
    // Loaded when a build happens (at registration), not with every flow module in every run's container.
    const { buildDockerStorage } = await import("./docker-build.js");
    return buildDockerStorage(this, context);
  }

  serialize(): StorageSpec {
    const spec: StorageSpec = { type: "docker", image: this.name, flows: { ...this.flows } };
    if (this.registryUrl !== "") spec.registryUrl = this.registryUrl;
    if (this.buildContext) spec.context = { ...this.buildContext };
    return spec;
  }
}

brand(DockerStorage, "DockerStorage");

/** Whether `value` is a DockerStorage, made by this copy of berth or another. */
export function isDockerStorage(value: unknown): value is DockerStorage {
  return hasBrand(value, "DockerStorage");
}

/** The name in an npm install spec ("name@range", "@scope/name@range", "alias@npm:name@range"); other specs as given. */
function packageName(spec: string): string {
  return /^((?:@[^/@]+\/)?[^/@:]+)@/.exec(spec)?.[1] ?? spec;
}

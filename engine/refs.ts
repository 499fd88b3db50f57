/**
 * Image references as the engine's API wants them split: `/images/{name}/push?tag=` and
 * `/images/{name}/tag?repo=&tag=` take the repository and the tag separately.
 */

export interface ImageRef {
  /** Everything before the tag, registry host included: "127.0.0.1:5000/dev/flow". */
  repository: string;
  tag: string;
}

export function parseImageRef(ref: string): ImageRef {
  // A digest pins the image; the engine accepts it in place of a tag.
  const at = ref.indexOf("@");
  if (at >= 0) return { repository: ref.slice(0, at), tag: ref.slice(at + 1) };
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  // A colon before the last slash is a registry port ("localhost:5000/x"), not a tag.
  if (colon > slash) return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repository: ref, tag: "latest" };
}

/** The registry an image lives in, as `docker push` decides it: a first component with "." or ":" is a host. */
export function registryHost(ref: string): string {
  const first = ref.split("/")[0] ?? "";
  const hasHost = ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  return hasHost ? first : "docker.io";
}

/** Makes a version string usable as a tag (`[A-Za-z0-9_.-]`, at most 128 characters). */
export function toTag(version: string): string {
  return version.replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 128);
}

/**
 * A reference as the engine lists it among an image's tags: Docker Hub's host and `library/` dropped,
 * `:latest` added when no tag or digest is given ("docker.io/library/node" → "node:latest").
 */
export function canonicalRef(ref: string): string {
  const hub = /^(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\/(?:library\/)?/;
  const { repository, tag } = parseImageRef(ref.replace(hub, ""));
  return ref.includes("@") ? `${repository}@${tag}` : `${repository}:${tag}`;
}

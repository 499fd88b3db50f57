/**
 * Which images an agent runs, as its operator allows them (`--allow-image PATTERN`, repeatable), the way
 * GitLab's `allowed_images` works: glob patterns matched against the image reference as the flow names it,
 * where `*` stays within one path segment and `**` crosses them. No pattern: every image.
 */
import picomatch from "picomatch";
import { BerthError } from "../wire/errors.js";

/** A check of image references against `patterns`; throws BERTH_E_NOT_ALLOWED for one that matches none. */
export function imageAllowList(patterns: readonly string[]): (image: string) => void {
  if (patterns.length === 0) return () => undefined;
  const matches = picomatch([...patterns], { dot: true });
  return (image) => {
    if (matches(image)) return;
    throw new BerthError(
      "BERTH_E_NOT_ALLOWED",
      `image ${image} is not allowed on this agent: it matches none of its --allow-image patterns (${patterns.join(", ")})`,
    );
  };
}

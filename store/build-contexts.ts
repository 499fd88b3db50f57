/** The one wording of a missing build context, for every store and the server's routes. */
import { BerthError } from "../wire/errors.js";

export function buildContextNotFound(sha256: string): BerthError {
  return new BerthError(
    "BERTH_E_BUILD_CONTEXT_NOT_FOUND",
    `the server keeps no build context ${sha256}: upload it first (PUT /api/build-contexts/${sha256}); berth register does`,
  );
}
